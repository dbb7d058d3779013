"""Delivery receipts: stored raw once, matched to their message, applied forward only.

A receipt goes through two steps:

1. :func:`record_receipt` stores it as a :class:`~gateway.models.DeliveryEvent`
   (the webhook does this before answering, so nothing is lost);
2. :func:`apply_receipt_job` (a queued job) finds the message and moves its
   status with :func:`scheduler.transitions.transition`, which refuses
   backward moves and repeats: duplicated and reordered receipts are harmless.

The simulator's receipt sink enqueues the job directly with the receipt alone
(``dataclasses.asdict(providers.base.Receipt)``); the job then records the
event itself. Either way each receipt is stored exactly once.

Matching: by our reference first (the message id, carried in Twilio's status
callback URL as ``ref`` and in Vonage's ``client-ref``), so that a receipt
arriving before the worker recorded the provider's id still finds its
message; else by (provider, provider message id).

Long Vonage SMS get one receipt per part. The message is ``delivered`` once
every part has been reported delivered (the part count is the receipt's
``concat-total``, else the segment count Vonage answered at send time);
until then a delivered part leaves it ``sent``. A part that failed ends the
message ``failed``/``undelivered`` at once: the usager did not get the whole
text. Both rules only ever move the status forward.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, replace
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, update

from gateway.extensions import db
from gateway.models import DeliveryEvent, Message, Usager, is_db_id
from gateway.planning import plan_email_fallback
from gateway.timeutil import utcnow
from providers import status as S
from providers.base import Receipt
from scheduler import queue
from scheduler.transitions import transition

log = logging.getLogger(__name__)

JOB = "webhooks.receipts.apply_receipt_job"
EVENT_KEY = "delivery_event_id"
# Column sizes: provider message ids, error codes, raw statuses.
ID_LENGTH, CODE_LENGTH, STATUS_LENGTH = 200, 32, 50


def _bounded(receipt: Receipt) -> Receipt:
    """``receipt`` with its ids and codes cut to what the columns hold (a real one is far shorter)."""
    return replace(
        receipt,
        provider_message_id=(receipt.provider_message_id or "")[:ID_LENGTH] or None,
        error_code=(receipt.error_code or "")[:CODE_LENGTH] or None,
        raw_status=(receipt.raw_status or "")[:STATUS_LENGTH],
    )


def _new_event(receipt: Receipt) -> DeliveryEvent:
    """A raw, not yet matched nor applied, delivery event for ``receipt`` (added, not committed)."""
    receipt = _bounded(receipt)
    event = DeliveryEvent(
        provider=receipt.provider,
        provider_message_id=receipt.provider_message_id,
        raw_status=receipt.raw_status or None,
        mapped_status=receipt.status,
        error_code=receipt.error_code,
        applied=False,
        raw=dict(receipt.raw),
    )
    db.session.add(event)
    return event


def record_receipt(receipt: Receipt) -> DeliveryEvent:
    """Store a receipt raw (not yet matched nor applied) and commit."""
    event = _new_event(receipt)
    db.session.commit()
    return event


def enqueue_receipt(receipt: Receipt, event: DeliveryEvent) -> None:
    """Queue the application of a recorded receipt; apply it here if the queue is down.

    The event is already committed, so applying inline keeps "stored once"
    and spares the provider a retry that would record it twice.
    """
    payload = asdict(receipt) | {EVENT_KEY: event.id}
    try:
        queue.enqueue(JOB, payload)
    except Exception:  # Redis unreachable: the work is small, do it now
        log.exception("could not queue receipt %s: applying it inline", event.id)
        apply_receipt(payload)


def apply_receipt_job(receipt: dict) -> None:
    """Job: apply one receipt, given as ``asdict(Receipt)`` (plus an optional event id)."""
    apply_receipt(receipt)


def _receipt_from(data: dict[str, Any]) -> Receipt:
    fields = {k: data.get(k) for k in Receipt.__dataclass_fields__ if k in data}
    fields.setdefault("raw", {})
    return _bounded(Receipt(**fields))


def find_message(receipt: Receipt) -> Message | None:
    """The message a receipt is about: by our reference, else by provider id. Row-locked."""
    queries = []
    reference = (receipt.reference or "").strip()
    # Our ids are ASCII digits within the primary key range ("²".isdigit() is true too).
    if reference.isascii() and reference.isdigit() and len(reference) <= 10 and is_db_id(int(reference)):
        queries.append(select(Message).where(Message.id == int(reference)))
    if receipt.provider_message_id:
        queries.append(select(Message).where(
            Message.provider == receipt.provider,
            Message.provider_message_id == receipt.provider_message_id,
        ))
    for query in queries:
        # Two receipts of one message applied at once must not both read the old status.
        message = db.session.scalars(query.with_for_update()).first()
        if message is not None:
            return message
    return None


def apply_receipt(data: dict[str, Any], now: datetime | None = None) -> bool:
    """Record (if not yet) and apply one receipt; True when the message's status changed."""
    now = now or utcnow()
    receipt = _receipt_from(data)
    event = db.session.get(DeliveryEvent, data[EVENT_KEY]) if data.get(EVENT_KEY) else None
    if event is None:
        event = _new_event(receipt)
    message = find_message(receipt)
    if message is None:
        log.info("receipt from %s for unknown message %s (ref %s): recorded",
                 receipt.provider, receipt.provider_message_id, receipt.reference)
        db.session.commit()
        return False
    event.message_id = message.id
    if message.provider_message_id is None and receipt.provider_message_id:
        # The worker died before recording the provider's id: keep it for later receipts.
        message.provider = receipt.provider
        message.provider_message_id = receipt.provider_message_id
    db.session.flush()
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


def _target_status(message: Message, receipt: Receipt) -> str | None:
    """The status this receipt moves the message to (multipart rule in the module doc)."""
    status = receipt.status
    if status != S.DELIVERED or receipt.provider != "vonage":
        return status
    parts = receipt.parts or message.segments or 1
    if parts <= 1:
        return status
    delivered = db.session.scalars(
        select(DeliveryEvent).where(
            DeliveryEvent.message_id == message.id, DeliveryEvent.mapped_status == S.DELIVERED
        )
    ).all()
    seen = {str((e.raw or {}).get("concat-part") or e.provider_message_id) for e in delivered}
    return S.DELIVERED if len(seen) >= parts else S.SENT


def opt_out_number(phone: str) -> int:
    """Flag every usager with this number as opted out of SMS; returns how many changed.

    The whole number, not one usager: opting out is the phone owner's wish,
    and families share a phone.
    """
    result = db.session.execute(
        update(Usager)
        .where(Usager.phone == phone, or_(Usager.sms_opted_out.is_(False), Usager.sms_opted_out.is_(None)))
        .values(sms_opted_out=True)
        .execution_options(synchronize_session="fetch")
    )
    return result.rowcount or 0
