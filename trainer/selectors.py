"""Reads for the training pages."""

from __future__ import annotations

import json
from functools import lru_cache

from django.conf import settings
from django.db.models import Count

from trainer.models import GROUP_LOG, RUN_LOG, Activation, RunLog, TrainingRun, run_folder


def _filtered_rejected(data_filter: dict, *, consented_only: bool = True):
    """The rejected replies that make the data filter's pairs: of people who consented and have not withdrawn
    (``consented_only``; runs, their previews and evaluations never see anyone else's)."""
    from trainer.core.pairing import DEFAULT
    from users.consent import consented
    from users.collection.pairs import pair_rejected_replies

    qs = pair_rejected_replies(min_margin=int(data_filter.get("min_margin", 1)),
                               pairing=data_filter.get("pairing", DEFAULT))
    if consented_only:
        qs = qs.filter(**consented("turn__conversation__user__"))
    if data_filter.get("since"):
        qs = qs.filter(turn__conversation__created_at__date__gte=data_filter["since"])
    if data_filter.get("until"):
        qs = qs.filter(turn__conversation__created_at__date__lte=data_filter["until"])
    if data_filter.get("users"):  # database ids; the command line's --user
        qs = qs.filter(turn__conversation__user__in=data_filter["users"])
    if data_filter.get("exclude_flagged"):  # the raters page's flags
        qs = qs.exclude(turn__conversation__user__in=_flagged(data_filter))
    return qs


FLAGGED = "_flagged"  # a data filter's flagged people, worked out once for the reads of one request


def with_flags(data_filter: dict) -> dict:
    """The data filter with the raters page's flagged people worked out once (when it leaves them out), for a
    request that reads it several times: the flags read every rating of every rater."""
    if data_filter.get("exclude_flagged") and FLAGGED not in data_filter:
        from users.dataset.raters import flagged_people

        return {**data_filter, FLAGGED: sorted(flagged_people())}
    return data_filter


def _flagged(data_filter: dict) -> set[int]:
    if FLAGGED in data_filter:
        return set(data_filter[FLAGGED])
    from users.dataset.raters import flagged_people

    return flagged_people()


def _activations():
    return Activation.objects.filter(run__status=TrainingRun.Status.COMPLETED).exclude(run__artifacts="")


def active_run() -> TrainingRun | None:
    """The version serving chat: the newest activation of a completed run with a saved model; or None."""
    activation = _activations().select_related("run").first()
    return activation.run if activation else None


def active_version() -> tuple[int, str] | None:
    """(run id, artifacts) of ``active_run`` in one light query, for the worker's every reply."""
    row = _activations().values_list("run_id", "run__artifacts").first()
    return tuple(row) if row else None


def pair_counts(data_filter: dict) -> dict[int, int]:
    """Pairs per user id (database pk) for the users a data filter selects."""
    rows = _filtered_rejected(data_filter).values("turn__conversation__user").annotate(n=Count("id"))
    minimum = int(data_filter.get("min_pairs", 1))
    return {row["turn__conversation__user"]: row["n"] for row in rows if row["n"] >= minimum}


def people_left_out(data_filter: dict) -> dict[str, int]:
    """People whose pairs the data filter would select but a run leaves out: ``withdrawn`` (they left the
    study), ``no_consent`` (no consent that says yes: imported people whose survey lacks it, accounts
    that never agreed) and, when the filter asks, ``flagged`` (by the raters page). One query, and the raters'
    figures when flagged people are left out."""
    rows = (_filtered_rejected({**data_filter, "exclude_flagged": False}, consented_only=False)
            .values_list("turn__conversation__user", "turn__conversation__user__profile__consent",
                         "turn__conversation__user__profile__withdrawn_at").distinct())
    withdrawn, no_consent = set(), set()
    for user, consent, withdrawn_at in rows:
        if withdrawn_at is not None:
            withdrawn.add(user)
        elif not (consent or "").strip().lower().startswith("yes"):
            no_consent.add(user)
    flagged = 0
    if data_filter.get("exclude_flagged"):
        everyone = {user for user, *_ in rows} - withdrawn - no_consent
        flagged = len(everyone & _flagged(data_filter))
    return {"withdrawn": len(withdrawn), "no_consent": len(no_consent), "flagged": flagged}


def pairs_by_conversation(data_filter: dict) -> dict[tuple[int, int], int]:
    """Pairs per (user id, conversation id) for the users a data filter selects, in the order the worker
    gathers them (conversation by conversation, by id): what ``plan_split`` needs to plan a run's split
    without reading a single message. One query."""
    rows = (_filtered_rejected(data_filter).values_list("turn__conversation__user", "turn__conversation")
            .annotate(n=Count("id")).order_by("turn__conversation"))
    keyed = {(user, conversation): n for user, conversation, n in rows}
    per_user: dict[int, int] = {}
    for (user, _), n in keyed.items():
        per_user[user] = per_user.get(user, 0) + n
    minimum = int(data_filter.get("min_pairs", 1))
    return {key: n for key, n in keyed.items() if per_user[key[0]] >= minimum}


def pair_margins(data_filter: dict) -> list[tuple]:
    """(user id, conversation id, margin, chosen reply id) of every pair the data filter gives with a margin
    filter of 1, in the order the worker gathers them (conversation by conversation, by id): what the start
    form reads its margin filter, passes and token budget off (``trainer.data_defaults``). One query."""
    rows = (_filtered_rejected({**data_filter, "min_margin": 1})
            .values_list("turn__conversation__user", "turn__conversation", "turn__replies__score", "score",
                         "turn__replies__id")
            .order_by("turn__conversation", "turn__index", "position", "turn__replies__id"))
    return [(user, conversation, chosen - rejected, chosen_id)
            for user, conversation, chosen, rejected, chosen_id in rows]


def reply_texts(ids: list[int]) -> dict[int, str]:
    from users.models import Reply

    return dict(Reply.objects.filter(pk__in=ids).values_list("pk", "content"))


def measured_rates(*, base_model: str, limit: int = 8) -> list[dict]:
    """Training throughput of the newest completed runs on this base model, newest first: pair passes per
    second (P-DPO passes each pair twice, with the person's and the generic vectors), the machine that trained
    it and its processes."""
    runs = (TrainingRun.objects.filter(status=TrainingRun.Status.COMPLETED, data_summary__has_key="pairs_per_second",
                                       data_summary__base_model=base_model)
            .order_by("-finished_at").only("pk", "worker", "config", "processes", "data_summary")[:limit])
    rates = []
    for run in runs:
        pairs_per_second = run.data_summary.get("pairs_per_second")
        if pairs_per_second:
            passes = 2 if run.has_vectors else 1
            rates.append({"run": run.pk, "passes_per_second": float(pairs_per_second) * passes,
                          "host": worker_host(run.worker), "processes": run.processes})
    return rates


def worker_host(worker: str) -> str:
    """The machine of a recorded worker: ``train@box`` (a Celery worker's name) or ``box:1234`` (a process
    outside a worker, and runs recorded before runs took their worker's name) -> ``box``."""
    return worker.rsplit("@", 1)[-1].rsplit(":", 1)[0]


def baseline_cancelled_with(run: TrainingRun) -> TrainingRun | None:
    """The plain-DPO baseline that cancelling ``run`` cancels too: its own, while it waits in the queue."""
    baseline = run.baseline if run.baseline_id else None
    return baseline if baseline is not None and baseline.status == TrainingRun.Status.QUEUED else None


def runs_page():
    return TrainingRun.objects.select_related("created_by", "baseline").order_by("-created_at")


def active_activation() -> Activation | None:
    return Activation.objects.select_related("run", "activated_by").first()


def run_series(run: TrainingRun) -> dict:
    """The logged metrics as columns for the charts: {kind: {"step": [...], name: [...]}}."""
    series: dict[str, dict[str, list]] = {}
    for kind, step, values in RunLog.objects.filter(run=run).order_by("kind", "step").values_list(
            "kind", "step", "values"):
        columns = series.setdefault(kind, {"step": []})
        n = len(columns["step"])
        columns["step"].append(step)
        for name, value in values.items():
            columns.setdefault(name, [None] * n).append(value)
        for name, column in columns.items():
            if len(column) < n + 1:
                column.append(None)
    return series


def profiles_by_exported_id(exported_ids) -> dict:
    """The profiles (with their user and any hidden persona) of the people training data names by exported id."""
    from django.db.models import Q

    from users.models import Profile
    from users.prism.ids import exported_user_id, web_username

    wanted = set(exported_ids)
    usernames = [name for name in map(web_username, wanted) if name]
    profiles = (Profile.objects.filter(Q(prism_user_id__in=wanted) | Q(user__username__in=usernames))
                .select_related("user", "user__synthetic"))
    # an imported person whose username happens to match is not the web account named
    return {key: p for p in profiles if (key := exported_user_id(p.user, p)) in wanted}


def user_attributes(exported_ids: list[str]) -> dict[str, dict]:
    """Survey attributes (and the hidden group of simulated people) by exported user id."""
    found = {}
    for key, p in profiles_by_exported_id(exported_ids).items():
        persona = getattr(p.user, "synthetic", None)
        found[key] = {
            "group": persona.group if persona else None, "gender": p.gender, "age": p.age, "education": p.education,
            "employment_status": p.employment_status, "english_proficiency": p.english_proficiency,
            "lm_familiarity": p.lm_familiarity, "country": (p.location or {}).get("reside_country"),
        }
    return found


def synthetic_groups(users) -> dict[str, str]:
    """Exported user id -> hidden group, for the simulated people among ``users``."""
    from users.models import SyntheticPersona
    from users.prism.ids import exported_user_id

    personas = SyntheticPersona.objects.filter(user__in=users).select_related("user", "user__profile")
    return {exported_user_id(p.user, getattr(p.user, "profile", None)): p.group for p in personas if p.group}


def run_log_tail(run: TrainingRun, lines: int = 60) -> list[str]:
    """The last lines the worker (and, for a run over several processes, the group) wrote about the run."""
    found = []
    for name in (RUN_LOG, GROUP_LOG):
        path = run_folder(run.pk) / name
        if path.is_file():
            with path.open("rb") as f:
                f.seek(max(0, path.stat().st_size - 64_000))
                found += [f"{name}: {line}" for line in f.read().decode(errors="replace").splitlines()[-lines:]]
    return found[-2 * lines:]


def withdrawn_since_training(run: TrainingRun) -> list[str]:
    """The people this version was trained on (its user map names them) who have withdrawn from the study
    since: their exported ids, sorted. One query."""
    trained = [p["user_id"] for p in run.user_map or [] if not p.get("generic")]
    if not trained:
        return []
    profiles = profiles_by_exported_id(trained)
    return sorted(uid for uid, profile in profiles.items() if profile.withdrawn_at is not None)


@lru_cache(maxsize=16)
def trained_users(run_id: int, artifacts: str) -> frozenset[str]:
    """Exported user ids that have their own row in a version (read once from its users.json)."""
    try:
        data = json.loads((settings.ARTIFACTS_DIR / artifacts / "users.json").read_text())
    except (OSError, ValueError):
        return frozenset()
    return frozenset(data.get("users", {}))
