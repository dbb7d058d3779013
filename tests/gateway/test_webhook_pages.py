"""The admins' webhook page: endpoints, every attempt, re-enabling; admins only."""

from __future__ import annotations

from datetime import timedelta

from gateway.extensions import db
from gateway.models import WebhookDelivery, WebhookEndpoint, WebhookEvent, WebhookOutbox
from gateway.timeutil import utcnow


def _history(world):
    endpoint = WebhookEndpoint(
        organisation_id=world.org.id,
        url="https://hooks.example.org/lapin",
        events="rdv.created",
        secret="whsec_c2VjcmV0",
        enabled=False,
        disabled_at=utcnow(),
        disabled_reason="échecs de livraison depuis plus de 24 heures",
    )
    now = utcnow()
    event = WebhookEvent(
        webhook_id="msg_abc",
        organisation_id=world.org.id,
        type="rdv.created",
        occurred_at=now,
        data={},
    )
    db.session.add_all([endpoint, event])
    db.session.flush()
    outbox = WebhookOutbox(
        event_id=event.id,
        endpoint_id=endpoint.id,
        status="failed",
        attempts=2,
        next_attempt_at=now,
    )
    db.session.add(outbox)
    db.session.flush()
    for attempt, code, error in ((1, 503, None), (2, None, "timeout")):
        db.session.add(
            WebhookDelivery(
                outbox_id=outbox.id,
                event_id=event.id,
                endpoint_id=endpoint.id,
                attempt=attempt,
                status_code=code,
                error=error,
                at=now + timedelta(seconds=attempt),
                duration_ms=12,
            )
        )
    db.session.commit()
    return endpoint


def test_admins_see_every_attempt_and_can_re_enable(login, world):
    world.agent.is_admin = True
    db.session.commit()
    endpoint = _history(world)
    page = login.get("/admin/webhooks")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "https://hooks.example.org/lapin" in html and "msg_abc" in html
    assert "HTTP 503" in html and "pas de réponse : timeout" in html and "Désactivé" in html
    assert "Webhooks" in login.get("/agenda").get_data(as_text=True)
    r = login.post(f"/admin/webhooks/{endpoint.id}/enable")
    assert r.status_code == 302
    db.session.expire_all()
    assert db.session.get(WebhookEndpoint, endpoint.id).enabled


def test_other_agents_get_403(login, world):
    _history(world)
    assert login.get("/admin/webhooks").status_code == 403
    assert "/admin/webhooks" not in login.get("/agenda").get_data(as_text=True)
