"""The train worker's side of a personalization evaluation: for each evaluated person and held-out prompt,
replies from their own vectors, the generic vectors, the plain-DPO baseline and the base model (one sampling
seed for the four), judged by a simulated person's hidden rule, or left as a blind comparison on a real
person's compare page. Everything is stored in one transaction at the end: a cancelled or killed evaluation
leaves nothing half-written.

Runs in the Celery worker (imports torch); the web process never imports this module.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from trainer.models import EvaluationItem, PersonalEvaluation, TrainingRun
from trainer.personalization import services

log = logging.getLogger(__name__)
SOURCES = ("own", "generic", "baseline", "base")
COMPARE_SOURCE = {"own": "compare-personal", "generic": "compare-generic", "baseline": "compare-baseline",
                  "base": "compare-base"}


class Cancelled(Exception):
    pass


@dataclass
class Planned:
    """One held-out prompt of one person, before its replies are written."""

    user_id: int
    person: str
    prompt: list[dict]
    seed: int
    persona: object | None  # the hidden rule (users.synthetic.rule.Persona) of a simulated person
    replies: dict[str, str] = field(default_factory=dict)


def execute(evaluation_id: int, worker: str = "") -> str:
    from trainer.worker.training import Heartbeat, _reason, worker_name

    worker = worker_name(worker)
    services.evaluations_reap_stale()
    if not services.evaluation_claim(evaluation_id=evaluation_id, worker=worker):
        log.info("evaluation %s is not queued (already taken or finished): nothing to do", evaluation_id)
        return "skipped"
    with Heartbeat(evaluation_id, table=PersonalEvaluation):
        try:
            evaluate(PersonalEvaluation.objects.select_related("run", "baseline").get(pk=evaluation_id))
        except Cancelled:
            services.evaluation_finish(evaluation_id, PersonalEvaluation.Status.CANCELLED,
                                       error="Cancelled: nothing was kept. Start it again to evaluate.")
            return PersonalEvaluation.Status.CANCELLED
        except Exception as exc:  # every failure ends as a reason a person can act on
            log.exception("evaluation %s failed", evaluation_id)
            services.evaluation_finish(evaluation_id, PersonalEvaluation.Status.FAILED, error=_reason(exc))
            return PersonalEvaluation.Status.FAILED
    try:
        report_to_trackers(evaluation_id)
    except Exception:  # the evaluation is stored and shown on the run page; only the trackers miss it
        log.exception("evaluation %s: its figures could not be sent to the run's trackers", evaluation_id)
    return PersonalEvaluation.Status.COMPLETED


def report_to_trackers(evaluation_id: int) -> None:
    """The finished evaluation's figures (``report.tracked_win_rates`` of its run alone, not pooled with other
    seeds: each run's trackers hold that run's figures) sent to the trackers the run reported to, in the same
    tracker runs, at the run's last step. A real person's blind comparisons judged later are not sent: the
    run page and its report exports count them."""
    from trainer.personalization.report import personalization_report, tracked_win_rates
    from trainer.worker.training import run_trackers

    run = PersonalEvaluation.objects.select_related("run").get(pk=evaluation_id).run
    if not (run.config or {}).get("report_to"):
        return
    report = personalization_report(run, pooled=False)
    if report is None:
        return
    trackers = run_trackers(run, run.config["report_to"], params=None)
    try:
        trackers.log(run.step, tracked_win_rates(report))
    finally:
        trackers.finish()


def _progress(evaluation_id: int, text: str, done: int | None = None, total: int | None = None) -> None:
    fields = {"phase": text, "heartbeat_at": timezone.now()}
    if done is not None:
        fields["done"] = done
    if total is not None:
        fields["total"] = total
    PersonalEvaluation.objects.filter(pk=evaluation_id).update(**fields)
    if PersonalEvaluation.objects.filter(pk=evaluation_id, cancel_requested=True).exists():
        raise Cancelled


def evaluate(evaluation: PersonalEvaluation) -> None:
    started = time.perf_counter()
    chosen = evaluation.settings
    _progress(evaluation.pk, "choosing people and held-out prompts")
    planned, origins = plan(evaluation.run, chosen)
    if not planned:
        raise ValueError("No one to evaluate: the version has no people of its own with pairs in the database.")
    _progress(evaluation.pk, "loading the models")
    version = _load(evaluation.run)
    baseline = _load(evaluation.baseline) if evaluation.baseline_id else None
    write_replies(evaluation.pk, planned, version, baseline, chosen)
    _progress(evaluation.pk, "saving")
    store(evaluation, planned, summary={
        "people": len({p.person for p in planned}), "prompts": len(planned), "prompt_origins": origins,
        "seconds": round(time.perf_counter() - started, 1), "baseline": evaluation.baseline_id})


def plan(run: TrainingRun, chosen: dict) -> tuple[list[Planned], dict]:
    """The people evaluated (the version's own, in a seeded order, at most ``max_people``) and their held-out
    prompts: the prompts of their held-out conversations (the split the worker trained with), topped up with
    PRISM opening prompts when they have fewer; a real person gets only ``blind_per_person`` of them (they
    judge each one themself)."""
    from trainer import selectors
    from trainer.worker.training import gather_pairs, run_split
    from users.synthetic.prompts import PRISM_PROMPTS, prompts_or_default
    from users.synthetic.rule import Persona

    pairs = gather_pairs(run.data_filter)
    if not pairs:
        return [], {}
    split = run_split(run, pairs)
    rng = random.Random(chosen["seed"])
    people = sorted(split.seen_users)
    rng.shuffle(people)
    taking_part = {pair.user_id for pair in pairs}  # who withdrew since the run trained is not evaluated
    people = [person for person in people if person in taking_part][:chosen["max_people"]]
    profiles = selectors.profiles_by_exported_id(people)
    held_out: dict[str, list[list[dict]]] = {}
    for pair in split.test_seen:
        prompts = held_out.setdefault(pair.user_id, [])
        if pair.prompt not in prompts:
            prompts.append(pair.prompt)
    openers = prompts_or_default(PRISM_PROMPTS)
    planned, origins = [], {"held-out conversations": 0, "PRISM opening prompts": 0}
    for person in people:
        profile = profiles.get(person)
        if profile is None:  # named by the data but gone from the database since
            continue
        hidden = getattr(profile.user, "synthetic", None)
        prefs = (hidden.hidden_profile or {}).get("prefs") if hidden else None
        persona = Persona(person, hidden.group, prefs, 0.0) if prefs else None  # no rule: they judge themself
        wanted = chosen["prompts_per_person"] if persona else min(chosen["prompts_per_person"],
                                                                  chosen["blind_per_person"])
        prompts = held_out.get(person, [])
        if persona is None:  # a person reads the question they judge: only opening questions stand alone
            prompts = [p for p in prompts if len(p) == 1]
        prompts = prompts[:wanted]
        origins["held-out conversations"] += len(prompts)
        while len(prompts) < wanted:
            opener = [{"role": "user", "content": rng.choice(openers)}]
            if opener not in prompts:
                prompts.append(opener)
                origins["PRISM opening prompts"] += 1
        for prompt in prompts:
            planned.append(Planned(profile.user_id, person, prompt, chosen["seed"] * 1_000_003 + len(planned),
                                   persona))
    return planned, origins


def _load(run: TrainingRun | None):
    from trainer.core.artifacts import base_model_here, load_run
    from trainer.worker.serving import local_base_model

    path = settings.ARTIFACTS_DIR / run.artifacts
    return load_run(path, base_model=base_model_here(path, local_base_model))


def write_replies(evaluation_id: int, planned: list[Planned], version, baseline, chosen: dict) -> None:
    """The four replies to every planned prompt, in batches of ``generation_batch``, with progress and cancel
    between batches. Requests of one model run together; the base model is the version with its adapter off."""
    import torch

    from trainer.core.batch_generation import GenerationRequest, generate_batch
    from trainer.core.reference import adapter_disabled

    sampling = {"max_new_tokens": chosen["max_new_tokens"], "temperature": chosen["temperature"],
                "top_p": chosen["top_p"], "max_prompt_length": version.config.max_prompt_length}
    generic = version.soft_prompt(None)
    jobs = {"version": [], "baseline": [], "base": []}
    for item in planned:
        for source, vectors, model in (("own", version.soft_prompt(item.person), "version"),
                                       ("generic", generic, "version"), ("base", None, "base")):
            jobs[model].append((item, source, GenerationRequest(item.prompt, vectors, seed=item.seed, **sampling)))
        if baseline is not None:
            jobs["baseline"].append((item, "baseline", GenerationRequest(item.prompt, baseline.soft_prompt(None),
                                                                         seed=item.seed, **sampling)))
    total, done = sum(len(j) for j in jobs.values()), 0
    size = max(1, int(chosen["generation_batch"]))
    _progress(evaluation_id, "writing replies", 0, total)
    with torch.no_grad():
        for model, queued in jobs.items():
            if not queued:  # no baseline: nothing of it to load or write
                continue
            lm = (baseline or version).model.lm if model == "baseline" else version.model.lm
            tokenizer = (baseline if model == "baseline" else version).tokenizer
            for start in range(0, len(queued), size):
                batch = queued[start:start + size]
                if model == "base":
                    with adapter_disabled(lm):
                        generate_batch(lm, tokenizer, [r for _, _, r in batch])
                else:
                    generate_batch(lm, tokenizer, [r for _, _, r in batch])
                for item, source, request in batch:
                    item.replies[source] = "".join(request.stream()).strip()
                done += len(batch)
                _progress(evaluation_id, f"writing replies: {done} of {total}", done, total)


def store(evaluation: PersonalEvaluation, planned: list[Planned], *, summary: dict) -> None:
    """Items, judged at once by a hidden rule, or as blind comparisons waiting on the person's compare page."""
    from users.models import Conversation, Reply, Turn
    from users.synthetic.rule import judge_outcome

    with transaction.atomic():
        if PersonalEvaluation.objects.filter(pk=evaluation.pk, cancel_requested=True).exists():
            raise Cancelled
        items = []
        for item in planned:
            others = [s for s in SOURCES[1:] if s in item.replies]
            row = EvaluationItem(evaluation=evaluation, user_id=item.user_id, person=item.person, prompt=item.prompt,
                                 seed=item.seed, replies=item.replies)
            if item.persona is not None:
                row.judge = EvaluationItem.Judge.RULE
                row.outcomes = {o: judge_outcome(item.persona, item.replies["own"], item.replies[o]) for o in others}
            else:
                row.judge = EvaluationItem.Judge.PERSON
                row.conversation = _blind_comparison(item, Conversation, Turn, Reply)
            items.append(row)
        EvaluationItem.objects.bulk_create(items)
        updated = PersonalEvaluation.objects.filter(pk=evaluation.pk, status=PersonalEvaluation.Status.RUNNING).update(
            status=PersonalEvaluation.Status.COMPLETED, finished_at=timezone.now(), phase="", summary=summary,
            done=sum(len(p.replies) for p in planned))
        if not updated:  # reaped as silent meanwhile: its result would contradict the failure shown
            raise RuntimeError("the evaluation was marked failed while it was being saved")


def _blind_comparison(item: Planned, Conversation, Turn, Reply):
    """A comparison on the person's compare page with the replies already written, in a seeded random order."""
    text = item.prompt[-1]["content"]
    conversation = Conversation.objects.create(user_id=item.user_id, kind=Conversation.Kind.COMPARE,
                                               title=text[:80], opening_prompt=text)
    turn = Turn.objects.create(conversation=conversation, index=0, user_message=text)
    order = list(item.replies)
    random.Random(item.seed).shuffle(order)
    now = timezone.now()
    Reply.objects.bulk_create([Reply(turn=turn, position=i, source=COMPARE_SOURCE[s], model_provider="local",
                                     status=Reply.Status.DONE, content=item.replies[s], finished_at=now,
                                     token_count=len(item.replies[s].split())) for i, s in enumerate(order)])
    return conversation
