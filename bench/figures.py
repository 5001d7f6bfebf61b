"""What a benchmark reports: figures, each with the target it is held to, printed as one table.

A benchmark's ``main(argv)`` returns its figures; ``python -m bench`` prints them
after the benchmark's own output and, for ``quick``, gathers them from every
benchmark into the table that docs/results.md shows.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

FIGURES_OUT = "BENCH_FIGURES_OUT"  # where a benchmark run by ``quick`` leaves its figures (JSON)


@dataclass
class Figure:
    benchmark: str
    what: str
    value: str  # already formatted, with its unit
    target: str = ""  # e.g. ">= 0.90x"; empty when the figure is context, not a goal
    met: bool | None = None  # None when there is no target


def default_model() -> str:
    """The bundled SmolLM2 as a transformers folder under $DATA_DIR (converted once, about 30 s)."""
    from trainer.core import provision

    data_dir = Path(os.environ.get("DATA_DIR", "data"))
    return str(provision.convert_bundled(data_dir, log=lambda *_: None))


def prepared(args) -> tuple[str, Path]:
    """(the model, the output folder, made) of a benchmark's ``--model`` and ``--out``; ``--precision auto`` becomes
    the CPU's choice."""
    from trainer.core.hardware import precision_for

    args.precision = precision_for(args.precision)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return args.model or default_model(), out


def table(figures: list[Figure]) -> str:
    rows = [("benchmark", "figure", "value", "target", "met")]
    for f in figures:
        rows.append((f.benchmark, f.what, f.value, f.target, "" if f.met is None else ("yes" if f.met else "NO")))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def write(figures: list[Figure]) -> None:
    """Leave the figures where ``quick`` asked for them (nothing when run alone)."""
    out = os.environ.get(FIGURES_OUT)
    if out:
        Path(out).write_text(json.dumps([asdict(f) for f in figures]))


def read(path: Path) -> list[Figure]:
    return [Figure(**row) for row in json.loads(path.read_text())] if path.exists() else []
