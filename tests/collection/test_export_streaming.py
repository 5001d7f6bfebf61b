"""Exports under ASGI are streamed, not built whole in memory; the report's CSV cannot run as a spreadsheet
formula."""

import csv
import io
import json
import warnings

from asgiref.sync import async_to_sync
from django.test import AsyncRequestFactory, RequestFactory

from trainer.personalization.report import report_csv
from users.dataset import views
from users.prism.writer import prism_export_lines


def test_an_export_under_asgi_is_an_async_stream_of_batches(rated_conversation, staff, monkeypatch):
    monkeypatch.setattr("alignment_site.streaming.BATCH_LINES", 2)
    request = AsyncRequestFactory().get("/data/utterances.jsonl")
    request.user = staff
    response = views.data_export(request, "utterances")
    # Django reads a synchronous iterator into one list before sending it under ASGI (and warns): this one is
    # read a batch at a time.
    assert response.is_async

    async def read():
        parts = []
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the "must consume synchronous iterators" warning fails the test
            async for part in response:
                parts.append(part)
        return parts

    parts = async_to_sync(read)()
    expected = list(prism_export_lines(file="utterances", users=None))
    assert len(expected) == 8 and len(parts) == 4  # 8 lines, 2 per batch
    assert b"".join(parts).decode() == "".join(expected)
    assert all(json.loads(line) for line in b"".join(parts).decode().splitlines())


def test_an_export_under_wsgi_streams_the_generator_itself(rated_conversation, staff):
    request = RequestFactory().get("/data/utterances.jsonl")
    request.user = staff
    response = views.data_export(request, "utterances")
    assert not response.is_async and len(b"".join(response.streaming_content).decode().splitlines()) == 8


def test_report_csv_cells_that_a_spreadsheet_would_run_are_written_as_text():
    win = {"rate": 0.25, "low": -0.05, "high": 0.6, "n": 4, "wins": 1, "ties": 0, "losses": 3}
    report = {"groups": [{"name": '=HYPERLINK("http://x.example","click")', "vs": {"baseline": win}}],
              "people": [{"person": "@mallory", "group": "+1 555", "vs": {"baseline": win}},
                         {"person": "\tbob", "group": "-2+3", "vs": {"baseline": win}},
                         {"person": "carol", "group": "plain text", "vs": {"baseline": win}}],
              "seeds": []}
    rows = list(csv.DictReader(io.StringIO(report_csv(report))))
    assert [r["group"] for r in rows] == ["'=HYPERLINK(\"http://x.example\",\"click\")", "'+1 555", "'-2+3",
                                          "plain text"]
    assert [r["name"] for r in rows[1:]] == ["'@mallory", "'\tbob", "carol"]
    assert {r["low"] for r in rows} == {"-0.05"}  # numbers stay numbers, negative ones included
