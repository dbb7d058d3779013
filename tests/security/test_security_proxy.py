"""``PROXY_FIX_X_FOR``: behind a router, each client has its own rate-limit budget (issue 11,
defect 8).

Before the fix every client behind the router shared the router's address, so
one guesser locked every usager out of their cancellation link. With 0 (the
default) ``X-Forwarded-For`` is ignored: a client cannot pick its address.
"""

from __future__ import annotations

import pytest

from gateway import config
from gateway.extensions import limiter

from ..webhooks.conftest import limited  # noqa: F401

pytestmark = pytest.mark.usefixtures("limited")  # before `app`: it changes app_config

ROUTER = "10.0.0.1"


def _guess(client, forwarded_for: str, n: int) -> int:
    """One guessed cancellation code from a client behind the router; the status code."""
    return client.get(
        f"/c/Guess{n:07d}",
        headers={"X-Forwarded-For": forwarded_for},
        environ_base={"REMOTE_ADDR": ROUTER},
    ).status_code


def test_with_one_trusted_proxy_two_clients_have_separate_budgets(app_config, _migrated):
    from gateway import create_app

    app_config["PROXY_FIX_X_FOR"] = 1
    app = create_app(app_config)
    with app.app_context():
        limiter.reset()
        client = app.test_client()
        assert [_guess(client, "203.0.113.5", n) for n in range(4)] == [404, 404, 404, 429]
        assert _guess(client, "198.51.100.9", 5) == 404  # another client: its own budget
        # A client prepending an address of its choice is still known by what the router saw.
        assert _guess(client, "192.0.2.200, 203.0.113.5", 6) == 429
        limiter.reset()


def test_without_trusted_proxies_x_forwarded_for_is_ignored(app, client):
    assert app.config["PROXY_FIX_X_FOR"] == 0
    limiter.reset()
    assert [_guess(client, "203.0.113.5", n) for n in range(3)] == [404, 404, 404]
    # A new X-Forwarded-For does not make a new client: the budget is the router's.
    assert _guess(client, "198.51.100.9", 3) == 429
    limiter.reset()


@pytest.mark.parametrize("value,expected", [(None, 0), ("", 0), ("0", 0), ("2", 2)])
def test_proxy_fix_x_for_values(tmp_path, value, expected):
    env = {} if value is None else {"PROXY_FIX_X_FOR": value}
    assert config.from_environment(str(tmp_path), env)["PROXY_FIX_X_FOR"] == expected


@pytest.mark.parametrize("value", ["-1", "one", "1.5"])
def test_a_bad_proxy_fix_x_for_stops_the_start(tmp_path, value):
    with pytest.raises(RuntimeError, match="PROXY_FIX_X_FOR"):
        config.from_environment(str(tmp_path), {"PROXY_FIX_X_FOR": value})
