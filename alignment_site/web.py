"""The web server as ``./run.sh`` starts it: uvicorn on this site, with the proxies it trusts named.

    python -m alignment_site.web            (PORT and FORWARDED_ALLOW_IPS from the environment)

It listens on 127.0.0.1 only: a proxy on this machine (or a tunnel) brings the outside in. A client's address (which the login limits count per address) comes from ``X-Forwarded-For`` only when the
connection comes from a proxy in ``FORWARDED_ALLOW_IPS`` (loopback only, by default); of the header's
addresses uvicorn takes the last one that is not a trusted proxy, which is the one the nearest proxy saw,
whatever a client wrote into the header before it. ``*`` (trust every peer) would let each client claim any
address, so it is refused.
"""

from __future__ import annotations

import os
import sys

DEFAULT_TRUSTED = "127.0.0.1,::1"


def trusted_proxies(value: str | None) -> str:
    """``FORWARDED_ALLOW_IPS`` checked: addresses or networks, comma-separated ("" = none: the header is
    ignored); ``*`` is refused with the reason."""
    value = DEFAULT_TRUSTED if value is None else value.strip()
    if "*" in value:
        raise SystemExit("FORWARDED_ALLOW_IPS=* would trust X-Forwarded-For from every client, so anyone could "
                         "claim any address and slip past the per-address login limit: name the proxy's "
                         "address instead (for example 10.0.0.2), or leave it unset when the proxy runs on this "
                         "machine.")
    return value


def options(environ=os.environ) -> dict:
    return {"host": "127.0.0.1", "port": int(environ.get("PORT", "8000")),
            "proxy_headers": True, "forwarded_allow_ips": trusted_proxies(environ.get("FORWARDED_ALLOW_IPS"))}


def main() -> None:
    import uvicorn

    uvicorn.run("alignment_site.asgi:application", **options())


if __name__ == "__main__":
    sys.exit(main())
