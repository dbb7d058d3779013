"""Security headers on every response; CSRF required on every form POST."""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import select

from gateway.booking import book
from gateway.extensions import db
from gateway.models import Rdv

from .test_security_access import build_url, routes

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 6, 1, 10, 0, tzinfo=PARIS)
HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def rdv(world):
    return book(
        world.org,
        motif_id=world.motif.id,
        lieu_id=world.lieu.id,
        agent_id=world.agent.id,
        usager_ids=[world.usager.id],
        starts_at=datetime(2026, 6, 5, 10, 0, tzinfo=PARIS),
    )


def _values(world, rdv):
    return {
        "rdv_id": rdv.id,
        "usager_id": world.usager.id,
        "motif_id": world.motif.id,
        "lieu_id": world.lieu.id,
        "agent_id": world.agent.id,
        "message_id": rdv.messages[0].id,
        "code": rdv.participations[0].cancel_code,
        "filename": "missing.css",
        "org_id": world.org.id,
        "organisation_id": world.org.id,
        "endpoint_id": _disabled_endpoint(world).id,
        "slug": "inconnu",
        "public_id": "inconnu",
    }


def _disabled_endpoint(world):
    from gateway.models import WebhookEndpoint

    endpoint = db.session.scalar(select(WebhookEndpoint))
    if endpoint is None:
        endpoint = WebhookEndpoint(
            organisation_id=world.org.id,
            url="https://hooks.example.net/lapin",
            events="rdv.created",
            secret="whsec_c2VjcmV0",
            enabled=False,
        )
        db.session.add(endpoint)
        db.session.commit()
    return endpoint


def assert_security_headers(response, what):
    for name, value in HEADERS.items():
        assert response.headers.get(name) == value, (what, name, response.headers.get(name))
    csp = response.headers.get("Content-Security-Policy", "")
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, (what, csp)


def test_every_get_route_carries_the_security_headers(app, client, login, world, rdv):
    values = _values(world, rdv)
    anonymous = app.test_client()
    checked = 0
    for rule, method in routes(app) + routes(app, public=True):
        if method != "GET":
            continue
        url = build_url(rule, values)
        for who, c in (("anonymous", anonymous), ("agent", login)):
            response = c.get(
                url, headers={"Authorization": f"Bearer {world.token}"} if "/api/" in url else {}
            )
            assert response.status_code < 500, (who, url)
            assert_security_headers(response, (who, url))
            checked += 1
    assert checked >= 10
    for url in ("/no-such-page", "/api/v1/no-such-route"):
        assert_security_headers(client.get(url), url)


@pytest.fixture
def csrf_app(app_config, _migrated):
    from gateway import create_app
    from tests.conftest import _Client, _empty_tables

    app_config["WTF_CSRF_ENABLED"] = True
    app = create_app(app_config)
    app.test_client_class = _Client
    with app.app_context():
        _empty_tables()
        yield app
        db.session.remove()
        db.engine.dispose()


def _token(html: str) -> str:
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html)
    assert match, "no csrf_token field in the form"
    return match.group(1)


def test_every_form_post_requires_a_csrf_token(csrf_app):
    from tests.factories import make_world

    world = make_world()
    world.agent.is_admin = True  # the admins' forms are checked too
    db.session.commit()
    rdv = book(
        world.org,
        motif_id=world.motif.id,
        lieu_id=world.lieu.id,
        agent_id=world.agent.id,
        usager_ids=[world.usager.id],
        starts_at=datetime(2026, 6, 5, 10, 0, tzinfo=PARIS),
    )
    client = csrf_app.test_client()
    # Login without the token is refused; with it, it works.
    data = {"email": world.agent.email, "password": world.password}
    assert client.post("/login", data=data).status_code == 400
    data["csrf_token"] = _token(client.get("/login").get_data(as_text=True))
    assert client.post("/login", data=data).status_code == 302

    values = _values(world, rdv)
    checked = 0
    for rule, method in routes(csrf_app) + routes(csrf_app, public=True):
        if method == "GET" or rule.rule.startswith(("/api/", "/webhooks/")):
            continue  # bearer-token API and signed webhooks do not use cookies
        url = build_url(rule, values)
        response = client.open(
            url, method=method, data={"status": "seen", "starts_at": "2026-06-06T10:00"}
        )
        assert response.status_code == 400, (method, url, response.status_code)
        checked += 1
    assert checked >= 4
    db.session.expire_all()
    assert (
        db.session.get(Rdv, rdv.id).status == "unknown"
        and db.session.get(Rdv, rdv.id).cancelled_at is None
    )

    # The same form with the page's token goes through.
    token = _token(client.get(f"/rdvs/{rdv.id}").get_data(as_text=True))
    response = client.post(f"/rdvs/{rdv.id}/cancel", data={"csrf_token": token})
    assert response.status_code == 302
    db.session.expire_all()
    assert db.session.get(Rdv, rdv.id).cancelled_via == "agent"
