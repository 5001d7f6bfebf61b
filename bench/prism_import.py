"""The PRISM import at full size: ``python -m bench prism_import``.

Generates PRISM-format files (1,500 people, 8,011 conversations, 68,371 rated
replies by default), imports them into a throw-away database created next to
the configured one (Django's test-database machinery; DATABASE_URL chooses
SQLite or PostgreSQL), imports them a second time (idempotent re-import), and
prints records/s per file and the process's peak resident memory.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

from bench.figures import Figure


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def main(argv: list[str] | None = None) -> list[Figure]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=1500)
    parser.add_argument("--conversations", type=int, default=8011)
    parser.add_argument("--replies", type=int, default=68371)
    parser.add_argument("--no-reimport", action="store_true", help="skip the second (replacing) import")
    args = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "alignment_site.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection

    # With DEBUG on Django keeps every SQL statement it ran (up to 9,000); that
    # is the debug log's memory, not the importer's, so measure as production runs.
    settings.DEBUG = False

    from users.models import Conversation, Profile, Reply, Turn
    from users.prism.importer import prism_import
    from users.synthetic.prism_files import prism_files_make

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        paths = prism_files_make(folder=Path(tmp), people=args.people, conversations=args.conversations,
                                 replies=args.replies)
        size = sum(p.stat().st_size for p in paths.values()) / 1e6
        print(f"generated {size:.0f} MB of PRISM files in {time.perf_counter() - started:.1f} s")
        vendor = connection.vendor
        old_name = connection.settings_dict["NAME"]
        connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
        figures, rows_after = [], []
        try:
            rss_before = _peak_mb()
            rounds = [("import", paths)] + ([] if args.no_reimport else [("re-import", paths)])
            for label, round_paths in rounds:
                handles = {k: open(v, "rb") for k, v in round_paths.items()}
                try:
                    t0 = time.perf_counter()
                    reports = prism_import(files=handles)
                    total = time.perf_counter() - t0
                finally:
                    for h in handles.values():
                        h.close()
                print(f"{label} into {vendor}:")
                for r in reports:
                    print(f"  {Path(r.file).name:<20} {r.records:>7,} records in {r.seconds:6.1f} s"
                          f" = {r.records / r.seconds:>8,.0f} records/s")
                records = sum(r.records for r in reports)
                print(f"  {'total':<20} {records:>7,} records in {total:6.1f} s = {records / total:>8,.0f} records/s")
                rows = {m.__name__: m.objects.count() for m in (Profile, Conversation, Turn, Reply)}
                rows_after.append(rows)
                print("rows in the database: " + ", ".join(f"{k} {v:,}" for k, v in rows.items()))
                figures.append(Figure("prism_import", f"{label} of {records:,} records into {vendor}",
                                      f"{total:.1f} s ({records / total:,.0f} records/s)", "< 120 s", total < 120))
            peak = _peak_mb()
            print(f"peak memory (max RSS): {peak:.0f} MB (was {rss_before:.0f} MB before importing)")
            if len(rows_after) == 2:
                figures.append(Figure("prism_import", "rows after re-import (nothing duplicated)",
                                      f"{sum(rows_after[1].values()):,}", f"= {sum(rows_after[0].values()):,}",
                                      rows_after[0] == rows_after[1]))
            figures.append(Figure("prism_import", "peak memory while importing (max RSS)",
                                  f"{peak:.0f} MB ({peak - rss_before:+.0f} MB)", "< 250 MB", peak < 250))
        finally:
            connection.creation.destroy_test_db(old_name, verbosity=0)
    return figures
