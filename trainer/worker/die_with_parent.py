"""Run a command that the kernel stops (SIGTERM) when the process that started it dies.

    python trainer/worker/die_with_parent.py PARENT_PID COMMAND [ARGS...]

``PR_SET_PDEATHSIG`` is set here, in a process of its own, and then the command replaces it (``exec``), so the
signal stays armed for the command. Setting it from the worker with ``preexec_fn`` would run Python between
``fork`` and ``exec`` in a threaded worker, where a lock held by another thread at the fork deadlocks the
child. Run as a file (not ``-m``): it imports nothing of the project. If the parent died before the signal
was armed, the command is not started at all.

The command's own children can do the same with ``arm``: the guard leaves the command's pid in
``DIE_WITH_PARENT_PID`` for them (a training launcher's processes end with the launcher however it ends,
even by SIGKILL, which it cannot pass on).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
PARENT_ENV = "DIE_WITH_PARENT_PID"


def arm(parent_pid: int, sig: int = signal.SIGTERM) -> bool:
    """Ask the kernel for ``sig`` when this process's parent ends. False when ``parent_pid`` had already ended
    (this process has another parent now), so the caller should not go on."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, sig)
    except OSError:  # not Linux: the heartbeat reaper still fails the run
        pass
    return os.getppid() == parent_pid


def main(argv: list[str]) -> int:
    if len(argv) < 2 or not argv[0].isdigit():
        print("usage: die_with_parent.py PARENT_PID COMMAND [ARGS...]", file=sys.stderr)
        return 2
    if not arm(int(argv[0])):
        print("die_with_parent: the process that started this one has already ended", file=sys.stderr)
        return 1
    os.environ[PARENT_ENV] = str(os.getpid())  # the command keeps this pid: its children's parent
    os.execvp(argv[1], argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
