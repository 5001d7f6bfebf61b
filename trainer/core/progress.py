"""Progress of long work, reported as (phase, done, total) and shown as bars with an ETA.

The training loop, the tokeniser and the evaluation call a ``Phase`` callback;
what it does with the numbers is the caller's business: the command line draws a
bar per phase (``ConsoleProgress``), the dashboard's worker stores the phase on
the run.
"""

from __future__ import annotations

import sys
import time
from typing import Callable

from tqdm import tqdm

Phase = Callable[[str, int, "int | None"], None]  # (phase name, units done, units in all or None if unknown)


class ConsoleProgress:
    """One bar per phase on stderr; a new phase closes the previous bar.

    Phases of unknown size (loading a model) show their elapsed time when they end.
    ``postfix`` puts the latest metrics (loss, accuracy) beside the training bar.
    """

    def __init__(self, stream=None, *, disable: bool = False):
        self.stream = stream or sys.stderr
        self.disable = disable
        self.bar: tqdm | None = None
        self.name: str | None = None
        self.started = 0.0

    def __call__(self, phase: str, done: int, total: int | None) -> None:
        if phase != self.name:
            self.close()
            self.name, self.started = phase, time.perf_counter()
            if total is None:  # no bar to fill: say it started, and how long it took when it ends
                if not self.disable:
                    print(f"{phase} ...", file=self.stream, flush=True)
            else:
                self.bar = tqdm(total=total, desc=phase, file=self.stream, disable=self.disable,
                                dynamic_ncols=True, mininterval=0.5, leave=True, unit="")
        if self.bar is not None and done > self.bar.n:
            self.bar.update(done - self.bar.n)
        if total is not None and done >= total:
            self.close()

    def postfix(self, **values) -> None:
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.3g}" if isinstance(v, float) else v for k, v in values.items()},
                                 refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.name is not None and not self.disable:
            print(f"{self.name}: done in {time.perf_counter() - self.started:.1f} s", file=self.stream, flush=True)
        self.bar, self.name = None, None
