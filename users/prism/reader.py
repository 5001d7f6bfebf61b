"""Reading a PRISM JSONL file safely: one line held at a time, each line bounded."""

from __future__ import annotations

import json
import math
import re
from typing import IO, Iterable, Iterator

from users.prism.schema import MAX_LINE_BYTES, PrismImportError


def read_records(stream: IO[bytes], *, name: str, max_line_bytes: int = MAX_LINE_BYTES
                 ) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) from a binary JSONL stream, holding at most one line.

    ``readline(limit)`` never reads past the limit, so an over-long line is
    refused after ``max_line_bytes + 1`` bytes whatever its real length.
    """
    number, seen_bytes, seen_records = 0, False, False
    while True:
        raw = stream.readline(max_line_bytes + 1)
        if not raw:
            break
        seen_bytes = True
        number += 1
        line = raw.rstrip(b"\r\n")
        if len(line) > max_line_bytes:
            raise PrismImportError(name, number, None, f"the line is longer than {max_line_bytes:,} bytes")
        if not line.strip():
            continue
        if b"\\u0000" in line:
            raise PrismImportError(name, number, None, "text contains a NUL character (\\u0000), "
                                                       "which the database cannot store")
        try:
            obj = json.loads(line, parse_constant=_refuse_constant, parse_float=_finite_float)
        except RecursionError:
            raise PrismImportError(name, number, None, "the JSON is nested too deeply to read") from None
        except ValueError as exc:
            raise PrismImportError(name, number, None, f"invalid JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise PrismImportError(name, number, None, f"expected a JSON object, found {type(obj).__name__}")
        if _SURROGATE.search(line) or _RAW_SURROGATE.search(line):  # rare: only then walk the record
            where = lone_surrogate(obj)
            if where is not None:
                raise PrismImportError(name, number, where, "text holds a lone surrogate (half of a UTF-16 pair), "
                                                            "which is not valid Unicode and cannot be stored")
        seen_records = True
        yield number, obj
    if not seen_bytes:
        raise PrismImportError(name, 0, None, "the file is empty (0 bytes)")
    if not seen_records:
        raise PrismImportError(name, 0, None, "the file holds no records")


_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")  # an escaped UTF-16 surrogate (\\ud800 .. \\udfff)
_RAW_SURROGATE = re.compile(rb"\xed[\xa0-\xbf]")  # a surrogate encoded as UTF-8 bytes (which UTF-8 forbids)


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number a database can store")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} is too large for a number")
    return value


def lone_surrogate(obj) -> str | None:
    """The path (e.g. ``conversation_history[3].content``) of the first string or key in ``obj`` holding a
    lone surrogate; None when every string is valid Unicode. Iterative: depth is bounded by the reader."""
    stack = [(obj, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return path or "(the record)"
        elif isinstance(value, dict):
            for key, item in value.items():
                shown = str(key).encode("utf-8", "backslashreplace").decode()  # printable even when it is the fault
                child = f"{path}.{shown}" if path else shown
                if lone_surrogate(key) is not None:
                    return child
                stack.append((item, child))
        elif isinstance(value, list):
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(value))
    return None


def batches(records: Iterable, size: int) -> Iterator[list]:
    batch = []
    for item in records:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
