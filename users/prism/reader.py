"""Reading a PRISM JSONL file safely: one line held at a time, each line bounded."""

from __future__ import annotations

import json
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
            obj = json.loads(line)
        except ValueError as exc:
            raise PrismImportError(name, number, None, f"invalid JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise PrismImportError(name, number, None, f"expected a JSON object, found {type(obj).__name__}")
        seen_records = True
        yield number, obj
    if not seen_bytes:
        raise PrismImportError(name, 0, None, "the file is empty (0 bytes)")
    if not seen_records:
        raise PrismImportError(name, 0, None, "the file holds no records")


def batches(records: Iterable, size: int) -> Iterator[list]:
    batch = []
    for item in records:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
