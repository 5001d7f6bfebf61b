"""The train worker's side of a version's onboarding pool: rated pairs the seen people disagree on, each with its
implicit-reward margin and slope along the seen people's principal directions, so that a newcomer's every answer
is placed without the model (``trainer.core.onboarding``, ``trainer.core.placement``).

The candidates are pairs people rated (one per prompt, single-turn, replies short enough to read on a phone);
each is measured with one forward and backward pass, and the ``ONBOARDING_POOL`` whose answer the seen people's
spread makes least predictable are kept. The files are written in a folder beside the run's and renamed into
place, so a killed worker leaves no half-written pool. Runs in the Celery worker (imports torch).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import shutil
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone

from trainer.models import OnboardingPool, TrainingRun, run_folder
from trainer.pools import pools_reap_stale
from trainer.worker.patience import patiently

log = logging.getLogger(__name__)
POOL_FOLDER = "onboarding"
MAX_REPLY_CHARS = 1200  # a question is two replies read side by side on a phone
POOL_VERSION = 1


def execute(pool_id: int, worker: str = "") -> str:
    from trainer.worker.training import Heartbeat, _reason, worker_name

    worker = worker_name(worker)
    pools_reap_stale()
    now = timezone.now()
    if not patiently(lambda: OnboardingPool.objects.filter(pk=pool_id, status=OnboardingPool.Status.QUEUED).update(
            status=OnboardingPool.Status.RUNNING, worker=worker, started_at=now, heartbeat_at=now, error="",
            done=0, total=0), f"onboarding pool {pool_id}"):
        return "skipped"
    pool = OnboardingPool.objects.select_related("run").get(pk=pool_id)
    with Heartbeat(pool_id, table=OnboardingPool):
        try:
            fields = prepare(pool.run, progress=lambda done, total: OnboardingPool.objects.filter(
                pk=pool_id).update(done=done, total=total, heartbeat_at=timezone.now()))
        except Exception as exc:  # every failure ends as a reason a person can act on
            log.exception("onboarding pool %s failed", pool_id)
            _finish(pool_id, OnboardingPool.Status.FAILED, error=_reason(exc))
            return OnboardingPool.Status.FAILED
    _finish(pool_id, OnboardingPool.Status.COMPLETED, **fields)
    return OnboardingPool.Status.COMPLETED


def _finish(pool_id: int, status: str, **fields) -> None:
    patiently(lambda: OnboardingPool.objects.filter(pk=pool_id, status=OnboardingPool.Status.RUNNING).update(
        status=status, finished_at=timezone.now(), **fields), f"onboarding pool {pool_id}")


def candidates(run: TrainingRun, limit: int) -> list:
    """Up to ``limit`` rated pairs of consenting people, one per single-turn prompt, in an order fixed by the
    version, each with its replies in a random order (reply a is the chosen one half of the time)."""
    from trainer.core.data import Pair, pair_from_json
    from users.consent import consented
    from users.collection.pairs import preference_pairs

    rng = random.Random(run.pk)
    seen_prompts, found = set(), []
    for n, row in enumerate(preference_pairs(users=get_user_model().objects.filter(**consented()))):
        pair = pair_from_json(row, where=f"pair {n + 1}")
        users_turns = [m for m in pair.prompt if m["role"] == "user"]
        if len(users_turns) != 1 or len(pair.prompt) > 2:
            continue
        prompt, a, b = users_turns[0]["content"], pair.chosen[0]["content"], pair.rejected[0]["content"]
        if prompt in seen_prompts or max(len(a), len(b)) > MAX_REPLY_CHARS or not a.strip() or not b.strip():
            continue
        seen_prompts.add(prompt)
        found.append((prompt, a, b))
        if len(found) >= 20 * limit:  # enough to choose from; a large dataset is not read to its end
            break
    rng.shuffle(found)
    pairs = []
    for prompt, chosen, rejected in found[:limit]:
        a, b = (chosen, rejected) if rng.random() < 0.5 else (rejected, chosen)
        key = hashlib.sha256("\x00".join((prompt, a, b)).encode()).hexdigest()[:16]  # the question's own name
        pairs.append(Pair(user_id="newcomer", conversation_id=key, prompt=[
            {"role": "user", "content": prompt}], chosen=[{"role": "assistant", "content": a}],
            rejected=[{"role": "assistant", "content": b}]))
    return pairs


def prepare(run: TrainingRun, progress=None) -> dict:
    """Measure the candidates on ``run``'s model and write its pool; the row's fields to record."""
    from safetensors.torch import save_file

    from trainer.core.artifacts import base_model_here, load_run
    from trainer.core.onboarding import basis_from_offsets, prepare_pool, seen_offsets
    from trainer.core.placement import information, prior
    from trainer.worker.serving import local_base_model

    started = time.perf_counter()
    if not run.artifacts:
        raise ValueError(f"version {run.pk} has no saved model")
    path = settings.ARTIFACTS_DIR / run.artifacts
    loaded = load_run(path, base_model=base_model_here(path, local_base_model))
    user_model = loaded.model.user_model
    if user_model is None:
        raise ValueError("a plain-DPO version has no vectors: there is nobody to place a newcomer among")
    offsets = seen_offsets(user_model)
    basis = basis_from_offsets(offsets, k=settings.ONBOARDING_DIRECTIONS)
    if basis.k == 0:
        raise ValueError(f"the version was trained on {user_model.n_users} people whose vectors do not differ: "
                         "there is no direction to place a newcomer along")
    pairs = candidates(run, settings.ONBOARDING_CANDIDATES)
    if len(pairs) < 2:
        raise ValueError(f"{len(pairs)} rated single-turn pairs with replies under {MAX_REPLY_CHARS} characters "
                         "were found: a pool needs at least 2 (collect more ratings, then prepare it again)")
    if progress:
        progress(0, len(pairs))
    keys = [p.conversation_id for p in pairs]
    measured = prepare_pool(loaded.model, loaded.tokenizer, loaded.config, basis, pairs, keys, progress=progress)
    start = prior(basis)
    kept = sorted(measured.values(), key=lambda q: -information(start, q))[:settings.ONBOARDING_POOL]
    texts = {p.conversation_id: p for p in pairs}
    questions = [{"key": q.key, "prompt": texts[q.key].prompt[0]["content"], "a": texts[q.key].chosen[0]["content"],
                  "b": texts[q.key].rejected[0]["content"], "margin": q.margin, "slope": list(q.slope)}
                 for q in kept]
    document = {"version": POOL_VERSION, "run": run.pk, "spread": basis.spread.tolist(),
                "axes": map_axes(run, loaded.user_index, offsets, basis), "questions": questions}
    folder = run_folder(run.pk)
    partial = folder / f"{POOL_FOLDER}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    (partial / "pool.json").write_text(json.dumps(document))
    save_file({"mean": basis.mean.float().contiguous(), "directions": basis.directions.float().contiguous()},
              str(partial / "basis.safetensors"))
    final = folder / POOL_FOLDER
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    return {"path": str(final.relative_to(settings.ARTIFACTS_DIR)), "questions": len(questions),
            "directions": basis.k, "seconds": round(time.perf_counter() - started, 2),
            "curve": newcomer_curve(run, loaded.user_index, document)}


def newcomer_curve(run: TrainingRun, user_index, document: dict, newcomers: int = 20, seed: int = 0) -> dict:
    """When the version's people are simulated: ``newcomers`` unseen people of each of their groups (the group's
    contested tastes, side tastes drawn as the population draws them, the same rating noise) answer the pool by
    their hidden rule, and a third of the questions, never asked, are held out for each; the held-out accuracy of
    the placement's predicted margins after each count of answers, adaptive and random (mean and 95 % half-width).
    {} for real people, whose rules nobody knows."""
    import statistics

    from trainer.core.placement import COUNTS, STRATEGIES, PoolPair, Space
    from users.models import SyntheticPersona
    from users.prism.ids import exported_user_id
    from users.synthetic.personas import side_tastes
    from users.synthetic.rule import DIMENSIONS, Persona

    trained = set(user_index.users)
    seen = [p for p in SyntheticPersona.objects.select_related("user__profile")
            if exported_user_id(p.user, getattr(p.user, "profile", None)) in trained]
    if not seen:
        return {}
    space = Space(tuple(document["spread"]))
    pool = {q["key"]: PoolPair(q["key"], q["margin"], tuple(q["slope"])) for q in document["questions"]}
    texts = {q["key"]: (q["a"], q["b"]) for q in document["questions"]}
    rng = random.Random(seed)
    groups: dict[str, dict] = {}
    for group in sorted({p.group for p in seen}):
        members = [p.hidden_profile for p in seen if p.group == group]
        contested = contested_tastes(group, members[0]["prefs"])
        side = max((abs(w) for m in members for d, w in m["prefs"].items() if d not in contested), default=0.0)
        found = {s: {n: [] for n in COUNTS} for s in STRATEGIES}
        for i in range(newcomers):
            prefs = {**contested, **side_tastes(rng, [d for d in DIMENSIONS if d not in contested], side)}
            persona = Persona(f"newcomer{i}", group, prefs, members[0].get("noise", 3.0))
            held_out = rng.sample(sorted(pool), max(1, len(pool) // 3))
            for strategy in STRATEGIES:
                curve = simulated_newcomer(persona, space, pool, texts, held_out, strategy, f"{seed}:{group}:{i}")
                for n, accuracy in curve.items():
                    found[strategy][n].append(accuracy)
        groups[group] = {s: [[statistics.mean(v), 1.96 * statistics.stdev(v) / len(v) ** 0.5 if len(v) > 1 else 0.0]
                             for v in found[s].values()] for s in STRATEGIES}
    return {"counts": list(COUNTS), "newcomers": newcomers, "groups": groups}


def simulated_newcomer(persona, space, pool: dict, texts: dict, held_out: list[str], strategy: str,
                       name: str) -> dict[int, float]:
    """One simulated newcomer's curve: they answer by their rule with its noise (the same noise for either
    strategy, seeded by ``name``) and are judged by it without noise."""
    from trainer.core.placement import simulate
    from users.synthetic.rule import judge_prefers, score

    noise = random.Random(name)

    def answer(key: str) -> bool:
        a, b = (score(persona, text, noise) for text in texts[key])
        return a > b or (a == b and noise.random() < 0.5)

    return simulate(space, pool, answer, lambda key: judge_prefers(persona, *texts[key]), held_out,
                    strategy=strategy, rng=random.Random(f"{name}:{strategy}"))


def map_axes(run: TrainingRun, user_index, offsets, basis) -> list[list[float]] | None:
    """(k, 2): how coordinates along the pool's directions land on the run page's map of users, fitted by least
    squares on the seen people (both are linear projections of the same vectors, so the fit is exact up to
    rounding); None when the run has no map."""
    import torch

    where = {p["user_id"]: (p["x"], p["y"]) for p in run.user_map or [] if not p.get("generic")}
    users = list(user_index.users)
    if not where or any(u not in where for u in users):
        return None
    flat = offsets.reshape(offsets.shape[0], -1).double()
    coordinates = (flat - basis.mean) @ basis.directions.T  # (N, k)
    xy = torch.tensor([where[u] for u in users], dtype=torch.float64)
    axes = torch.linalg.lstsq(coordinates, xy).solution  # (k, 2); both sides are centred on the seen people
    return axes.tolist()


def contested_tastes(group: str, prefs: dict) -> dict[str, float]:
    """The weights a group's name fixes ("length:detailed+format:plain": +-1 on each); a group named otherwise
    is taken as its first member's weights, all of them."""
    from users.synthetic.personas import pole_weight
    from users.synthetic.rule import DIMENSIONS

    parts = [part.split(":") for part in group.split("+")]
    if all(len(p) == 2 and p[0] in DIMENSIONS and p[1] in DIMENSIONS[p[0]].poles for p in parts):
        return {name: pole_weight(name, pole) for name, pole in parts}
    return dict(prefs)
