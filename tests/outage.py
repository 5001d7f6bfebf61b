"""A database that stops answering, for fault tests and the fault benchmark: a TCP relay between workers and
PostgreSQL that can be cut. Cut, it drops every connection it carries and closes new ones as soon as they
open, as a restarting server does; restored, it relays again."""

from __future__ import annotations

import socket
import threading
from urllib.parse import urlsplit, urlunsplit


class Outage:
    def __init__(self, upstream_url: str):
        parts = urlsplit(upstream_url)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self._parts = parts
        self._down = threading.Event()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.cuts = 0  # connections dropped or refused while cut

    @property
    def url(self) -> str:
        """The upstream database's URL, through the relay."""
        userinfo = self._parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo + '@' if userinfo else ''}127.0.0.1:{self.port}"
        return urlunsplit(self._parts._replace(netloc=netloc))

    def __enter__(self) -> "Outage":
        threading.Thread(target=self._accept, name="outage-accept", daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._listener.close()
        self._drop_all()

    def cut(self) -> None:
        self._down.set()
        self._drop_all()

    def restore(self) -> None:
        self._down.clear()

    def _drop_all(self) -> None:
        with self._lock:
            dropped, self._open = list(self._open), set()
        self.cuts += len(dropped) // 2
        for sock in dropped:
            _close(sock)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            if self._down.is_set():
                self.cuts += 1
                _close(client)
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._open |= {client, server}
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                _close(sock)
            with self._lock:
                self._open -= {source, sink}


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
