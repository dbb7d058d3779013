"""Managing an organisation's webhook endpoints, and replaying events to them.

One domain function per action (the CLI, the API and the admin page call
these): :func:`create_endpoint` checks the URL as delivery will
(:func:`providers.webhook.check_endpoint`: https in production, no local or
private address unless ``WEBHOOK_ALLOW_PRIVATE``) and returns the secret,
which is never shown again; :func:`delete_endpoint` removes the endpoint with
its outbox rows and attempts; :func:`enable_endpoint` resumes a disabled one;
:func:`replay` queues events again (one, or a time range) with their original
``webhook-id``, so a receiver that already has them can drop them.
"""

from __future__ import annotations

from datetime import datetime

from flask import current_app
from sqlalchemy import insert, select

from providers.webhook import UnsafeUrl, check_endpoint, new_secret

from .errors import NotFound, ValidationFailed
from .extensions import db
from .models import Organisation, WebhookEndpoint, WebhookEvent, WebhookOutbox, is_db_id
from .schemas import EVENT_TYPES
from .timeutil import utcnow

MAX_ENDPOINTS = 20


def url_error(url) -> str | None:
    """Why an endpoint URL is refused (French), or None: what delivery will check too."""
    config = current_app.config
    if not isinstance(url, str):
        return "Texte attendu."
    try:
        check_endpoint(
            url,
            require_https=bool(config["PRODUCTION"]),
            allow_private=bool(config["WEBHOOK_ALLOW_PRIVATE"]),
        )
    except UnsafeUrl as exc:
        return str(exc)
    return None


def create_endpoint(
    organisation: Organisation, url: str, events: list[str] | None = None
) -> tuple[WebhookEndpoint, str]:
    """Create and commit an endpoint; return it and its secret (shown once)."""
    fields: dict[str, str] = {}
    unknown = [e for e in (events or []) if e not in EVENT_TYPES]
    if unknown:
        fields["events"] = "Événements inconnus : " + ", ".join(unknown) + "."
    problem = url_error(url)
    if problem:
        fields["url"] = problem
    count = db.session.scalar(
        select(db.func.count(WebhookEndpoint.id)).where(
            WebhookEndpoint.organisation_id == organisation.id
        )
    )
    if count >= MAX_ENDPOINTS:
        fields.setdefault("url", f"{MAX_ENDPOINTS} points de réception au plus.")
    if fields:
        raise ValidationFailed("Point de réception refusé.", fields=fields)
    secret = new_secret()
    chosen = [e for e in EVENT_TYPES if e in set(events)] if events else list(EVENT_TYPES)
    endpoint = WebhookEndpoint(
        organisation_id=organisation.id,
        url=url.strip(),
        events=",".join(chosen),
        secret=secret,
        enabled=True,
    )
    db.session.add(endpoint)
    db.session.commit()
    return endpoint, secret


def endpoints_of(organisation: Organisation) -> list[WebhookEndpoint]:
    return list(
        db.session.scalars(
            select(WebhookEndpoint)
            .where(WebhookEndpoint.organisation_id == organisation.id)
            .order_by(WebhookEndpoint.id)
        )
    )


def get_endpoint(organisation: Organisation, endpoint_id) -> WebhookEndpoint:
    endpoint = db.session.get(WebhookEndpoint, endpoint_id) if is_db_id(endpoint_id) else None
    if endpoint is None or endpoint.organisation_id != organisation.id:
        raise NotFound("Point de réception introuvable.")
    return endpoint


def delete_endpoint(organisation: Organisation, endpoint_id) -> None:
    """Delete an endpoint, its pending deliveries and its attempts (commits)."""
    endpoint = get_endpoint(organisation, endpoint_id)
    db.session.delete(endpoint)
    db.session.commit()


def enable_endpoint(organisation: Organisation, endpoint_id) -> WebhookEndpoint:
    """Re-enable a disabled endpoint: its waiting deliveries go out again (commits)."""
    endpoint = get_endpoint(organisation, endpoint_id)
    endpoint.enabled = True
    endpoint.failing_since = None
    endpoint.disabled_at = None
    endpoint.disabled_reason = None
    db.session.commit()
    return endpoint


def replay(
    *,
    webhook_id: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    organisation_id: int | None = None,
    endpoint_id: int | None = None,
    now: datetime | None = None,
) -> int:
    """Queue events again to the endpoints now subscribed to them; returns the deliveries queued.

    One event (``webhook_id``) or those that happened in [``start``, ``end``),
    optionally of one organisation and to one endpoint. Commits.
    """
    now = now or utcnow()
    query = select(
        WebhookEvent.id, WebhookEvent.organisation_id, WebhookEvent.type, WebhookEvent.rdv_id
    )
    if webhook_id is not None:
        query = query.where(WebhookEvent.webhook_id == webhook_id)
    else:
        if start is None or end is None:
            raise ValueError("a webhook id or a time range is needed")
        query = query.where(WebhookEvent.occurred_at >= start, WebhookEvent.occurred_at < end)
    if organisation_id is not None:
        query = query.where(WebhookEvent.organisation_id == organisation_id)
    events = db.session.execute(query.order_by(WebhookEvent.id)).all()
    endpoint_query = select(WebhookEndpoint).where(WebhookEndpoint.enabled.is_(True))
    if endpoint_id is not None:
        endpoint_query = endpoint_query.where(WebhookEndpoint.id == endpoint_id)
    endpoints = db.session.scalars(endpoint_query).all()
    rows = [
        {
            "event_id": event.id,
            "endpoint_id": endpoint.id,
            "rdv_id": event.rdv_id,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for event in events
        for endpoint in endpoints
        if endpoint.organisation_id == event.organisation_id and event.type in endpoint.event_types
    ]
    if rows:
        db.session.execute(insert(WebhookOutbox.__table__), rows)
    db.session.commit()
    return len(rows)
