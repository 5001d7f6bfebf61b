"""Turn a run's stored results into the lists and tables its page shows."""

from trainer import selectors
from trainer.models import TrainingRun

MAP_ATTRIBUTES = ("group", "gender", "age", "education", "employment_status", "english_proficiency",
                  "lm_familiarity", "country")


def run_context(run: TrainingRun, *, color_by: str) -> dict:
    baseline = run.baseline if run.baseline_id else None
    evaluation = run.evaluation or {}
    per_user = _per_user_rows(evaluation, baseline.evaluation if baseline else {})
    color_by = color_by if color_by in MAP_ATTRIBUTES else "group"
    points = _map_points(run.user_map, color_by)
    series = selectors.run_series(run)
    diag = series.get("diag")
    latest_diag = {name: column[-1] for name, column in diag.items()} if diag else None
    return {
        "run": run,
        "baseline": baseline,
        "evaluation": evaluation,
        "baseline_evaluation": baseline.evaluation if baseline else {},
        "groups": _group_rows(evaluation, baseline.evaluation if baseline else {}),
        "per_user": per_user,
        "map_points": points,
        "map_attributes": MAP_ATTRIBUTES,
        "color_by": color_by,
        "series": {"series": series},
        "latest_diag": latest_diag,
        "config_rows": sorted(run.config.items()),
        "summary_rows": sorted((k, v) for k, v in run.data_summary.items() if not isinstance(v, (dict, list))),
        "log_lines": selectors.run_log_tail(run),
        "withdrawn": selectors.withdrawn_since_training(run) if run.status == TrainingRun.Status.COMPLETED else [],
    }


def _per_user_rows(evaluation: dict, baseline: dict) -> list[dict]:
    base = {row["user_id"]: row for row in baseline.get("per_user", [])}
    rows = []
    for row in evaluation.get("per_user", []):
        b = base.get(row["user_id"], {})
        rows.append({**row, "baseline_accuracy": b.get("accuracy")})
    return sorted(rows, key=lambda r: (not r.get("seen"), r["user_id"]))


def _group_rows(evaluation: dict, baseline: dict) -> list[dict]:
    rows = []
    for name in ("seen", "unseen"):
        if evaluation.get(name):
            rows.append({"name": f"{name} users", **evaluation[name],
                         "baseline_accuracy": (baseline.get(name) or {}).get("accuracy")})
    for group, values in (evaluation.get("groups") or {}).items():
        rows.append({"name": f"group {group}", **values,
                     "baseline_accuracy": ((baseline.get("groups") or {}).get(group) or {}).get("accuracy")})
    return rows


def _map_points(user_map: list[dict], color_by: str) -> list[dict]:
    if not user_map:
        return []
    attributes = selectors.user_attributes([p["user_id"] for p in user_map if not p.get("generic")])
    return [{**p, "label": "generic user" if p.get("generic") else
             (attributes.get(p["user_id"], {}).get(color_by) or "unknown")} for p in user_map]
