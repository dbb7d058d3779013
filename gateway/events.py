"""The webhook outbox: events written in the transaction of the change they report.

Every place where something an organisation's software cares about happens
calls one function here, before its commit: :func:`rdv_changed` (booking,
move, cancel, outcome), :func:`message_status_changed` and
:func:`messages_status_changed` (:mod:`scheduler.transitions`, the one
authority on message statuses), :func:`usagers_opted_out`,
:func:`inbound_sms_received`. Each adds a :class:`~gateway.models.WebhookEvent`
and one :class:`~gateway.models.WebhookOutbox` row per enabled endpoint of the
organisation subscribed to that type, to the session, and commits nothing.

The guarantee: the event rows commit or roll back with the change itself, so
no change is committed without its event and no event exists for a change
that was rolled back; delivery (:mod:`scheduler.webhook_delivery`) reads the
outbox, never the other way round. The trade-off: an organisation with no
subscribed endpoint pays one small indexed query per change and stores
nothing, so events are kept only for organisations that listen (a new
endpoint cannot replay what happened before the first one existed).

``message.status_changed`` is emitted for the statuses a business tool acts
on: ``sent``, ``delivered``, ``undelivered``, ``failed``, ``cancelled``,
``skipped``. The pipeline's own steps (``scheduled`` -> ``queued`` ->
``sending``, and the retries back to ``scheduled``) are not events: they are
internal, frequent, and would put webhook work on the dispatch path.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import JSON, Integer, bindparam, insert, literal, select, text

from providers import status as S

from .extensions import db
from .models import (
    Message,
    Organisation,
    Usager,
    UTCDateTime,
    WebhookEndpoint,
    WebhookEvent,
    WebhookOutbox,
)
from .schemas import EVENT_TYPES, inbound_sms_json, message_json, rdv_json, usager_json
from .timeutil import utcnow

RDV_CREATED = "rdv.created"
RDV_MOVED = "rdv.moved"
RDV_CANCELLED = "rdv.cancelled"
RDV_STATUS_CHANGED = "rdv.status_changed"
MESSAGE_STATUS_CHANGED = "message.status_changed"
INBOUND_SMS_RECEIVED = "inbound_sms.received"
USAGER_SMS_OPTED_OUT = "usager.sms_opted_out"

# Message statuses reported to webhooks (see the module doc).
REPORTED_STATUSES = frozenset(
    {S.SENT, S.DELIVERED, S.UNDELIVERED, S.FAILED, S.CANCELLED, S.SKIPPED}
)

_endpoints = WebhookEndpoint.__table__
_events = WebhookEvent.__table__
_outbox = WebhookOutbox.__table__


def new_webhook_id() -> str:
    """The ``webhook-id`` of a new event: ``msg_`` and 128 random bits."""
    return "msg_" + secrets.token_hex(16)


def _subscribed(event_type: str):
    """SQL condition: an enabled endpoint whose comma list holds ``event_type``."""
    return _endpoints.c.enabled.is_(True) & literal(",").concat(_endpoints.c.events).concat(
        ","
    ).like(f"%,{event_type},%")


def subscribed_endpoint_ids(organisation_id: int, event_type: str) -> list[int]:
    """The endpoints of an organisation that receive ``event_type`` now."""
    return list(
        db.session.scalars(
            select(_endpoints.c.id)
            .where(_endpoints.c.organisation_id == organisation_id, _subscribed(event_type))
            .order_by(_endpoints.c.id)
        )
    )


def listening_organisations(event_type: str) -> set[int]:
    """Organisations with at least one endpoint receiving ``event_type``."""
    return set(
        db.session.scalars(select(_endpoints.c.organisation_id).where(_subscribed(event_type)))
    )


def _event_row(event_type: str, organisation_id: int, data: dict, rdv_id, at) -> dict:
    return {
        "webhook_id": new_webhook_id(),
        "organisation_id": organisation_id,
        "type": event_type,
        "occurred_at": at,
        "rdv_id": rdv_id,
        "data": data,
    }


# PostgreSQL, one event: the event and its outbox rows in one statement (one round trip
# on the booking path instead of two).
_INSERT_ONE = text("""
WITH e AS (
    INSERT INTO webhook_events (webhook_id, organisation_id, type, occurred_at, rdv_id, data)
    VALUES (:webhook_id, :organisation_id, :type, :occurred_at, :rdv_id, :data)
    RETURNING id
)
INSERT INTO webhook_outbox (event_id, endpoint_id, rdv_id, status, attempts, next_attempt_at,
                            created_at)
SELECT e.id, endpoint_id, CAST(:rdv_id AS integer), 'pending', 0, :occurred_at, :occurred_at
FROM e, unnest(CAST(:endpoints AS integer[])) AS endpoint_id
""").bindparams(
    bindparam("data", type_=JSON),
    bindparam("occurred_at", type_=UTCDateTime()),
    bindparam("rdv_id", type_=Integer()),
)


def _write(rows: list[dict], endpoints_of: dict[int, list[int]], at: datetime) -> int:
    """Insert events and their outbox rows; returns how many events."""
    if not rows:
        return 0
    if len(rows) == 1 and db.engine.dialect.name == "postgresql":
        row = rows[0]
        db.session.execute(_INSERT_ONE, {**row, "endpoints": endpoints_of[row["organisation_id"]]})
        return 1
    ids = dict(
        db.session.execute(
            insert(_events).returning(_events.c.webhook_id, _events.c.id), rows
        ).all()
    )
    outbox = [
        {
            "event_id": ids[row["webhook_id"]],
            "endpoint_id": endpoint_id,
            "rdv_id": row["rdv_id"],
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": at,
            "created_at": at,
        }
        for row in rows
        for endpoint_id in endpoints_of[row["organisation_id"]]
    ]
    if outbox:
        db.session.execute(insert(_outbox), outbox)
    return len(rows)


def emit(
    event_type: str,
    organisation_id: int,
    data,
    *,
    rdv_id: int | None = None,
    at: datetime | None = None,
) -> bool:
    """Record one event for the organisation's subscribed endpoints; False if none listens.

    ``data`` is the JSON, or a function that builds it (called only when
    somebody listens, so an organisation without endpoints pays no JSON).
    """
    assert event_type in EVENT_TYPES, event_type
    endpoints = subscribed_endpoint_ids(organisation_id, event_type)
    if not endpoints:
        return False
    at = at or utcnow()
    payload = data() if callable(data) else data
    _write(
        [_event_row(event_type, organisation_id, payload, rdv_id, at)],
        {organisation_id: endpoints},
        at,
    )
    return True


# --- the hooks, one per place where something happens ---


def rdv_changed(rdv, event_type: str, at: datetime | None = None) -> bool:
    """``rdv.created``, ``rdv.moved``, ``rdv.cancelled`` or ``rdv.status_changed``.

    Call it once the change and its messages are in the session, before the commit.
    """

    def data() -> dict:
        db.session.flush()  # ids of the rdv and of its new messages
        return rdv_json(rdv)

    if rdv.id is None:
        db.session.flush()
    return emit(event_type, rdv.organisation_id, data, rdv_id=rdv.id, at=at)


def message_status_changed(message: Message, at: datetime | None = None) -> bool:
    """``message.status_changed`` for one message (:func:`scheduler.transitions.transition`)."""
    if message.status not in REPORTED_STATUSES:
        return False

    def data() -> dict:
        org = db.session.get(Organisation, message.organisation_id)
        return message_json(message, org.tz)

    return emit(MESSAGE_STATUS_CHANGED, message.organisation_id, data, rdv_id=message.rdv_id, at=at)


def messages_status_changed(rows: Iterable, status: str, at: datetime) -> int:
    """``message.status_changed`` for many messages moved in one statement.

    ``rows`` start with ``(id, organisation_id)`` of the moved messages; only those of
    listening organisations are read again. Returns how many events.
    """
    if status not in REPORTED_STATUSES:
        return 0
    rows = list(rows)
    if not rows:
        return 0
    listening = listening_organisations(MESSAGE_STATUS_CHANGED)
    wanted = [row[0] for row in rows if row[1] in listening]
    if not wanted:
        return 0
    orgs = {
        o.id: o
        for o in db.session.scalars(select(Organisation).where(Organisation.id.in_(listening)))
    }
    endpoints_of = {oid: subscribed_endpoint_ids(oid, MESSAGE_STATUS_CHANGED) for oid in orgs}
    table = Message.__table__
    events = []
    for start in range(0, len(wanted), 1000):
        chunk = wanted[start : start + 1000]
        for row in db.session.execute(
            select(table).where(table.c.id.in_(chunk)).order_by(table.c.id)
        ):
            events.append(
                _event_row(
                    MESSAGE_STATUS_CHANGED,
                    row.organisation_id,
                    message_json(row, orgs[row.organisation_id].tz),
                    row.rdv_id,
                    at,
                )
            )
    return _write(events, endpoints_of, at)


def usagers_opted_out(usager_ids: Iterable[int], at: datetime | None = None) -> int:
    """``usager.sms_opted_out`` for usagers whose flag was just set."""
    ids = list(usager_ids)
    if not ids:
        return 0
    listening = listening_organisations(USAGER_SMS_OPTED_OUT)
    if not listening:
        return 0
    count = 0
    for usager in db.session.scalars(
        select(Usager).where(Usager.id.in_(ids), Usager.organisation_id.in_(listening))
    ):
        count += emit(USAGER_SMS_OPTED_OUT, usager.organisation_id, usager_json(usager), at=at)
    return count


def inbound_sms_received(row, at: datetime | None = None) -> bool:
    """``inbound_sms.received`` once an inbound SMS has been matched and acted on."""
    if row.organisation_id is None:
        return False  # an unknown number: no organisation to tell

    def data() -> dict:
        org = db.session.get(Organisation, row.organisation_id)
        return inbound_sms_json(row, org.tz)

    return emit(INBOUND_SMS_RECEIVED, row.organisation_id, data, rdv_id=row.rdv_id, at=at)
