"""A capacity plan computed from measurements: full PRISM and beyond, each figure naming what it scales from.

    python -m bench capacity [--from FILE.json ...]

Reads the tables ``python -m bench gpu`` keeps (``gpu-DEVICE.json``; by default every one in ``docs/measurements``)
and prints, per device measured and per shape (``bench shapes``):

- how long one epoch of full PRISM takes to train on 1 and 8 devices;
- how many people one device serves at once with a first token under 1 s;
- what the user table and a version's folders cost at 10,000 and 1,000,000 people;
- which part becomes the bottleneck first.

A figure measured for the shape is used as it is. A shape not measured on a device is scaled from the measured shape
nearest in size, by parameters (a training pass costs about 6 x parameters x tokens, a generated token about
2 x parameters): the line says so. Several devices use the several-process row's speed-up where it was measured,
and say "linear, not measured" where it was not.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.figures import Figure
from bench.gpu_rows import BUNDLED_PARAMS, BUNDLED_VOCAB, COUNTS
from bench.shapes import available, params_of

MEASUREMENTS = Path(__file__).resolve().parent.parent / "docs" / "measurements"
PRISM = {"people": 1500, "conversations": 8011, "replies": 68371}  # the real dataset's counts
USER_TOKENS = 10  # T_u: the vectors per person (TrainConfig.n_user_tokens)
PEOPLE = (10_000, 1_000_000)
HIDDEN_BUNDLED = 576


def prism_pairs() -> tuple[int, int]:
    """(turns, best-versus-rest pairs) of full PRISM: 4 replies in each opening turn and 2 in each later one, the
    best rated paired with each other reply (an upper bound: ties and the margin filter remove some)."""
    later = (PRISM["replies"] - 4 * PRISM["conversations"] + 1) // 2
    turns = PRISM["conversations"] + later
    return turns, PRISM["replies"] - turns


def shape_facts(name: str) -> dict:
    if name == "bundled":
        return {"params": BUNDLED_PARAMS, "hidden": HIDDEN_BUNDLED}
    return {"params": params_of(name, BUNDLED_VOCAB), "hidden": available()[name]["config"]["hidden_size"]}


def best_training(rows: dict, shape: str) -> dict | None:
    """The fastest measured P-DPO training row of ``shape`` (the setting a team would pick)."""
    found = [r for r in rows.values() if r["id"].startswith(f"{shape}/train/P-DPO/") and "pairs_per_second" in r]
    return max(found, key=lambda r: r["pairs_per_second"], default=None)


def nearest(measured: list[str], shape: str) -> str | None:
    size = shape_facts(shape)["params"]
    return min(measured, key=lambda s: abs(shape_facts(s)["params"] / size - 1), default=None)


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def size(nbytes: float) -> str:
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes / 2**10:.0f} KiB"


def plan(table: dict) -> tuple[str, list[Figure]]:
    device, rows = table["device"], table["rows"]
    shapes = ["bundled", *available()]
    shapes = [s for s in shapes if not s.endswith("-tiny")]
    _, pairs = prism_pairs()
    trained = [s for s in shapes if best_training(rows, s)]
    out = [f"### {device['describe']}", "",
           f"**Training one epoch of full PRISM** ({pairs:,} best-versus-rest pairs from {PRISM['replies']:,} rated "
           "replies; P-DPO at the measured setting that ran fastest, every sequence at its longest, so an upper "
           "bound: PRISM's replies are mostly shorter):", "",
           "| shape | parameters | pairs/s on one device | one epoch, 1 device | one epoch, 8 devices | from |",
           "|---|---|---|---|---|---|"]
    figures = []
    for shape in shapes:
        facts = shape_facts(shape)
        own = best_training(rows, shape)
        if own:
            rate, source = own["pairs_per_second"], f"measured: `{own['id']}`"
        elif trained:
            ref = nearest(trained, shape)
            measured = best_training(rows, ref)
            rate = measured["pairs_per_second"] * shape_facts(ref)["params"] / facts["params"]
            source = f"scaled by parameters from `{measured['id']}` ({measured['pairs_per_second']:.2f} pairs/s)"
        else:
            out.append(f"| {shape} | {facts['params'] / 1e9:.2f} B | not measured | | | no training row measured |")
            continue
        speedups = [r for r in rows.values() if r["id"].startswith(f"{shape}/processes/") and "speed_up" in r
                    and device["device"] == "cuda"]  # a CPU's processes share its cores: no devices are added
        if speedups:
            biggest = max(speedups, key=lambda r: int(r["id"].rsplit("/", 1)[1]))
            n = int(biggest["id"].rsplit("/", 1)[1])
            per_device = biggest["speed_up"] / n
            eight = f"{duration(pairs / (rate * 8 * per_device))} (efficiency {per_device:.0%} over {n}, measured)"
        else:
            eight = f"{duration(pairs / (rate * 8))} (linear, not measured)"
        out.append(f"| {shape} | {facts['params'] / 1e9:.2f} B | {rate:.3g} | {duration(pairs / rate)} | {eight} | "
                   f"{source} |")
        figures.append(Figure("capacity", f"{device['describe']}: one epoch of full PRISM, {shape}, one device",
                              duration(pairs / rate)))

    out += ["", "**Serving**: the most people one device served at once with a median first token under 1 s "
            f"(of {', '.join(map(str, COUNTS))} measured), and their aggregate tokens/s:", "",
            "| shape | transformers | vLLM | from |", "|---|---|---|---|"]
    for shape in shapes:
        cells = []
        for engine in ("hf", "vllm"):
            ok = [(n, rows.get(f"{shape}/serve/{engine}/{n}", {})) for n in COUNTS]
            ok = [(n, r) for n, r in ok if "first_token_median" in r and r["first_token_median"] < 1.0]
            if ok:
                n, r = ok[-1]
                cells.append(f"{n}{'+' if n == COUNTS[-1] else ''} people, {r['tokens_per_second']:.0f} tokens/s")
            elif any("first_token_median" in rows.get(f"{shape}/serve/{engine}/{n}", {}) for n in COUNTS):
                cells.append("none under 1 s")
            else:
                cells.append("not measured")
        if set(cells) != {"not measured"}:
            out.append(f"| {shape} | {cells[0]} | {cells[1]} | measured: `{shape}/serve/*` |")

    out += ["", f"**Memory and disk by people** (the user table: {USER_TOKENS} vectors a person, fp32, in every "
            "version and in the memory of the process serving it; the merged folder is one per version, whatever the "
            "number of people):", "",
            "| shape | a person's vectors | user table, 10,000 people | user table, 1,000,000 people | merged folder |",
            "|---|---|---|---|---|"]
    for shape in shapes:
        facts = shape_facts(shape)
        person = USER_TOKENS * facts["hidden"] * 4
        merged = rows.get(f"{shape}/merged", {})
        folder = (f"{size(merged['bytes'])} (measured)" if "bytes" in merged
                  else f"{size(facts['params'] * 4)} (fp32 parameters x 4 bytes)")
        out.append(f"| {shape} | {size(person)} | {size(person * PEOPLE[0])} | {size(person * PEOPLE[1])} | {folder} |")
    return "\n".join(out) + "\n", figures


def main(argv=None) -> list[Figure]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from", dest="sources", nargs="*", type=Path,
                    help=f"tables of python -m bench gpu (default: every gpu-*.json in {MEASUREMENTS})")
    args = ap.parse_args(argv)
    sources = args.sources or sorted(MEASUREMENTS.glob("gpu-*.json"))
    if not sources:
        raise SystemExit(f"No measurements: run python -m bench gpu first, and pass its gpu-*.json with --from "
                         f"(or keep it in {MEASUREMENTS}).")
    turns, pairs = prism_pairs()
    print(f"Full PRISM: {PRISM['people']:,} people, {PRISM['conversations']:,} conversations, {turns:,} turns, "
          f"{PRISM['replies']:,} rated replies, at most {pairs:,} best-versus-rest pairs.\n")
    figures = []
    for source in sources:
        text, found = plan(json.loads(Path(source).read_text()))
        print(text)
        figures += found
    return figures


if __name__ == "__main__":
    main()
