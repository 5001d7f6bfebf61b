"""The train worker's side of a fast fit: refit one person's vectors on a
version with the LoRA and every other user frozen, and publish them.

The vectors go to their own small safetensors file (written beside, then
renamed into place), never into the run's artifacts: the version stays
immutable and a refit is one row plus one file. Serving picks up the newest
done ``VectorFit`` of the person on the next reply.
"""

from __future__ import annotations

import logging
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from trainer.core.placement import ranks_better
from trainer.worker.patience import patiently
from users.models import VectorFit

log = logging.getLogger(__name__)


def vectors_file(fit: VectorFit) -> Path:
    return Path("vectors") / f"run{fit.run_id}" / f"user{fit.user_id}-fit{fit.pk}.safetensors"


def user_pairs(user, *, limit: int) -> list:
    """The person's newest ``limit`` preference pairs, as the training library's Pair objects."""
    from trainer.core.data import pair_from_json
    from users.collection.pairs import preference_pairs

    rows = list(preference_pairs(users=[user]))[-limit:]
    return [pair_from_json(row, where=f"pair {n + 1}") for n, row in enumerate(rows)]


def vectors_refit(fit_id: int, worker: str = "") -> str:
    """Run one queued fit; a second delivery finds it claimed and does nothing. The claim names the worker
    and the time, so bookkeeping can fail a fit whose worker died (``fits_reap_stale``)."""
    if not patiently(lambda: VectorFit.objects.filter(pk=fit_id, status=VectorFit.Status.QUEUED).update(
            status=VectorFit.Status.RUNNING, worker=worker, started_at=timezone.now()), f"fit {fit_id}"):
        return "skipped"
    fit = VectorFit.objects.select_related("run", "user__profile").get(pk=fit_id)
    try:
        pairs_used, seconds, losses, ranking = _fit(fit)
    except Exception as exc:  # the reason a person can act on, on the row
        log.exception("fit %s failed", fit_id)
        reason = f"{exc.__class__.__name__}: {exc}"
        patiently(lambda: VectorFit.objects.filter(pk=fit_id, status=VectorFit.Status.RUNNING).update(
            status=VectorFit.Status.FAILED, finished_at=timezone.now(), error=reason), f"fit {fit_id}")
        return VectorFit.Status.FAILED
    outranked = bool(ranking) and not ranks_better(ranking["fit"], ranking["onboarding"])
    # Only while still this fit's claim: a fit bookkeeping failed meanwhile stays failed.
    if not patiently(lambda: VectorFit.objects.filter(pk=fit_id, status=VectorFit.Status.RUNNING).update(
            status=VectorFit.Status.DONE, finished_at=timezone.now(), pairs_used=pairs_used, seconds=seconds,
            losses=losses, path=str(vectors_file(fit)), ranking=ranking, outranked=outranked), f"fit {fit_id}"):
        return "superseded"
    return VectorFit.Status.DONE


def _fit(fit: VectorFit) -> tuple[int, float, list[float], dict]:
    from trainer.core.artifacts import base_model_here, load_run, save_vectors
    from trainer.core.config import FastFitConfig
    from trainer.core.fastfit import fast_fit
    from trainer.core.usermodel import UserIndex
    from trainer.worker.serving import local_base_model
    from users.prism.ids import exported_user_id

    if not fit.run.artifacts:
        raise ValueError(f"version {fit.run_id} has no saved model")
    user_id = exported_user_id(fit.user, getattr(fit.user, "profile", None))
    pairs = user_pairs(fit.user, limit=settings.FASTFIT_MAX_PAIRS)
    path = settings.ARTIFACTS_DIR / fit.run.artifacts
    run = load_run(path, base_model=base_model_here(path, local_base_model))
    # A throwaway index: fast_fit adds the person as a new row, starting from their vectors
    # from training when they have some (that row is untouched), else from the generic ones.
    trained_row = run.user_index.row(user_id) if user_id in run.user_index else None
    report = fast_fit(run.model, run.tokenizer, UserIndex(), run.config, user_id, pairs,
                      fit=FastFitConfig(rounds=settings.FASTFIT_ROUNDS), start_row=trained_row)
    save_vectors(settings.ARTIFACTS_DIR / vectors_file(fit), run.model, report.row,
                 {"user": user_id, "run": str(fit.run_id)})
    return report.pairs, report.seconds, [report.losses[0], report.losses[-1]], _ranking(fit, run, report, pairs)


def _ranking(fit: VectorFit, run, report, pairs) -> dict:
    """When the person was placed by onboarding answers on this version: how the fit and those quick vectors
    rank the person's pairs ({"fit": [accuracy, loss], "onboarding": [...]}); {} otherwise."""
    import torch

    from trainer.core.onboarding import PairJudge
    from trainer.core.artifacts import soft_prompt
    from trainer.worker.vectors import onboarding_vectors

    generic = soft_prompt(run.model.user_model, run.user_index, None)
    placed = onboarding_vectors(fit.run_id, fit.user_id, generic)
    if placed is None:
        return {}
    judge = PairJudge(run.model, run.tokenizer, run.config, pairs)
    with torch.no_grad():
        fitted = run.model.user_model(torch.tensor([report.row]))[0]
    return {"fit": list(judge.rank(fitted)), "onboarding": list(judge.rank(placed[0]))}
