"""PRISM's files as data: their names, their keys in PRISM's order, the refused-file
error, and the checks every reader applies (ids, whole numbers, 1-100 scores).

Lossless by construction: every PRISM key we model goes to its column when the
value fits the column, otherwise -- and for every key we do not model or only
derive -- it is kept verbatim in the row's ``extra`` JSON. Export writes PRISM's
keys in a fixed order (``ordered``), taking the kept value over the column or the
derived one, then any other kept keys. So export -> import -> export gives the same bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

MAX_LINE_BYTES = 16 * 1024 * 1024
BATCH = 500
FILES = ("survey", "conversations", "utterances")

TEXT, JSON = "text", "json"
SURVEY_COLUMNS = {
    **{k: TEXT for k in ("consent", "consent_age", "lm_familiarity", "lm_indirect_use", "lm_direct_use",
                          "lm_frequency_use", "self_description", "system_string", "age", "gender",
                          "employment_status", "education", "marital_status", "english_proficiency", "study_id",
                          "study_locale")},
    **{k: JSON for k in ("religion", "ethnicity", "location", "lm_usecases", "stated_prefs", "order_lm_usecases",
                          "order_stated_prefs")},
}
SURVEY_KEYS = ["user_id", "survey_only", "num_completed_conversations", *SURVEY_COLUMNS,
               "generated_datetime", "timing_duration_s", "timing_duration_mins", "included_in_US_REP",
               "included_in_UK_REP", "included_in_balanced_subset"]
CONVERSATION_KEYS = ["conversation_id", "user_id", "generated_datetime", "timing_duration_s",
                     "timing_duration_mins", "conversation_type", "opening_prompt", "conversation_turns",
                     "conversation_history", "performance_attributes", "choice_attributes", "open_feedback",
                     "included_in_balanced_subset"]
HISTORY_KEYS = ["turn", "role", "content", "model_provider", "model_name", "score", "if_chosen", "within_turn_id"]
SURVEY_DERIVED = ["survey_only", "num_completed_conversations", "generated_datetime", "timing_duration_s",
                  "timing_duration_mins", "included_in_US_REP", "included_in_UK_REP", "included_in_balanced_subset"]
CONVERSATION_DERIVED = ["generated_datetime", "timing_duration_s", "timing_duration_mins", "conversation_turns",
                        "included_in_balanced_subset"]
UTTERANCE_KEYS = ["utterance_id", "interaction_id", "conversation_id", "user_id", "turn", "within_turn_id",
                  "user_prompt", "model_response", "model_name", "model_provider", "score", "if_chosen",
                  "conversation_type", "included_in_balanced_subset"]


class PrismImportError(Exception):
    """A refused file: names the file, the line (1-based; 0 for the whole file) and the field."""

    def __init__(self, file: str, line: int, field: str | None, message: str):
        self.file, self.line, self.field, self.message = file, line, field, message
        where = f"{file}, line {line}" if line else file
        if field:
            where += f", field {field}"
        super().__init__(f"{where}: {message}")


@dataclass
class ImportReport:
    file: str
    records: int = 0
    created: int = 0
    replaced: int = 0
    seconds: float = 0.0

    def __str__(self) -> str:
        return (f"{self.file}: {self.records:,} records ({self.created:,} new, {self.replaced:,} replaced) "
                f"in {self.seconds:.1f} s")




def fits(kind: str, value, max_length: int | None = None) -> bool:
    if value is None:
        return True
    if kind == JSON:
        return isinstance(value, (dict, list))
    return isinstance(value, str) and (max_length is None or len(value) <= max_length)


def require_id(record: dict, key: str, file: str, line: int) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value.strip():
        problem = "is missing" if value is None else f"must be a non-empty string, found {json.dumps(value)[:40]}"
        raise PrismImportError(file, line, key, problem)
    if len(value) > 120:
        raise PrismImportError(file, line, key, "is longer than 120 characters")
    return value


INT_MAX = 2**31 - 1  # the largest integer column the databases store (PostgreSQL's integer)


def require_int(value, file: str, line: int, field: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= INT_MAX:
        small = not isinstance(value, int) or abs(value) < 10**12
        shown = json.dumps(value) if small else f"a {len(str(value))}-digit number"
        raise PrismImportError(file, line, field, f"must be a whole number from {minimum} to {INT_MAX:,}, "
                                                  f"found {shown}")
    return value


def check_score(value, file: str, line: int, field: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
        raise PrismImportError(file, line, field, f"score {json.dumps(value)} is outside 1–100 (or null)")



def ordered(keys: list[str], values: dict, extra: dict) -> dict:
    """PRISM's keys in PRISM's order, kept values first, then any other kept keys."""
    out = {k: extra[k] if k in extra else values.get(k) for k in keys}
    for k, v in extra.items():
        if k not in out:
            out[k] = v
    return out

