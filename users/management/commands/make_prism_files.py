from pathlib import Path

from django.core.management.base import BaseCommand

from users.synthetic.personas import POPULATIONS
from users.synthetic.prism_files import PRISM_SIZE, prism_files_make, rated_prism_files_make
from users.synthetic.rule import DIMENSIONS


class Command(BaseCommand):
    help = ("Generate PRISM-format files. By default PRISM's full size with random text and random scores "
            "(1,500 people, 8,011 conversations, 68,371 replies). With --dimension, a small population whose "
            "ratings follow a hidden style preference (two opposing groups), plus hidden_groups.jsonl naming "
            "each person's group.")

    def add_arguments(self, parser):
        parser.add_argument("folder", type=Path)
        for name, default in PRISM_SIZE.items():
            parser.add_argument(f"--{name}", type=int, default=None,
                                help=f"default {default:,} (with --dimension: 10 people)")
        parser.add_argument("--seed", type=int, default=0)
        rated = parser.add_argument_group("rated by simulated people (with --dimension)")
        rated.add_argument("--dimension", choices=sorted(DIMENSIONS) + sorted(POPULATIONS),
                           help="the style the two groups disagree on (format: prose or lists; length: concise or "
                                "detailed; register: plain or expert; tone: matter-of-fact or warm), or a named "
                                "population (two+sides: format and length at once, with side tastes)")
        rated.add_argument("--conversations-per-person", type=int, default=8)
        rated.add_argument("--turns", type=int, default=1, help="per conversation: 4 candidates, then 2 per turn")
        rated.add_argument("--majority-share", type=float, default=0.7)
        rated.add_argument("--side-weight", type=float, default=None,
                           help="each person's own random weights on the other dimensions, relative to the "
                                "contested one's 1; 0: only the contested one matters (default: the population's "
                                "own, else 0)")
        rated.add_argument("--noise", type=float, default=3.0, help="std of the rating noise")

    def handle(self, *args, folder, people, conversations, replies, seed, dimension, **o):
        if dimension:
            paths = rated_prism_files_make(
                folder=folder, people=people or 10, conversations_per_person=o["conversations_per_person"],
                turns=o["turns"], dimension=dimension, majority_share=o["majority_share"],
                side_weight=o["side_weight"], noise=o["noise"], seed=seed)
        else:
            paths = prism_files_make(folder=folder, people=people or PRISM_SIZE["people"],
                                     conversations=conversations or PRISM_SIZE["conversations"],
                                     replies=replies or PRISM_SIZE["replies"], seed=seed)
        for path in paths.values():
            self.stdout.write(f"{path} ({path.stat().st_size / 1e6:.1f} MB)")
