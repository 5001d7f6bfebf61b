"""Which vectors answer a person who was not in a version's training: their newest refit that still ranks their
pairs best, else the vectors their onboarding answers placed them at. ``served`` is the version as this process
holds it (``serving.ServedRun``: its run id, generic vectors and a cache of loaded tensors)."""

from __future__ import annotations

from django.conf import settings


def fitted_vectors(served, user_pk: int):
    """(fit id, (T, H) tensor) of the person's newest done refit for this version, or None."""
    from users.models import VectorFit

    row = VectorFit.objects.filter(user_id=user_pk, run_id=served.run_id, status=VectorFit.Status.DONE,
                                   outranked=False).order_by("-finished_at", "-pk").values_list("pk", "path").first()
    if row is None:
        return None
    fit_id, relative = row

    def load():
        from safetensors.torch import load_file

        return load_file(settings.ARTIFACTS_DIR / relative)["vectors"]

    return fit_id, served.fitted.get(fit_id, load)


def onboarding_vectors(run_id: int, user_pk: int, generic, cache=None):
    """((T, H) tensor, answers) of the person placed by their onboarding answers on version ``run_id``, or None:
    the version's ``generic`` vectors moved by the seen people's mean offset and the person's coordinates along
    the pool's directions (the pool's basis read once per ``cache``, a LoadOnce, when one is given)."""
    from users.models import Onboarding

    row = Onboarding.objects.filter(user_id=user_pk, run_id=run_id).values_list("coordinates", "answers").first()
    if row is None or not row[1]:  # coordinates are written with every answer
        return None
    coordinates, answers = row

    def load():
        from safetensors.torch import load_file

        from trainer.models import OnboardingPool

        pool = OnboardingPool.objects.get(run_id=run_id, status=OnboardingPool.Status.COMPLETED)
        return load_file(settings.ARTIFACTS_DIR / pool.path / "basis.safetensors")

    import torch

    basis = cache.get("onboarding-basis", load) if cache is not None else load()
    offset = basis["mean"] + torch.tensor(coordinates, dtype=basis["directions"].dtype) @ basis["directions"]
    placed = generic.float() + offset.reshape(generic.shape).to(generic.device)
    return placed.to(generic.dtype), len(answers)
