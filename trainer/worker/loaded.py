"""What a worker process loads once and keeps: base models and trained versions.

``LoadOnce`` is a dictionary that fills itself. ``get(key, load)`` returns what is kept under ``key``, calling
``load()`` the first time. The load runs outside the object's lock, so a thread asking for something already
loaded (another version's reply) never waits behind a load that takes minutes; threads that ask for the same
key while it loads wait for that one load instead of starting their own. With ``keep``, only the newest
``keep`` entries stay, and ``drop`` is called on each one pushed out (a version's batcher is closed, failing
the replies still waiting in it with a message).
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Callable, Generic, Hashable, TypeVar

T = TypeVar("T")


class LoadOnce(Generic[T]):
    def __init__(self, *, keep: int | None = None, drop: Callable[[T], None] | None = None):
        self._lock = threading.Lock()
        self._kept: dict[Hashable, T] = {}  # oldest first
        self._loading: dict[Hashable, Future] = {}
        self._keep = keep
        self._drop = drop

    def get(self, key: Hashable, load: Callable[[], T]) -> T:
        with self._lock:
            if key in self._kept:
                return self._kept[key]
            pending = self._loading.get(key)
            if pending is None:
                pending = self._loading[key] = Future()
                mine = True
            else:
                mine = False
        if not mine:
            return pending.result()  # the first asker's load, or its exception
        try:
            value = load()
        except BaseException as exc:
            with self._lock:
                del self._loading[key]
            pending.set_exception(exc)
            raise
        with self._lock:
            del self._loading[key]
            self._kept[key] = value
            older = [k for k in self._kept if k != key]
            pushed_out = [self._kept.pop(k) for k in older[:max(0, len(self._kept) - self._keep)]] \
                if self._keep is not None else []
        pending.set_result(value)
        for old in pushed_out:
            self._drop_one(old)
        return value

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._kept

    def clear(self) -> None:
        """Forget everything kept (each dropped as if pushed out); loads under way finish and are kept."""
        with self._lock:
            kept, self._kept = list(self._kept.values()), {}
        for old in kept:
            self._drop_one(old)

    def _drop_one(self, value: T) -> None:
        if self._drop is not None:
            self._drop(value)
