"""One process of a run trained by several: what the train worker starts as
``accelerate launch --num_processes N -m trainer.worker.child RUN_ID``.

Every process sets Django up, gathers the same pairs and trains its share of
each batch (``trainer.worker.training._train`` with its rank); process 0 writes
progress, metrics and the entanglement reports to the database exactly as a
one-process run does, then evaluates, saves the model and finishes the run. A
failure in any process ends the group, and the worker that launched it writes
the reason from the launcher's summary (which process failed first, and how):
process 0 does not write its own, because when another process dies it fails
too, on the broken connection, and may get there first.

Each process dies with the launcher (SIGKILL, armed first thing): the launcher passes a SIGTERM on to its
processes, but not when a second SIGTERM interrupts it while it does so (a dying multi-threaded worker can
send one per thread), nor when it is killed outright.
"""

from __future__ import annotations

import logging
import os
import signal
import sys

from trainer.worker.die_with_parent import PARENT_ENV, arm


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].isdigit():
        print("usage: python -m trainer.worker.child RUN_ID (under accelerate launch)", file=sys.stderr)
        return 2
    launcher = os.environ.get(PARENT_ENV)
    if launcher and not arm(int(launcher), signal.SIGKILL):
        print(f"run {argv[0]}: the launcher has already ended", file=sys.stderr)
        return 1
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "alignment_site.settings")
    import django

    django.setup()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s rank " + os.environ.get("RANK", "0")
                        + " %(levelname)s %(message)s")
    from trainer.models import TrainingRun
    from trainer.worker import training
    from trainer.worker.record import Claim, ClaimLost

    run_id, rank = int(argv[0]), int(os.environ.get("RANK", "0"))
    claim = None
    if rank == 0 and os.environ.get("RUN_CLAIM_WORKER"):
        claim = Claim(run_id, os.environ["RUN_CLAIM_WORKER"], int(os.environ["RUN_CLAIM_ATTEMPT"]))
    try:
        status = training._train(TrainingRun.objects.get(pk=run_id), rank=rank, claim=claim)
    except ClaimLost as exc:
        logging.warning("run %s: process %s stopped writing: %s", run_id, rank, exc)
        return 3
    except Exception:
        logging.exception("run %s failed in process %s", run_id, rank)
        return 1
    finally:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
    logging.info("run %s: process %s done (%s)", run_id, rank, status)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
