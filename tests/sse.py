"""A small Server-Sent Events reader over real HTTP, for tests and benchmarks."""

import html
import time
import urllib.request
from dataclasses import dataclass


@dataclass
class Event:
    name: str
    data: str
    id: str | None
    at: float  # time.perf_counter() when the event was complete

    @property
    def text(self) -> str:
        return html.unescape(self.data)


def events(url: str, *, session_cookie: str, last_event_id: str | None = None, timeout: float = 60):
    """Yield events until the server closes the stream."""
    headers = {"Cookie": f"sessionid={session_cookie}", "Accept": "text/event-stream"}
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        name, data, event_id = "message", [], None
        for raw in response:
            line = raw.decode("utf-8").rstrip("\n")
            if line == "":
                if data:
                    yield Event(name, "\n".join(data), event_id, time.perf_counter())
                name, data, event_id = "message", [], None
            elif line.startswith(":"):
                continue
            else:
                field, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if field == "event":
                    name = value
                elif field == "data":
                    data.append(value)
                elif field == "id":
                    event_id = value
