"""Every agent page and API route refuses anonymous and cross-organisation access.

Routes are enumerated from ``app.url_map``, so a route added later is covered
without touching this file; public routes are an explicit allow-list.
"""

from __future__ import annotations

import re
from datetime import datetime
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import select

from gateway.booking import book
from gateway.extensions import db
from gateway.models import Lieu, Motif, Rdv, WebhookEndpoint

from ..factories import add_opening, make_agent, make_org, make_usager

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 6, 1, 10, 0, tzinfo=PARIS)

# Routes anyone may call: operators' health check, login, public statistics,
# usagers' cancellation links and waiting-list offers, providers' webhooks
# (signature-checked), assets, the API's OpenAPI document and its page, /metrics
# (bearer METRICS_TOKEN, 404 unset), the usagers' online booking pages
# (tests/gateway/test_online.py).
PUBLIC = re.compile(
    r"^(/health|/login|/stats|/stats\.json|/c/<[^>]+>|/o/<[^>]+>|/webhooks/.*|/static/.*"
    r"|/api/v1/openapi\.json|/api/docs|/metrics|/prendre-rdv(/.*)?)$"
)
PUBLIC_DOCS = {"/api/v1/openapi.json", "/api/docs"}
METHODS = ("GET", "POST", "PATCH", "PUT", "DELETE")


def routes(app, *, public: bool = False):
    """(rule, method) of every route, the public ones or the protected ones."""
    found = []
    for rule in app.url_map.iter_rules():
        if bool(PUBLIC.match(rule.rule)) != public:
            continue
        for method in sorted(rule.methods & set(METHODS)):
            found.append((rule, method))
    assert found
    return found


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def victim(app, world):
    """A second organisation whose objects nobody of ``world`` may see."""
    org = make_org(name="Autre département")
    lieu = Lieu(organisation_id=org.id, name="Lieu secret", address="1 rue Secrète")
    other_lieu = Lieu(organisation_id=org.id, name="Autre lieu secret", address="2 rue Secrète")
    db.session.add_all([lieu, other_lieu])
    db.session.flush()
    agent = make_agent(org, "eve@example.net", first="Eve", last="Secrète")
    motif = Motif(organisation_id=org.id, name="Motif secret", duration_minutes=30)
    db.session.add(motif)
    db.session.flush()
    add_opening(org, agent, lieu, [motif])
    usager = make_usager(org, first="Zoé", last="Confidentielle", phone="+33698765432")
    endpoint = WebhookEndpoint(
        organisation_id=org.id,
        url="https://hooks.example.net/lapin",
        events="rdv.created",
        secret="whsec_c2VjcmV0",
        enabled=False,
    )
    db.session.add(endpoint)
    db.session.commit()
    other = SimpleNamespace(
        org=org,
        lieu=lieu,
        other_lieu=other_lieu,
        agent=agent,
        motif=motif,
        usager=usager,
        endpoint=endpoint,
    )
    rdv = book(
        other.org,
        motif_id=other.motif.id,
        lieu_id=other.lieu.id,
        agent_id=other.agent.id,
        usager_ids=[other.usager.id],
        starts_at=datetime(2026, 6, 5, 10, 0, tzinfo=PARIS),
    )
    other.rdv = rdv
    return other


def _ids_of(victim) -> dict[str, int]:
    """Values for URL parameters, by name: the victim organisation's objects."""
    return {
        "rdv_id": victim.rdv.id,
        "usager_id": victim.usager.id,
        "motif_id": victim.motif.id,
        "lieu_id": victim.lieu.id,
        "agent_id": victim.agent.id,
        "message_id": victim.rdv.messages[0].id,
        "org_id": victim.org.id,
        "organisation_id": victim.org.id,
        "endpoint_id": victim.endpoint.id,
        "slug": "victim",
        "public_id": "victim",
    }


def build_url(rule, values: dict[str, int]) -> str:
    args = {}
    for name in rule.arguments:
        if name not in values:
            pytest.fail(f"route {rule.rule}: add its parameter {name!r} to _ids_of so it is tested")
        args[name] = values[name]
    return rule.rule if not args else _fill(rule.rule, args)


def _fill(pattern: str, args: dict) -> str:
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", lambda m: str(args[m.group(1)]), pattern)


def _call(client, method, url, **kwargs):
    return client.open(url, method=method, **kwargs)


def test_the_allow_list_holds_only_public_surfaces(app):
    public = {rule.rule for rule, _ in routes(app, public=True)}
    assert "/health" in public and "/login" in public
    assert not any(r.startswith(("/api/", "/rdvs", "/agenda")) for r in public - PUBLIC_DOCS)


def test_anonymous_requests_are_refused_everywhere(app, client, victim):
    values = _ids_of(victim)
    before = _snapshot()
    for rule, method in routes(app):
        url = build_url(rule, values)
        response = _call(client, method, url, json={} if rule.rule.startswith("/api/") else None)
        if rule.rule.startswith("/api/"):
            assert response.status_code == 401, (method, url, response.status_code)
            assert response.get_json()["error"]["code"] == "unauthorized"
        else:
            assert response.status_code == 302, (method, url, response.status_code)
            assert response.headers["Location"].startswith("/login"), (method, url)
    assert _snapshot() == before


def test_api_token_of_another_organisation_sees_nothing(app, client, world, victim):
    headers = {"Authorization": f"Bearer {world.token}"}
    values = _ids_of(victim)
    before = _snapshot()
    for rule, method in routes(app):
        if not rule.rule.startswith("/api/") or not rule.arguments:
            continue
        url = build_url(rule, values)
        response = _call(
            client,
            method,
            url,
            json={"starts_at": "2026-06-06T10:00:00+02:00", "status": "seen"},
            headers=headers,
        )
        assert response.status_code == 404, (method, url, response.status_code)
    # Lists and bodies naming the victim's objects do not reach them either.
    for path, hidden in (
        ("/api/v1/motifs", {victim.motif.id}),
        ("/api/v1/lieux", {victim.lieu.id, victim.other_lieu.id}),
        ("/api/v1/agents", {victim.agent.id}),
    ):
        ids = {item["id"] for item in client.get(path, headers=headers).get_json()["items"]}
        assert ids and not ids & hidden, path
    slots = client.get(f"/api/v1/slots?motif_id={victim.motif.id}", headers=headers)
    assert slots.status_code == 404
    response = client.post(
        "/api/v1/rdvs",
        headers=headers,
        json={
            "motif_id": victim.motif.id,
            "lieu_id": victim.lieu.id,
            "agent_id": victim.agent.id,
            "usager_id": victim.usager.id,
            "starts_at": "2026-06-05T11:00:00+02:00",
        },
    )
    assert response.status_code in (404, 422)
    assert _snapshot() == before


def test_agent_of_another_organisation_gets_404(app, login, world, victim):
    world.agent.is_admin = True  # admin pages too: an admin of another organisation
    db.session.commit()
    values = _ids_of(victim)
    before = _snapshot()
    for rule, method in routes(app):
        if rule.rule.startswith("/api/") or not rule.arguments:
            continue
        url = build_url(rule, values)
        response = _call(
            login, method, url, data={"starts_at": "2026-06-06T10:00", "status": "seen"}
        )
        assert response.status_code == 404, (method, url, response.status_code)
    # The booking form does not take another organisation's motif, lieu or agent either.
    assert login.get(f"/rdvs/new?motif_id={victim.motif.id}").status_code == 404
    response = login.post(
        "/rdvs/new",
        data={
            "motif_id": world.motif.id,
            "lieu_id": world.lieu.id,
            "agent_id": victim.agent.id,
            "starts_at": "2026-06-05T11:00:00+02:00",
            "usager_id": victim.usager.id,
        },
    )
    assert response.status_code in (404, 422)
    agenda = login.get(f"/agenda?date=2026-06-05&agent={victim.agent.id}").get_data(as_text=True)
    assert victim.usager.last_name not in agenda
    assert f"/rdvs/{victim.rdv.id}" not in agenda
    assert _snapshot() == before


def _snapshot():
    db.session.rollback()
    return [
        (r.id, r.status, r.starts_at, r.lieu_id, r.cancelled_at)
        for r in db.session.scalars(select(Rdv).order_by(Rdv.id))
    ] + [
        (e.id, e.url, e.enabled)
        for e in db.session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.id))
    ]
