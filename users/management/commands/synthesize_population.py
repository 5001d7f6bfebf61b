import time

from django.core.management.base import BaseCommand, CommandError

from users.synthetic import population as sp
from users.synthetic.personas import POPULATIONS, population_shape
from users.synthetic.rule import DIMENSIONS


class Command(BaseCommand):
    help = ("Create simulated participants with hidden style preferences (opposing groups on one dimension or "
            "two, each person with small tastes of their own on the others when --side-weight is above 0) who "
            "rate candidate replies through the same services as the web pages. Seeded: the same arguments give "
            "the same data.")

    def add_arguments(self, parser):
        parser.add_argument("--people", type=int, default=50)
        parser.add_argument("--population", default="synth", help="name; also the username prefix")
        parser.add_argument("--conversations", type=int, default=3, help="per person")
        parser.add_argument("--turns", type=int, default=2, help="per conversation (4 candidates, then 2 per turn)")
        parser.add_argument("--dimension", type=contested, default="length",
                            help=f"the style dimension the two groups disagree on ({', '.join(sorted(DIMENSIONS))}), "
                                 "several at once joined by + (format+length), or a named population: "
                                 + "; ".join(f"{name} ({shape[0]} with side weight {shape[1]})"
                                             for name, shape in POPULATIONS.items()))
        parser.add_argument("--majority-share", type=float, default=0.7)
        parser.add_argument("--side-weight", type=float, default=None,
                            help="each person's own random weights on the other dimensions, relative to the "
                                 "contested ones' 1 (each between half of it and all of it, random sign); 0: only "
                                 "the contested ones matter (default: the population's own, else 0)")
        parser.add_argument("--noise", type=float, default=3.0, help="std of the rating noise")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--mode", choices=["template", "model"], default="template",
                            help="template: fast text templates; model: the serving model steered by style "
                                 "instructions (slow on CPU)")
        parser.add_argument("--max-new-tokens", type=int, default=160, help="model mode only")
        parser.add_argument("--replace", action="store_true", help="delete this population first if it exists")

    def handle(self, *args, **o):
        writer = sp.template_writer if o["mode"] == "template" else sp.model_writer(o["max_new_tokens"])
        started = time.perf_counter()
        try:
            report = sp.population_synthesize(
                population=o["population"], n_people=o["people"], conversations_per_person=o["conversations"],
                turns_per_conversation=o["turns"], dimension=o["dimension"], majority_share=o["majority_share"],
                side_weight=o["side_weight"], noise=o["noise"], seed=o["seed"], writer=writer,
                replace=o["replace"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"population {o['population']!r}: {report.people} people, {report.conversations} "
                          f"conversations, {report.replies} rated replies in {time.perf_counter() - started:.1f} s")


def contested(value: str) -> str:
    """A dimension, or several joined by "+", each one of DIMENSIONS; or a population named in POPULATIONS."""
    import argparse

    try:
        population_shape(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value
