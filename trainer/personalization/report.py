"""The personalization report of a version: how often each person's own vectors write the reply they prefer,
against plain DPO trained on the same data, against the generic vectors and against the base model; per group
(a survey answer, or the hidden group of simulated people) and per person, each with its 95 % bootstrap
interval and n; pooled over a run's repeats with other seeds, each seed shown; beside it the held-out pair
accuracy, the replies' length and the style features that differ, and a verdict in plain words.

Built on read from the stored items, so a real person's blind ratings count as soon as they are given.
"""

from __future__ import annotations

import csv
import io
import re
import statistics
from collections import defaultdict

from alignment_site import glossary
from trainer import selectors
from trainer.core.winrate import win_rate
from trainer.models import EvaluationItem, PersonalEvaluation, TrainingRun
from users.synthetic.rule import features

# What own vectors are judged against, named as the compare page names them (in lower case inside a sentence).
OPPONENTS = {kind: glossary.VECTORS[kind][0].lower() + glossary.VECTORS[kind][1:]
             for kind in ("baseline", "generic", "base")}
SOURCES = ("own", "baseline", "generic", "base")
GROUPINGS = ("group", "gender", "age", "education", "employment_status", "english_proficiency", "lm_familiarity",
             "country")
STYLE_GAP = 0.1  # a style feature (each in [-1, 1]) "differs" when own and plain-DPO replies are this far apart


def series_of(run: TrainingRun) -> list[TrainingRun]:
    """The run and its repeats with other seeds (the first run of a repeat names the series), by seed."""
    root = run.repeat_of_id or run.pk
    runs = TrainingRun.objects.filter(pk=root) | TrainingRun.objects.filter(repeat_of_id=root)
    return sorted(runs.select_related("baseline"), key=lambda r: (r.config.get("seed", 0), r.pk))


def latest_evaluations(runs: list[TrainingRun]) -> dict[int, PersonalEvaluation]:
    """Run id -> its newest completed evaluation."""
    found = {}
    for evaluation in PersonalEvaluation.objects.filter(run__in=runs, status=PersonalEvaluation.Status.COMPLETED):
        found.setdefault(evaluation.run_id, evaluation)  # newest first (the model's ordering)
    return found


def personalization_report(run: TrainingRun, *, group_by: str = "group", pooled: bool = True) -> dict | None:
    """The report of ``run`` pooled with its repeats (``pooled=False``: of ``run`` alone); None when none of
    them has a completed evaluation."""
    group_by = group_by if group_by in GROUPINGS else "group"
    runs = series_of(run) if pooled else [run]
    evaluations = latest_evaluations(runs)
    if not evaluations:
        return None
    items = list(EvaluationItem.objects.filter(evaluation__in=evaluations.values()).values(
        "evaluation_id", "person", "judge", "outcomes", "replies"))
    attributes = selectors.user_attributes(sorted({i["person"] for i in items}))
    label = lambda person: (attributes.get(person, {}).get(group_by) or "(no answer)")  # noqa: E731
    by_id = {r.pk: r for r in runs}
    seed_of = {e.pk: by_id[e.run_id].config.get("seed", 0) for e in evaluations.values()}

    by_group, by_person, by_seed = defaultdict(_outcome_lists), defaultdict(_outcome_lists), defaultdict(
        lambda: defaultdict(_outcome_lists))
    texts = defaultdict(lambda: defaultdict(list))  # group -> source -> replies
    people_of = defaultdict(set)
    pending = 0
    for item in items:
        group = label(item["person"])
        people_of[group].add(item["person"])
        for source, text in item["replies"].items():
            texts[group][source].append(text)
        if item["outcomes"] is None:
            pending += 1
            continue
        for opponent, value in item["outcomes"].items():
            by_group[group][opponent].append(value)
            by_person[item["person"]][opponent].append(value)
            by_seed[seed_of[item["evaluation_id"]]][group][opponent].append(value)
    everyone = sum(len(p) for p in people_of.values())
    groups = []
    for group in sorted(people_of, key=lambda g: (-len(people_of[g]), g)):
        groups.append({
            "name": group, "people": len(people_of[group]), "share": len(people_of[group]) / everyone,
            "vs": {o: win_rate(by_group[group][o]).to_dict() for o in OPPONENTS},
            "words": {s: _mean_words(texts[group][s]) for s in SOURCES if texts[group][s]},
            "style": _style_gaps(texts[group]),
        })
    people = [{"person": person, "group": label(person),
               "vs": {o: win_rate(by_person[person][o]).to_dict() for o in OPPONENTS}}
              for person in sorted({i["person"] for i in items})]
    seeds = [{"seed": seed, "run": next(r.pk for r in runs if r.config.get("seed", 0) == seed),
              "groups": {g: {o: _rate_n(values[o]) for o in OPPONENTS} for g, values in sorted(per.items())}}
             for seed, per in sorted(by_seed.items())]
    worse = served_worse(groups)
    return {
        "run": run.pk, "runs": [r.pk for r in runs], "evaluations": sorted(e.pk for e in evaluations.values()),
        "group_by": group_by, "judged": sum(1 for i in items if i["outcomes"] is not None), "pending": pending,
        "opponents": OPPONENTS, "groups": groups, "people": people, "seeds": seeds,
        "accuracy": _accuracy(runs, group_by), "verdicts": [_verdict(g) for g in groups],
        "served_worse": worse, "served_worse_text": served_worse_text(worse),
        "baseline_missing": any(e.baseline_id is None for e in evaluations.values()),
    }


def _outcome_lists():
    return defaultdict(list)


def _rate_n(values: list[float]) -> dict:
    result = win_rate(values)
    return {"rate": result.rate, "n": result.n}


def _mean_words(texts: list[str]) -> float:
    return round(statistics.mean(len(t.split()) for t in texts), 1)


def _style_gaps(texts: dict[str, list[str]]) -> list[dict]:
    """The style features (length, register, tone, format) whose mean differs between own-vector and
    plain-DPO replies (or generic ones, without a baseline) by at least STYLE_GAP."""
    other = "baseline" if texts.get("baseline") else "generic"
    if not texts.get("own") or not texts.get(other):
        return []
    means = {s: _mean_features(texts[s]) for s in ("own", other)}
    return [{"feature": name, "own": round(means["own"][name], 2), "other": round(means[other][name], 2),
             "against": OPPONENTS[other]}
            for name in means["own"] if abs(means["own"][name] - means[other][name]) >= STYLE_GAP]


def _mean_features(texts: list[str]) -> dict[str, float]:
    rows = [features(t) for t in texts]
    return {name: statistics.mean(r[name] for r in rows) for name in rows[0]}


def _accuracy(runs: list[TrainingRun], group_by: str) -> dict:
    """Held-out pair accuracy (from the training evaluation), pooled over the series by pairs: seen and unseen
    people, and the hidden groups, for the runs and their plain-DPO baselines."""
    def pool(evaluations: list[dict], key: str, name: str | None = None) -> dict | None:
        rows = [((e.get(key) or {}).get(name) if name else e.get(key)) for e in evaluations]
        rows = [r for r in rows if r and r.get("n") and r.get("accuracy") is not None]
        n = sum(r["n"] for r in rows)
        return {"accuracy": sum(r["accuracy"] * r["n"] for r in rows) / n, "n": n} if n else None

    ours = [r.evaluation or {} for r in runs]
    theirs = [r.baseline.evaluation or {} for r in runs if r.baseline_id and r.baseline.evaluation]
    rows = [{"name": f"{kind} people", "own": pool(ours, kind), "baseline": pool(theirs, kind)}
            for kind in ("seen", "unseen")]
    if group_by == "group":
        names = sorted({g for e in ours for g in (e.get("groups") or {})})
        rows += [{"name": f"group {g}", "own": pool(ours, "groups", g), "baseline": pool(theirs, "groups", g)}
                 for g in names]
    return {"rows": [r for r in rows if r["own"] or r["baseline"]]}


def _verdict(group: dict) -> str:
    """"serves the 30 % concise group better than plain DPO: 78 % [70, 85]" and the like."""
    opponent = "baseline" if group["vs"]["baseline"]["n"] else "generic"
    rate = group["vs"][opponent]
    who = f"the {group['share']:.0%} {group['name']} group"
    if not rate["n"]:
        return f"{who}: not judged yet"
    figure = f"{rate['rate']:.0%} [{rate['low'] * 100:.0f}, {rate['high'] * 100:.0f}], n={rate['n']}"
    if rate["low"] > 0.5:
        return f"serves {who} better than {OPPONENTS[opponent]}: {figure}"
    if rate["high"] < 0.5:
        return f"serves {who} worse than {OPPONENTS[opponent]}: {figure}"
    return f"no clear difference from {OPPONENTS[opponent]} for {who}: {figure}"


def served_worse(groups: list[dict]) -> list[dict]:
    """The groups a version serves worse than plain DPO trained on the same pairs would.

    A group is served worse when its own vectors' replies win against plain DPO's below half the time
    (``rate < 0.5``, ties counting half) and the whole 95 % interval lies below one half (``high < 0.5``): a
    loss the sampling of its people and prompts does not explain. A group with no plain-DPO comparison
    (``n == 0``) is not judged: the generic vectors are no stand-in, as a majority's own vectors are not
    expected to beat them.

    ``groups`` are the report's rows: {"name", "people", "share", "vs": {"baseline": a win-rate dict}, ...}.
    Returns, in their order, {"name", "people", "share", "rate", "low", "high", "n"} of each group served worse.
    """
    found = []
    for group in groups:
        rate = group["vs"].get("baseline") or {}
        if rate.get("n") and rate["rate"] < 0.5 and rate["high"] < 0.5:
            found.append({"name": group["name"], "people": group["people"], "share": group["share"],
                          **{key: rate[key] for key in ("rate", "low", "high", "n")}})
    return found


def served_worse_text(groups: list[dict]) -> str:
    """The warning staff read on the run page and before activating: which groups plain DPO serves better."""
    if not groups:
        return ""
    named = "; ".join(f"the {g['share']:.0%} {g['name']} group ({g['people']} "
                      f"{'person' if g['people'] == 1 else 'people'}): {g['rate']:.0%} "
                      f"[{g['low'] * 100:.0f}, {g['high'] * 100:.0f}], n={g['n']}" for g in groups)
    return (f"Served worse than by plain DPO: {named}. Their own vectors' replies won against plain DPO's in "
            "fewer than half of their prompts, and the 95 % interval stays below half, so these people would "
            "be better off with the plain-DPO version.")


def served_worse_note(run: TrainingRun) -> str:
    """The served-worse warning of ``run``'s report (pooled over its seeds, by hidden group), or "" when no
    group is served worse or nothing was judged: what activation asks about."""
    found = personalization_report(run)
    return served_worse_text(found["served_worse"]) if found else ""


def person_row(*, run: TrainingRun, person: str) -> dict | None:
    """One person's own figures (what a participant may see of the report): their win-rates and how many of
    their blind comparisons still wait for them."""
    evaluation = latest_evaluations([run]).get(run.pk)
    if evaluation is None:
        return None
    items = list(EvaluationItem.objects.filter(evaluation=evaluation, person=person).values("outcomes"))
    if not items:
        return None
    values = defaultdict(list)
    for item in items:
        for opponent, value in (item["outcomes"] or {}).items():
            values[opponent].append(value)
    return {"vs": {o: win_rate(values[o]).to_dict() for o in OPPONENTS},
            "pending": sum(1 for i in items if i["outcomes"] is None), "opponents": OPPONENTS}


TRACKED_OPPONENTS = {"baseline": "plain", "generic": "generic", "base": "base"}  # opponent -> its metric name


def tracked_win_rates(report: dict) -> dict[str, float]:
    """The report's figures per group as tracker metrics, named as TRL names its evaluation's:
    ``eval/personalization/<group>/win_rate_vs_plain`` (own vectors against plain DPO; ``_generic``, ``_base``
    for the others), its 95 % interval as ``..._low`` and ``..._high``, the judgements it counts as
    ``n_vs_plain``, and ``people``. A comparison with nothing judged is left out; a group's name keeps letters,
    digits, ``_.-`` (survey answers are free text, and MLflow refuses most other characters)."""
    values = {}
    for group in report["groups"]:
        prefix = f"eval/personalization/{re.sub(r'[^A-Za-z0-9_.-]+', '_', group['name']).strip('_') or '_'}/"
        values[prefix + "people"] = group["people"]
        for opponent, name in TRACKED_OPPONENTS.items():
            rate = group["vs"][opponent]
            if rate["n"]:
                values |= {f"{prefix}win_rate_vs_{name}": rate["rate"], f"{prefix}win_rate_vs_{name}_low": rate["low"],
                           f"{prefix}win_rate_vs_{name}_high": rate["high"], f"{prefix}n_vs_{name}": rate["n"]}
    return values


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(cell):
    """A text cell a spreadsheet would run as a formula (it starts with = + - @, a tab or a carriage return:
    group names come from free-text survey answers) gets a leading apostrophe, so it is shown as text; numbers
    are left as they are."""
    if isinstance(cell, str) and cell.startswith(FORMULA_STARTS):
        return "'" + cell
    return cell


class SafeWriter:
    """``csv.writer`` whose text cells go through ``spreadsheet_safe``."""

    def __init__(self, out):
        self._writer = csv.writer(out)

    def writerow(self, row):
        self._writer.writerow([spreadsheet_safe(cell) for cell in row])


def report_csv(report: dict) -> str:
    """The report as CSV rows: level (group, person, seed), name, opponent, win-rate, interval, n and counts."""
    out = io.StringIO()
    writer = SafeWriter(out)
    writer.writerow(["level", "name", "group", "opponent", "win_rate", "low", "high", "n", "wins", "ties", "losses"])
    for group in report["groups"]:
        for opponent, r in group["vs"].items():
            writer.writerow(["group", group["name"], group["name"], opponent, r["rate"], r["low"], r["high"], r["n"],
                             r["wins"], r["ties"], r["losses"]])
    for person in report["people"]:
        for opponent, r in person["vs"].items():
            writer.writerow(["person", person["person"], person["group"], opponent, r["rate"], r["low"], r["high"],
                             r["n"], r["wins"], r["ties"], r["losses"]])
    for seed in report["seeds"]:
        for group, per in seed["groups"].items():
            for opponent, r in per.items():
                writer.writerow([f"seed {seed['seed']}", f"run {seed['run']}", group, opponent, r["rate"], "", "",
                                 r["n"], "", "", ""])
    return out.getvalue()
