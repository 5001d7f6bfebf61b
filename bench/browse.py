"""Staff list pages with PRISM's full size: ``python -m bench browse``.

Imports full-size PRISM-format files (1,500 people, 8,011 conversations, 68,371 replies) into a throw-away
database (SQLite unless DATABASE_URL says otherwise), then times each staff list page's server time through
Django's test client: the dataset page, conversations and pairs pages (first, filtered, last). Beside the pairs
page, the obvious alternative on the same work: the same 50 pairs taken from the export's streaming path
(``preference_pairs``), which walks the conversations in Python.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
import time
from itertools import islice
from pathlib import Path

from bench.figures import Figure
from bench.run_page import timed


def main(argv: list[str] | None = None) -> list[Figure]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=1500)
    parser.add_argument("--conversations", type=int, default=8011)
    parser.add_argument("--replies", type=int, default=68371)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="browse-"))
    if not os.environ.get("DATABASE_URL"):
        os.environ["DATABASE_URL"] = f"sqlite:///{tmp / 'bench.sqlite3'}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "alignment_site.settings")
    os.environ.update(DEBUG="0", SECURE_COOKIES="0", ALLOWED_HOSTS="testserver",
                      SECRET_KEY=os.environ.get("SECRET_KEY", "bench-only-" + "k3y-" * 12))
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    from users.collection.pairs import preference_pairs
    from users.models import Reply
    from users.prism.importer import prism_import
    from users.synthetic.prism_files import prism_files_make

    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    paths = prism_files_make(folder=tmp, people=args.people, conversations=args.conversations, replies=args.replies)
    prism_import(files={name: open(path, "rb") for name, path in paths.items()})
    print(f"imported {args.people:,} people, {Reply.objects.count():,} replies in "
          f"{time.perf_counter() - started:.0f} s ({django.db.connection.vendor})", flush=True)
    staff = get_user_model().objects.create_user("bench-staff", password="x", is_staff=True)
    client = Client()
    client.force_login(staff)
    someone = get_user_model().objects.exclude(pk=staff.pk).order_by("pk").values_list("username", flat=True)[7]

    def last_page(url: str) -> str:
        html = client.get(url).content.decode()
        pages = int(re.search(r"page 1 of (\d+)", html).group(1))
        return f"{url}{'&' if '?' in url else '?'}page={pages}"

    pages = [("dataset page", "/staff/dataset/"),
             ("conversations, first page", "/staff/dataset/conversations/"),
             ("conversations of one person", f"/staff/dataset/conversations/?person={someone}"),
             ("conversations, values guided, last page",
              last_page("/staff/dataset/conversations/?kind=values+guided")),
             ("pairs, first page", "/staff/dataset/pairs/"),
             ("pairs with a margin of 20 or more", "/staff/dataset/pairs/?min_margin=20"),
             ("pairs, last page", last_page("/staff/dataset/pairs/"))]
    figures = []
    for label, url in pages:
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        ms = statistics.median(timed(lambda url=url: client.get(url), args.repeat))
        print(f"  {label:<42} {ms:7.0f} ms  {url}", flush=True)
        figures.append(Figure("browse", f"server time: {label}", f"{ms:.0f} ms", "< 300 ms", ms < 300))
    page_ms = statistics.median(timed(lambda: client.get("/staff/dataset/pairs/?page=40"), args.repeat))
    stream_ms = statistics.median(timed(lambda: list(islice(preference_pairs(), 40 * 50, 41 * 50)), args.repeat))
    print(f"  pairs 1,951-2,000: the page {page_ms:.0f} ms, the export's stream {stream_ms:.0f} ms "
          f"({stream_ms / page_ms:.1f}x)", flush=True)
    figures.append(Figure("browse", "pairs 1,951-2,000: export's stream / the page (SQL paging)",
                          f"{stream_ms / page_ms:.1f}x ({stream_ms:.0f} / {page_ms:.0f} ms)"))
    return figures


if __name__ == "__main__":
    import sys

    from bench.figures import table

    print(table(main(sys.argv[1:])))
