"""Login verifies one password hash whatever the email (issue 11, defect 8).

Before the fix an unknown email skipped scrypt (2 ms) and a known one did not
(100 ms): the answer time told which emails are agents'. The test asserts on
the hasher call, never on time.
"""

from __future__ import annotations

import pytest
from werkzeug.security import check_password_hash

from gateway import auth
from gateway.extensions import db


@pytest.fixture
def hashes(monkeypatch):
    """Every hash the login verifies, in order (the real check still runs)."""
    seen: list[str] = []
    real = check_password_hash

    def spy(pwhash: str, password: str) -> bool:
        seen.append(pwhash)
        return real(pwhash, password)

    monkeypatch.setattr(auth, "check_password_hash", spy, raising=False)
    return seen


def _login(client, email, password):
    return client.post("/login", data={"email": email, "password": password})


def test_an_unknown_email_verifies_a_dummy_hash(client, world, hashes):
    response = _login(client, "nobody@example.org", world.password)
    assert response.status_code == 422
    assert hashes == [auth.dummy_hash()]
    assert hashes[0].startswith("scrypt:")  # the same work as an agent's hash
    assert hashes[0] != world.agent.password_hash


def test_a_known_email_verifies_its_own_hash_once(client, world, hashes):
    assert _login(client, world.agent.email, "wrong password").status_code == 422
    assert hashes == [world.agent.password_hash]
    assert _login(client, world.agent.email.upper(), world.password).status_code == 302
    assert hashes == [world.agent.password_hash] * 2


@pytest.mark.parametrize("case", ["inactive", "no-password"])
def test_inactive_or_passwordless_agents_verify_a_hash_and_are_refused(client, world, hashes, case):
    if case == "inactive":
        world.agent.active = False
    else:
        world.agent.password_hash = ""
    db.session.commit()
    assert _login(client, world.agent.email, world.password).status_code == 422
    assert len(hashes) == 1


def test_the_dummy_hash_never_matches(client, world):
    assert not auth._verify(None, "")
    assert not auth._verify(None, "anything")
