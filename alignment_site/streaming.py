"""Streamed downloads that stay streamed under ASGI.

Django serves a ``StreamingHttpResponse`` over a synchronous iterator under ASGI by first reading the whole
iterator into a list (with a warning): an export of everything would be built in the web process's memory
before its first byte leaves. ``streamed`` hands Django an asynchronous iterator instead, which pulls the
synchronous generator a batch of lines at a time in the thread Django gives database work
(``sync_to_async``, thread-sensitive), so memory holds one batch whatever the export's size.
"""

from __future__ import annotations

import itertools
from typing import AsyncIterator, Iterable, Iterator

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest

BATCH_LINES = 500


def streamed(request, lines: Iterable[str], *, batch: int | None = None) -> Iterable[str] | AsyncIterator[str]:
    """``lines`` as the content of a ``StreamingHttpResponse``: an async iterator of joined batches under ASGI,
    the lines themselves under WSGI (which streams a synchronous iterator as it is). ``batch``: lines per
    part (default ``BATCH_LINES``)."""
    if not isinstance(request, ASGIRequest):
        return lines
    source: Iterator[str] = iter(lines)
    batch = batch or BATCH_LINES

    def next_batch() -> str:
        return "".join(itertools.islice(source, batch))

    async def pulled() -> AsyncIterator[str]:
        try:
            while chunk := await sync_to_async(next_batch, thread_sensitive=True)():
                yield chunk
        finally:
            close = getattr(source, "close", None)  # a generator holding a database cursor lets it go
            if close is not None:
                await sync_to_async(close, thread_sensitive=True)()

    return pulled()
