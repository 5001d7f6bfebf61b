"""A capacity plan computed from measurements: full PRISM and beyond, each figure naming what it scales from.

    python -m bench capacity [--from FILE.json ...] [--write-doc [PAGE]]

Reads the tables ``python -m bench gpu`` keeps (``gpu-DEVICE.json``; by default every one in ``docs/measurements``)
and prints, per device measured and per shape (``bench shapes``):

- how long one epoch of full PRISM takes to train on 1 and 8 devices;
- how many people one device serves at once with a first token under 1 s;
- what the user table and a version's folders cost at 10,000 and 1,000,000 people.

Every line names where its figure comes from. A figure measured for the shape is used as it is. A shape not
measured on a device says why, and is scaled from the measured shape nearest in size, by parameters (a training
pass costs about 6 x parameters x tokens, a generated token about 2 x parameters): the line names the row. Sizes
(parameters, a person's vectors, the merged folder) are arithmetic on the shape's config, exact for sizes, with the
measured size beside them where a row measured one. Several devices use the several-process row's speed-up where it
was measured, and say "linear, not measured" where it was not.

``--write-doc`` puts what it prints into the capacity page (``docs/capacity.md``) between its two markers, so
the page's tables are this command's output and a test holds them to it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.figures import Figure
from bench.gpu_rows import BUNDLED_VOCAB, COUNTS, model_shape
from bench.shapes import available
from trainer.core.config import TrainConfig

DOCS = Path(__file__).resolve().parent.parent / "docs"
MEASUREMENTS = DOCS / "measurements"
PAGE = DOCS / "capacity.md"
BEGIN = "<!-- python -m bench capacity --write-doc: from here to the end marker -->"
END = "<!-- python -m bench capacity --write-doc: end -->"
PRISM = {"people": 1500, "conversations": 8011, "replies": 68371}  # the real dataset's counts
USER_TOKENS = TrainConfig().n_user_tokens  # T_u: the vectors per person
PEOPLE = (10_000, 1_000_000)
FIRST_TOKEN = 1.0  # seconds: a first token a chatting person does not notice waiting for


def prism_pairs() -> tuple[int, int]:
    """(turns, best-versus-rest pairs) of full PRISM: 4 replies in each opening turn and 2 in each later one, the
    best rated paired with each other reply (an upper bound: ties and the margin filter remove some)."""
    later = (PRISM["replies"] - 4 * PRISM["conversations"] + 1) // 2
    turns = PRISM["conversations"] + later
    return turns, PRISM["replies"] - turns


def config_source(shape: str) -> str:
    """Where a shape's sizes are read from."""
    if shape == "bundled":
        return "the bundled SmolLM2-135M's config (`bench.gpu_rows.BUNDLED_SHAPE`)"
    return f"`bench/architectures/{shape}.json` with the bundled tokenizer's {BUNDLED_VOCAB:,} tokens"


def params(shape: str) -> int:
    return model_shape(shape).params


def best_training(rows: dict, shape: str) -> dict | None:
    """The fastest measured P-DPO training row of ``shape`` (the setting a team would pick)."""
    found = [r for r in rows.values() if r["id"].startswith(f"{shape}/train/P-DPO/") and "pairs_per_second" in r]
    return max(found, key=lambda r: r["pairs_per_second"], default=None)


def served(rows: dict, shape: str, engine: str) -> list[tuple[int, dict]]:
    """The measured serving rows of a shape on an engine, by people served at once."""
    found = [(n, rows.get(f"{shape}/serve/{engine}/{n}", {})) for n in COUNTS]
    return [(n, r) for n, r in found if "first_token_median" in r]


def nearest(measured: list[str], shape: str) -> str | None:
    size = params(shape)
    return min(measured, key=lambda s: abs(params(s) / size - 1), default=None)


def why_not(rows: dict, prefix: str, shape: str) -> str:
    """Why the rows under ``prefix`` hold no figure: the first reason a row gives, or that none was run."""
    reasons = [r["not_measured"] for r in rows.values() if r["id"].startswith(prefix) and r.get("not_measured")]
    reason = reasons[0] if reasons else f"bench gpu did not run {shape} on this device"
    return reason if reason.startswith("not measured") else f"not measured: {reason}"


def weights_note(shape: str, device: dict) -> str:
    """A scaled line's caveat when the shape's fp32 weights would not fit the device (bench gpu's own test)."""
    weights = params(shape) * 4
    if weights * 1.1 <= device["memory"]:
        return ""
    return (f"; compute alone: its fp32 weights ({size(weights)}) do not fit this device's "
            f"{size(device['memory'])}")


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


def shapes_planned() -> list[str]:
    return ["bundled", *(s for s in available() if not s.endswith("-tiny"))]


def training(device: dict, rows: dict, figures: list[Figure]) -> list[str]:
    _, pairs = prism_pairs()
    shapes = shapes_planned()
    trained = [s for s in shapes if best_training(rows, s)]
    out = [f"**Training one epoch of full PRISM** ({pairs:,} best-versus-rest pairs from {PRISM['replies']:,} rated "
           "replies; P-DPO at the measured setting that ran fastest, every sequence at its longest, so an upper "
           "bound: PRISM's replies are mostly shorter; parameters are arithmetic on the shape's config):", "",
           "| shape | parameters | pairs/s on one device | one epoch, 1 device | one epoch, 8 devices | from |",
           "|---|---|---|---|---|---|"]
    for shape in shapes:
        count = params(shape)
        own = best_training(rows, shape)
        if own:
            rate, source = own["pairs_per_second"], f"measured: `{own['id']}`"
        elif trained:
            ref = best_training(rows, nearest(trained, shape))
            rate = ref["pairs_per_second"] * params(ref["shape"]) / count
            source = (f"{why_not(rows, f'{shape}/train/', shape)}; scaled by parameters "
                      f"(x{params(ref['shape']) / count:.3g}) from `{ref['id']}` ({ref['pairs_per_second']:.2f} "
                      f"pairs/s){weights_note(shape, device)}")
        else:
            out.append(f"| {shape} | {count / 1e9:.2f} B | {why_not(rows, f'{shape}/train/', shape)} | | | "
                       "no training row of any shape measured on this device |")
            continue
        speedups = [r for r in rows.values() if r["id"].startswith(f"{shape}/processes/") and "speed_up" in r
                    and device["device"] == "cuda"]  # a CPU's processes share its cores: no devices are added
        if speedups:
            biggest = max(speedups, key=lambda r: int(r["id"].rsplit("/", 1)[1]))
            n = int(biggest["id"].rsplit("/", 1)[1])
            per_device = biggest["speed_up"] / n
            eight = (f"{duration(pairs / (rate * 8 * per_device))} (efficiency {per_device:.0%} over {n}, measured: "
                     f"`{biggest['id']}`)")
        else:
            eight = f"{duration(pairs / (rate * 8))} (linear, not measured)"
        out.append(f"| {shape} | {count / 1e9:.2f} B | {rate:.3g} | {duration(pairs / rate)} | {eight} | {source} |")
        figures.append(Figure("capacity", f"{device['describe']}: one epoch of full PRISM, {shape}, one device",
                              duration(pairs / rate)))
    return out


def serving_cell(found: list[tuple[int, dict]], scale: float = 1.0) -> str:
    """The most people served with a median first token under FIRST_TOKEN and their tokens/s; first-token times
    multiplied and tokens/s divided by ``scale`` (a shape scaled from another)."""
    ok = [(n, r) for n, r in found if r["first_token_median"] * scale < FIRST_TOKEN]
    if not ok:
        n, r = found[0]
        who = "one person's" if n == 1 else f"{n} people's"
        return f"none under {FIRST_TOKEN:g} s ({who} first token: {r['first_token_median'] * scale:.2f} s)"
    n, r = ok[-1]
    who = "1 person" if n == 1 else f"{n}{'+' if n == COUNTS[-1] else ''} people"
    return f"{who}, {r['tokens_per_second'] / scale:.0f} tokens/s"


def serving(device: dict, rows: dict) -> list[str]:
    out = ["", f"**Serving**: the most people one device served at once with a median first token under "
           f"{FIRST_TOKEN:g} s (of {', '.join(map(str, COUNTS))} measured), and their aggregate tokens/s; a shape "
           "not measured is scaled by parameters from the nearest measured one (first-token times multiplied, "
           "tokens/s divided), marked *scaled*:", "", "| shape | transformers | vLLM | from |", "|---|---|---|---|"]
    for shape in shapes_planned():
        cells, own_rows, measured, scaled = [], [], [], {}
        for engine in ("hf", "vllm"):
            prefix = f"{shape}/serve/{engine}/"
            own = served(rows, shape, engine)
            others = [s for s in shapes_planned() if served(rows, s, engine)]
            if own:
                cells.append(serving_cell(own))
                own_rows.append(f"`{prefix}*`")
            elif others:
                ref = nearest(others, shape)
                scale = params(shape) / params(ref)
                cells.append(f"*scaled*: {serving_cell(served(rows, ref, engine), scale)}")
                scaled.setdefault((why_not(rows, prefix, shape), ref, scale), []).append(engine)
            else:
                cells.append(why_not(rows, prefix, shape))
                measured.append(f"{'vLLM' if engine == 'vllm' else 'transformers'}: no serving row of any shape "
                                "measured on this device")
        if own_rows:
            measured.insert(0, f"measured: {', '.join(own_rows)}")
        for (why, ref, scale), engines in scaled.items():  # one line when both engines share the reason
            measured.append(f"{why}; scaled by parameters (x{scale:.3g}) from "
                            f"{' and '.join(f'`{ref}/serve/{e}/*`' for e in engines)}{weights_note(shape, device)}")
        out.append(f"| {shape} | {cells[0]} | {cells[1]} | {'; '.join(measured)} |")
    return out


def storage(rows: dict) -> list[str]:
    out = ["", f"**Memory and disk by people**: the user table holds {USER_TOKENS} vectors a person "
           "(`TrainConfig.n_user_tokens`), fp32, in every version and in the memory of the process serving it; "
           "the merged folder is one per version, whatever the number of people. *Computed* is arithmetic on the "
           f"shape's config, exact for sizes: a person's vectors are {USER_TOKENS} x hidden size x 4 bytes, the "
           "merged folder its parameters x 4 bytes (fp32 weights; the tokenizer's few MiB aside). *Measured* is "
           "the merged folder `bench gpu` wrote.", "",
           "| shape | hidden size | a person's vectors | user table, 10,000 people | user table, 1,000,000 people | "
           "merged folder, computed | merged folder, measured | sizes from |", "|---|---|---|---|---|---|---|---|"]
    for shape in shapes_planned():
        config = model_shape(shape)
        person = USER_TOKENS * config.hidden * 4
        merged = rows.get(f"{shape}/merged", {})
        measured = (f"{size(merged['bytes'])} (`{shape}/merged`)" if "bytes" in merged
                    else why_not(rows, f"{shape}/merged", shape))
        out.append(f"| {shape} | {config.hidden:,} | {size(person)} | {size(person * PEOPLE[0])} | "
                   f"{size(person * PEOPLE[1])} | {size(config.params * 4)} | {measured} | {config_source(shape)} |")
    return out


def plan(table: dict) -> tuple[str, list[Figure]]:
    """The plan for one device's table: its text and the figures it reports."""
    device, rows = table["device"], table["rows"]
    for row_id, row in rows.items():
        row.setdefault("shape", row_id.split("/")[0])
    figures: list[Figure] = []
    out = [f"### {device['describe']}", "", *training(device, rows, figures), *serving(device, rows),
           *storage(rows)]
    return "\n".join(out) + "\n", figures


def report(sources: list[Path]) -> tuple[str, list[Figure]]:
    """What the command prints for ``sources``: full PRISM's counts, then each device's plan."""
    turns, pairs = prism_pairs()
    parts = [f"Full PRISM: {PRISM['people']:,} people, {PRISM['conversations']:,} conversations, {turns:,} turns, "
             f"{PRISM['replies']:,} rated replies, at most {pairs:,} best-versus-rest pairs.\n"]
    figures = []
    for source in sources:
        text, found = plan(json.loads(Path(source).read_text()))
        parts.append(text)
        figures += found
    return "\n".join(parts), figures


def write_doc(page: Path, text: str) -> None:
    """Put ``text`` between the page's markers (the rest of the page is prose, kept as it is)."""
    content = page.read_text()
    if content.count(BEGIN) != 1 or content.count(END) != 1:
        raise SystemExit(f"{page} needs one line {BEGIN!r} and one {END!r} around the plan's tables.")
    head, rest = content.split(BEGIN)
    _, tail = rest.split(END)
    page.write_text(f"{head}{BEGIN}\n\n{text.strip()}\n\n{END}{tail}")


def main(argv=None) -> list[Figure]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from", dest="sources", nargs="*", type=Path,
                    help=f"tables of python -m bench gpu (default: every gpu-*.json in {MEASUREMENTS})")
    ap.add_argument("--write-doc", nargs="?", const=PAGE, type=Path, metavar="PAGE",
                    help=f"also put the plan into PAGE between its markers (default {PAGE})")
    args = ap.parse_args(argv)
    sources = args.sources or sorted(MEASUREMENTS.glob("gpu-*.json"))
    if not sources:
        raise SystemExit(f"No measurements: run python -m bench gpu first, and pass its gpu-*.json with --from "
                         f"(or keep it in {MEASUREMENTS}).")
    text, figures = report(sources)
    print(text)
    if args.write_doc:
        write_doc(args.write_doc, text)
        print(f"written into {args.write_doc}")
    return figures


if __name__ == "__main__":
    main()
