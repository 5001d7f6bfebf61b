"""A free TCP port on loopback, for a server or a process group about to start (the one place this is done)."""

import socket


def free_port() -> int:
    """A TCP port on 127.0.0.1 free now (another process may take it before it is bound: start soon)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
