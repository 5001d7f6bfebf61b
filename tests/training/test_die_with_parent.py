"""A run's process group is started through die_with_parent.py (no preexec_fn in the threaded worker) and
dies with the process that started it."""

import os
import signal
import subprocess
import sys
import textwrap
import time

from trainer.worker import die_with_parent
from trainer.worker.group import DIE_WITH_PARENT, dying_with_this_process


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


def test_the_command_is_started_through_the_guard_with_this_process_as_its_parent():
    assert dying_with_this_process(["accelerate", "launch", "x.py"]) == [
        sys.executable, str(DIE_WITH_PARENT), str(os.getpid()), "accelerate", "launch", "x.py"]


def test_the_command_gets_sigterm_when_the_process_that_started_it_is_killed():
    starter = textwrap.dedent(f"""
        import subprocess, sys, os, time
        child = subprocess.Popen([sys.executable, {str(DIE_WITH_PARENT)!r}, str(os.getpid()), "sleep", "120"],
                                 start_new_session=True)
        print(child.pid, flush=True)
        time.sleep(120)
    """)
    parent = subprocess.Popen([sys.executable, "-c", starter], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "sleep" not in open(f"/proc/{child}/cmdline").read():
        time.sleep(0.05)  # until the guard has exec'd the command
    assert _alive(child)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 30
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child)


def test_a_command_whose_parent_already_died_is_not_started(capsys):
    not_my_parent = 1 if os.getppid() != 1 else 2
    assert die_with_parent.main([str(not_my_parent), "touch", "/should-not-exist"]) == 1
    assert "already ended" in capsys.readouterr().err
    assert die_with_parent.main(["x"]) == 2
