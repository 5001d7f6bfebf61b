"""Run a command that the kernel stops (SIGTERM) when the process that started it dies.

    python trainer/worker/die_with_parent.py PARENT_PID COMMAND [ARGS...]

``PR_SET_PDEATHSIG`` is set here, in a process of its own, and then the command replaces it (``exec``), so the
signal stays armed for the command. Setting it from the worker with ``preexec_fn`` would run Python between
``fork`` and ``exec`` in a threaded worker, where a lock held by another thread at the fork deadlocks the
child. Run as a file (not ``-m``): it imports nothing of the project. If the parent died before the signal
was armed, the command is not started at all.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> int:
    if len(argv) < 2 or not argv[0].isdigit():
        print("usage: die_with_parent.py PARENT_PID COMMAND [ARGS...]", file=sys.stderr)
        return 2
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:  # not Linux: the heartbeat reaper still fails the run
        pass
    if os.getppid() != int(argv[0]):
        print("die_with_parent: the process that started this one has already ended", file=sys.stderr)
        return 1
    os.execvp(argv[1], argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
