"""What the training management commands add to ``trainer.core.cli``: pairs from the database (with the
dashboard's data filters), ``--model`` defaulting to ``BASE_MODEL``, groups from survey answers, and errors
as ``CommandError`` (a message, no traceback)."""

from __future__ import annotations

import contextlib
import datetime
from pathlib import Path

from django.conf import settings
from django.core.management.base import CommandError

from trainer.core.cli import locate_model
from trainer.core.pairing import DEFAULT as DEFAULT_PAIRING
from trainer.core.pairing import STRATEGIES as PAIRINGS


def add_database_arguments(parser, *, margin: bool = True) -> None:
    """The dashboard's data filters; ``margin=False`` where the command has its own ``--min-margin`` (train:
    read off the data by default, applied to a file's pairs too)."""
    group = parser.add_argument_group("pairs from the database (when --pairs is not given)")
    group.add_argument("--min-pairs", type=int, default=1, help="only people with at least this many pairs")
    if margin:
        group.add_argument("--min-margin", type=int, default=1, help="smallest score gap that makes a pair")
    group.add_argument("--exclude-flagged", action="store_true",
                       help="leave out the people the raters page flags (one score, faster than reading, no pattern)")
    group.add_argument("--pairing", choices=list(PAIRINGS), default=DEFAULT_PAIRING,
                       help="how a turn's ratings become pairs: " + "; ".join(f"{k}: {v}" for k, v in PAIRINGS.items()))
    group.add_argument("--since", type=datetime.date.fromisoformat, help="conversations from this date (YYYY-MM-DD)")
    group.add_argument("--until", type=datetime.date.fromisoformat, help="conversations up to this date")


def pairs_from(options: dict, *, people: list[str] | None = None) -> list:
    """The pairs of ``--pairs`` or, without it, of the database under the data filters (optionally of some people)."""
    from trainer.core.data import read_pairs
    from trainer.worker.training import gather_pairs
    from users.dataset.selectors import people_named

    if options.get("pairs"):
        return read_pairs(options["pairs"])
    data_filter = {"min_pairs": options.get("min_pairs", 1), "min_margin": options.get("min_margin") or 1,
                   "since": options.get("since"), "until": options.get("until"),
                   "pairing": options.get("pairing") or DEFAULT_PAIRING,
                   "exclude_flagged": bool(options.get("exclude_flagged"))}
    if people:
        users, unknown = people_named(people)
        if unknown:
            raise CommandError(f"No person called {', '.join(map(repr, unknown))}: give a username or the user_id "
                               "the pairs carry (web-<username>, or the PRISM user_id of an imported person).")
        data_filter["users"] = [u.pk for u in users]
    pairs = gather_pairs(data_filter)
    if not pairs:
        raise CommandError("The database has no preference pairs under these filters: import PRISM files "
                           "(import_prism), collect ratings, or give --pairs FILE.")
    return pairs


def model_from(options: dict, stdout) -> str | None:
    name = options.get("model")
    return locate_model(name, data=settings.DATA_DIR, say=lambda m: stdout.write(m)) if name else None


def run_model(options: dict, stdout) -> str | None:
    """--model when given; else the run's recorded base model, or BASE_MODEL if that folder is not here."""
    from trainer.core.artifacts import base_model_here

    given = model_from(options, stdout)
    if given is not None or not (Path(options["run"]) / "run.json").is_file():
        return given  # no run.json: open_run says what is wrong
    return base_model_here(options["run"], lambda: locate_model(settings.BASE_MODEL, data=settings.DATA_DIR,
                                                                say=lambda m: stdout.write(m)))


def survey_groups(field: str) -> dict[str, str]:
    """Exported person id -> their survey answer to ``field`` (dots reach inside PRISM's nested answers,
    e.g. location.reside_region), for everyone with a profile."""
    from users.models import Profile
    from users.prism.ids import exported_user_id

    head, *rest = field.split(".")
    if head not in {f.name for f in Profile._meta.get_fields()} and head != "extra":
        names = sorted(f.name for f in Profile._meta.concrete_fields if f.name not in ("id", "user"))
        raise CommandError(f"--group-by {field}: not a survey answer; use one of {', '.join(names)} "
                           "(or a field of the pairs)")
    groups = {}
    for profile in Profile.objects.select_related("user"):
        value = getattr(profile, head)
        for key in rest:
            value = value.get(key) if isinstance(value, dict) else None
        if value not in (None, ""):
            groups[exported_user_id(profile.user, profile)] = str(value)
    return groups


def group_of_from(options: dict):
    """--groups FILE, --group-by a field of the pairs, or --group-by a survey answer (looked up when the pairs
    do not have that field)."""
    from trainer.core.cli import group_lookup

    field = options.get("group_by")
    if not field or options.get("groups"):
        return group_lookup(options)
    answers: dict | None = None

    def group_of(pair):
        nonlocal answers
        if field in pair.extra:
            return pair.extra[field]
        if answers is None:
            answers = survey_groups(field)
        return answers.get(pair.user_id)

    return group_of


@contextlib.contextmanager
def plain_errors():
    """Errors a person can act on become ``CommandError``: one line, no traceback."""
    from trainer.core.data import DataError
    from trainer.core.loop import TrainingError
    from trainer.core.presets import UsageError

    try:
        yield
    except (UsageError, DataError, TrainingError, FileNotFoundError) as exc:
        raise CommandError(str(exc)) from None
