"""Delivery receipts: stored raw once, matched to their message, applied forward only.

The webhook applies a receipt before answering, in one transaction
(:func:`apply_receipt`): the raw :class:`~gateway.models.DeliveryEvent` is
stored, the message is found and row-locked, and its status moves forward
only (:func:`providers.status.can_transition`), with its timeline entry.
Duplicated and reordered receipts are harmless: a repeat or a backward move
changes nothing, and each is still kept raw. Either everything of one
receipt is committed or nothing is (the provider then retries: a 503 when
the database is unreachable).

Applying in the request, rather than in a queued job, is deliberate: the
common receipt is one SQL statement on PostgreSQL (:data:`_FAST_APPLY`, in
autocommit) and four elsewhere (lock, event, timeline, status), cheaper than
queueing it, and the provider's retry covers a failure. The rare follow-ups
(SMS-to-email fallback, an opt-out) run in the same transaction.
The simulator's receipts come through :func:`apply_receipt_job`, the same code.

Matching: by our reference first (the message id, carried in Twilio's status
callback URL as ``ref`` and in Vonage's ``client-ref``), so that a receipt
arriving before the worker recorded the provider's id still finds its
message; else by (provider, provider message id).

A receipt only touches a message sent through the provider it comes from
(:func:`_from_its_provider`): one whose recorded provider is that provider,
or one no provider has yet been recorded as accepting (no provider message
id: the receipt beat the worker's write-back, or the worker died), of a
channel that provider carries. A Vonage receipt naming a message Twilio
accepted changes nothing: it is recorded unmatched (for audit) and answered
like an unknown message, on the one-statement path as on the general one.

Long Vonage SMS get one receipt per part. The message is ``delivered`` once
every part has been reported delivered (the part count is the receipt's
``concat-total``, else the segment count Vonage answered at send time);
until then a delivered part leaves it ``sent``. A part that failed ends the
message ``failed``/``undelivered`` at once: the usager did not get the whole
text. Both rules only ever move the status forward.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, bindparam, or_, select, text, update

from gateway import events, metrics
from gateway.extensions import db
from gateway.models import (
    DeliveryEvent,
    Message,
    Usager,
    UTCDateTime,
    is_db_id,
)
from gateway.planning import plan_email_fallback
from gateway.timeutil import utcnow
from providers import registry
from providers import status as S
from providers.base import Receipt
from scheduler.transitions import allowed_sources, transition

log = logging.getLogger(__name__)

JOB = "webhooks.receipts.apply_receipt_job"
# Column sizes: provider message ids, error codes, raw statuses.
ID_LENGTH, CODE_LENGTH, STATUS_LENGTH = 200, 32, 50

_events = DeliveryEvent.__table__


def apply_receipt_job(receipt: dict) -> None:
    """Job: apply one receipt given as ``dataclasses.asdict(Receipt)`` (the simulator's)."""
    apply_receipt(_receipt_from(receipt))


def _receipt_from(data: dict[str, Any]) -> Receipt:
    fields = {k: data.get(k) for k in Receipt.__dataclass_fields__ if k in data}
    fields.setdefault("raw", {})
    return Receipt(**fields)


def _bounded(receipt: Receipt) -> Receipt:
    """``receipt`` with its ids and codes cut to what the columns hold.

    A real receipt's values are far shorter.
    """
    return replace(
        receipt,
        provider_message_id=(receipt.provider_message_id or "")[:ID_LENGTH] or None,
        error_code=(receipt.error_code or "")[:CODE_LENGTH] or None,
        raw_status=(receipt.raw_status or "")[:STATUS_LENGTH],
    )


def our_id(receipt: Receipt) -> int | None:
    """The message id our reference carries, or None.

    Our ids are ASCII digits within the primary key range ("²".isdigit() is true too).
    """
    reference = (receipt.reference or "").strip()
    if (
        reference.isascii()
        and reference.isdigit()
        and len(reference) <= 10
        and is_db_id(int(reference))
    ):
        return int(reference)
    return None


def channels_of(provider: str) -> list[str]:
    """The channels a provider carries (``simulator``: both)."""
    return [
        channel
        for channel, names in (("sms", registry.SMS_PROVIDERS), ("email", registry.EMAIL_PROVIDERS))
        if provider in names
    ]


def _from_its_provider(receipt: Receipt):
    """SQL condition: the message may be touched by this receipt (see the module doc)."""
    return or_(
        Message.provider == receipt.provider, Message.provider_message_id.is_(None)
    ) & Message.channel.in_(channels_of(receipt.provider))


def find_message(receipt: Receipt) -> Message | None:
    """The message a receipt is about: by our reference, else by provider id. Row-locked.

    Two receipts of one message applied at once must not both read the old status.
    Only a message sent through the receipt's provider is found.
    """
    queries = []
    message_id = our_id(receipt)
    if message_id is not None:
        queries.append(select(Message).where(Message.id == message_id, _from_its_provider(receipt)))
    if receipt.provider_message_id:
        queries.append(
            select(Message).where(
                Message.provider == receipt.provider,
                Message.provider_message_id == receipt.provider_message_id,
            )
        )
    for query in queries:
        message = db.session.scalars(query.with_for_update()).first()
        if message is not None:
            return message
    return None


# PostgreSQL, the common receipt (see _fast_path_applies): lock the message, move its
# status forward, add the timeline entry and store the raw event, in ONE statement,
# with the general path's rules (tests/webhooks/test_webhooks_receipts_fast.py compares
# them). The row lock comes first, so concurrent receipts of one message are serialised
# as in the general path; `m.moves` is false when the move is not forward.
_FAST_APPLY = text("""
WITH listening AS (
    SELECT CAST(:reported AS boolean) AND EXISTS (
        SELECT 1 FROM webhook_endpoints w JOIN messages mo ON mo.organisation_id = w.organisation_id
        WHERE mo.id = CAST(:id AS integer) AND w.enabled
          AND (',' || w.events || ',') LIKE '%,message.status_changed,%'
    ) AS yes
), m AS (
    SELECT id, status = ANY(CAST(:sources AS varchar[])) AS moves
    FROM messages WHERE id = CAST(:id AS integer) AND NOT (SELECT yes FROM listening)
      AND (provider = CAST(:provider AS varchar) OR provider_message_id IS NULL)
      AND channel = ANY(CAST(:channels AS varchar[]))
    FOR UPDATE
), updated AS (
    UPDATE messages SET
        status = CASE WHEN m.moves THEN CAST(:status AS varchar) ELSE messages.status END,
        status_changed_at = CASE WHEN m.moves THEN CAST(:now AS timestamptz)
                                 ELSE messages.status_changed_at END,
        sent_at = CASE WHEN m.moves AND CAST(:status AS varchar) IN ('sent', 'delivered')
                       THEN coalesce(messages.sent_at, CAST(:now AS timestamptz))
                       ELSE messages.sent_at END,
        delivered_at = CASE WHEN m.moves AND CAST(:status AS varchar) = 'delivered'
                            THEN CAST(:now AS timestamptz) ELSE messages.delivered_at END,
        error_code = CASE WHEN m.moves THEN coalesce(CAST(:error_code AS varchar), messages.error_code)
                          ELSE messages.error_code END,
        provider = CASE WHEN messages.provider_message_id IS NULL
                        THEN CAST(:provider AS varchar) ELSE messages.provider END,
        provider_message_id = coalesce(messages.provider_message_id, CAST(:pmid AS varchar))
    FROM m
    WHERE messages.id = m.id
      AND (m.moves OR (messages.provider_message_id IS NULL AND CAST(:pmid AS varchar) IS NOT NULL))
    RETURNING messages.id, messages.channel, messages.provider, m.moves
), change AS (
    INSERT INTO message_status_changes (message_id, status, at, detail)
    SELECT id, CAST(:status AS varchar), CAST(:now AS timestamptz), CAST(:detail AS text)
    FROM m WHERE m.moves
), event AS (
    INSERT INTO delivery_events (message_id, provider, provider_message_id, raw_status,
                                 mapped_status, error_code, applied, raw, received_at)
    SELECT m.id, CAST(:provider AS varchar), CAST(:pmid AS varchar), CAST(:raw_status AS varchar),
           CAST(:status AS varchar), CAST(:error_code AS varchar), m.moves,
           CAST(:raw AS json), CAST(:now AS timestamptz) FROM m
)
SELECT (SELECT count(*) FROM m), (SELECT count(*) FROM m WHERE m.moves), (SELECT yes FROM listening),
       (SELECT channel FROM updated WHERE moves), (SELECT provider FROM updated WHERE moves)
""").bindparams(bindparam("raw", type_=JSON), bindparam("now", type_=UTCDateTime()))  # noqa: E501
# Statuses whose receipt has no follow-up (no fallback to plan, no multipart count).
_FAST_STATUSES = frozenset({S.QUEUED, S.SENDING, S.SENT, S.DELIVERED})


def _fast_path_applies(receipt: Receipt) -> bool:
    """Whether a receipt can take the one-statement path (PostgreSQL, by our reference)."""
    return (
        receipt.status in _FAST_STATUSES
        and not receipt.opted_out
        and not (receipt.provider == "vonage" and receipt.status == S.DELIVERED)  # multipart rule
        and our_id(receipt) is not None
        and db.engine.dialect.name == "postgresql"
    )


def _apply_fast(receipt: Receipt, now: datetime) -> bool | None:
    """The one-statement path; None when it does not apply (then: the general path).

    That is when our reference matched no message sent through the receipt's
    provider (the general path then records it unmatched), or when the status is one
    that webhooks report (:data:`gateway.events.REPORTED_STATUSES`) and the
    message's organisation has an endpoint for ``message.status_changed``:
    the event's JSON is built by the general path, in the same transaction
    (the statement then changes nothing). Organisations that do not listen
    keep the one-statement path, for the price of one indexed lookup in it.

    The statement is atomic on its own, so it runs in autocommit: one round
    trip to the database instead of three (BEGIN, statement, COMMIT).
    """
    params = {
        "id": our_id(receipt),
        "status": receipt.status,
        "sources": list(allowed_sources(receipt.status)),
        "now": now,
        "error_code": receipt.error_code,
        "provider": receipt.provider,
        "channels": channels_of(receipt.provider),
        "pmid": receipt.provider_message_id,
        "raw_status": receipt.raw_status or None,
        "raw": dict(receipt.raw),
        "detail": receipt.error_message or f"{receipt.provider}: {receipt.raw_status}",
        "reported": receipt.status in events.REPORTED_STATUSES,
    }
    with db.engine.connect() as conn:
        found, moved, _listening, channel, provider = (
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(_FAST_APPLY, params).one()
        )
    if moved:
        metrics.message_status(receipt.status, channel, provider)
    return bool(moved) if found else None


def apply_receipt(receipt: Receipt, now: datetime | None = None) -> bool:
    """Store, match and apply one receipt, and commit; True when the message's status changed."""
    now = now or utcnow()
    receipt = _bounded(receipt)
    metrics.receipt(receipt.provider, receipt.status)
    if _fast_path_applies(receipt):
        changed = _apply_fast(receipt, now)
        if changed is not None:
            return changed
    message = find_message(receipt)
    event = _new_event(receipt, now)
    if message is None:
        log.info(
            "receipt from %s for unknown message %s (ref %s, or not sent through %s): recorded",
            receipt.provider,
            receipt.provider_message_id,
            receipt.reference,
            receipt.provider,
        )
        db.session.commit()
        return False
    event.message_id = message.id
    if message.provider_message_id is None and receipt.provider_message_id:
        # The worker died before recording the provider's id: keep it for later receipts.
        message.provider = receipt.provider
        message.provider_message_id = receipt.provider_message_id
    changed = False
    target = _target_status(message, receipt)
    if target is not None:
        detail = receipt.error_message or f"{receipt.provider}: {receipt.raw_status}"
        fields = {"error_code": receipt.error_code} if receipt.error_code else {}
        changed = transition(message, target, at=now, detail=detail, **fields)
    event.applied = changed
    if receipt.opted_out and message.recipient:
        opt_out_number(message.recipient)
    if changed and target in (S.UNDELIVERED, S.FAILED):
        plan_email_fallback(message, now)
    db.session.commit()
    return changed


def _new_event(receipt: Receipt, now: datetime) -> DeliveryEvent:
    """The raw delivery event of ``receipt``, not yet matched nor applied (added, not committed)."""
    event = DeliveryEvent(
        provider=receipt.provider,
        provider_message_id=receipt.provider_message_id,
        raw_status=receipt.raw_status or None,
        mapped_status=receipt.status,
        error_code=receipt.error_code,
        applied=False,
        raw=dict(receipt.raw),
        received_at=now,
    )
    db.session.add(event)
    return event


def _target_status(message: Message, receipt: Receipt) -> str | None:
    """The status this receipt moves the message to (multipart rule in the module doc)."""
    status = receipt.status
    if status != S.DELIVERED or receipt.provider != "vonage":
        return status
    parts = receipt.parts or message.segments or 1
    if parts <= 1:
        return status
    earlier = db.session.execute(
        select(_events.c.raw, _events.c.provider_message_id).where(
            _events.c.message_id == message.id, _events.c.mapped_status == S.DELIVERED
        )
    ).all()
    seen = {_part_key(raw, pmid) for raw, pmid in earlier}
    seen.add(_part_key(receipt.raw, receipt.provider_message_id))
    return S.DELIVERED if len(seen) >= parts else S.SENT


def _part_key(raw: dict | None, provider_message_id: str | None) -> str:
    """Which part of a long SMS a delivered receipt is about (each part has its own id)."""
    return str((raw or {}).get("concat-part") or provider_message_id)


def opt_out_number(phone: str) -> int:
    """Flag every usager with this number as opted out of SMS; returns how many changed.

    The whole number, not one usager: opting out is the phone owner's wish,
    and families share a phone.
    """
    ids = db.session.scalars(
        update(Usager)
        .where(
            Usager.phone == phone,
            or_(Usager.sms_opted_out.is_(False), Usager.sms_opted_out.is_(None)),
        )
        .values(sms_opted_out=True)
        .returning(Usager.id)
        .execution_options(synchronize_session="fetch")
    ).all()
    events.usagers_opted_out(ids)
    return len(ids)
