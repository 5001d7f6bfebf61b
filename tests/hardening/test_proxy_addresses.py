"""The web server as run.sh starts it takes a client's address from X-Forwarded-For only as the trusted
proxy appended it: what a client writes into the header itself claims no new address."""

import re

import pytest
import requests

from alignment_site import web
from tests.services import free_port, http_ready, running, service_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def _try_login(base: str, username: str, forwarded_for: str) -> str:
    session = requests.Session()
    page = session.get(base + "/login/", timeout=30).text
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    return session.post(base + "/login/", data={"csrfmiddlewaretoken": token, "username": username,
                                                  "password": "wrong-guess"},
                        headers={"X-Forwarded-For": forwarded_for, "Referer": base + "/login/"}, timeout=30).text


def test_a_client_cannot_claim_new_addresses_through_a_proxy_that_passes_the_header_on(
        test_redis, tiny_model_path, services_dir):
    test_redis.delete(*test_redis.keys("login-*") or ["none"])
    port = free_port()
    env = service_env(tiny_model_path, services_dir, PORT=str(port), LOGIN_FAILURES_PER_ADDRESS="3",
                      LOGIN_FAILURES_PER_ACCOUNT="100", SECURE_COOKIES="0")
    env.pop("FORWARDED_ALLOW_IPS", None)  # the default: the proxy on this machine
    base = f"http://127.0.0.1:{port}"
    try:
        with running([__import__("sys").executable, "-m", "alignment_site.web"], env, services_dir / "web.log",
                     http_ready(base + "/login/")):
            # A proxy on this machine appends the address it saw (10.0.0.5) to what the client sent.
            for n in range(3):
                assert "Too many failed logins" not in _try_login(base, f"x{n}", f"6.6.6.{n}, 10.0.0.5")
            assert "Too many failed logins" in _try_login(base, "x9", "7.7.7.7, 10.0.0.5")
            assert "Too many failed logins" not in _try_login(base, "x9", "10.0.0.6")  # another real client
    finally:
        test_redis.delete(*test_redis.keys("login-*") or ["none"])


def test_trusting_every_peer_is_refused_with_the_reason():
    assert web.options({})["forwarded_allow_ips"] == "127.0.0.1,::1"
    assert web.options({"FORWARDED_ALLOW_IPS": ""})["forwarded_allow_ips"] == ""
    with pytest.raises(SystemExit, match="name the proxy's address instead"):
        web.options({"FORWARDED_ALLOW_IPS": "*"})
