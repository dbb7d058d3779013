"""Retention: personal data in messages, inbound SMS and receipts is anonymised after a while.

After ``RETENTION_DAYS`` (default 183, about six months) the gateway keeps
what statistics and audits need — statuses, times, providers, segments, who
cancelled through what — and drops what identifies or describes a person:

* messages (sent or ended, never one that may still go out): body, subject and
  HTML body replaced by :data:`ANONYMISED`, recipient masked, phone numbers and
  emails masked in the last error and in the status-change details;
* inbound SMS: body replaced by the marker, raw payload dropped, sender masked;
* delivery events (receipts): raw payload dropped;
* outbound webhook events (their JSON holds names, numbers, message texts'
  recipients): deleted with their deliveries and attempts, once none is
  still waiting to go.

The job is idempotent (an anonymised row is recognised and left alone) and
batched: rows are walked by primary key, ``batch_size`` at a time, each batch
committed on its own, so a table of millions of rows is never loaded at once
and a crash loses at most one batch of work.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import delete, func, select, update

from gateway.extensions import db
from gateway.log_privacy import mask_personal_data
from gateway.models import (
    DeliveryEvent,
    InboundSms,
    Message,
    MessageStatusChange,
    WebhookEvent,
    WebhookOutbox,
)
from gateway.phones import mask_phone
from gateway.timeutil import parse_iso, require_aware, utcnow
from providers import status as message_status

log = logging.getLogger(__name__)

ANONYMISED = "[anonymisé]"
ANONYMISED_RAW = {"anonymised": True}
DEFAULT_RETENTION_DAYS = 183
BATCH_SIZE = 1000
# Messages that may still be sent keep their text whatever their age.
_MAY_STILL_SEND = (message_status.SCHEDULED, message_status.QUEUED, message_status.SENDING)


@dataclass
class RetentionReport:
    """How many rows were (or, in a dry run, would be) anonymised."""

    messages: int = 0
    inbound_sms: int = 0
    delivery_events: int = 0
    webhook_events: int = 0

    @property
    def total(self) -> int:
        return self.messages + self.inbound_sms + self.delivery_events + self.webhook_events


def mask_recipient(recipient: str | None) -> str:
    """``+33612345678`` → ``**********78``; ``lea@example.org`` → ``l***@example.org``."""
    if not recipient:
        return recipient or ""
    if "@" in recipient:
        local, _, domain = recipient.rpartition("@")
        return f"{local[:1]}***@{domain}"
    return mask_phone(recipient)


def _batches(query, id_column, batch_size: int):
    """Yield lists of rows of ``query`` by ascending id (keyset pagination, no OFFSET)."""
    last_id = 0
    while True:
        rows = db.session.execute(
            query.where(id_column > last_id).order_by(id_column).limit(batch_size)
        ).all()
        if not rows:
            return
        yield rows
        last_id = rows[-1].id


def _anonymise_messages(cutoff: datetime, batch_size: int, dry_run: bool) -> int:
    query = select(Message.id, Message.recipient, Message.last_error).where(
        func.coalesce(Message.sent_at, Message.send_at) < cutoff,
        Message.status.not_in(_MAY_STILL_SEND),
        Message.body != ANONYMISED,
    )
    done = 0
    for rows in _batches(query, Message.id, batch_size):
        done += len(rows)
        if dry_run:
            continue
        db.session.execute(
            update(Message),
            [
                {
                    "id": row.id,
                    "body": ANONYMISED,
                    "subject": None,
                    "html_body": None,
                    "recipient": mask_recipient(row.recipient),
                    "last_error": mask_personal_data(row.last_error) if row.last_error else None,
                }
                for row in rows
            ],
        )
        ids = [row.id for row in rows]
        changes = db.session.execute(
            select(MessageStatusChange.id, MessageStatusChange.detail).where(
                MessageStatusChange.message_id.in_(ids), MessageStatusChange.detail.is_not(None)
            )
        ).all()
        if changes:
            db.session.execute(
                update(MessageStatusChange),
                [{"id": c.id, "detail": mask_personal_data(c.detail)} for c in changes],
            )
        db.session.commit()
    return done


def _anonymise_inbound(cutoff: datetime, batch_size: int, dry_run: bool) -> int:
    query = select(InboundSms.id, InboundSms.from_number).where(
        InboundSms.received_at < cutoff, InboundSms.body != ANONYMISED
    )
    done = 0
    for rows in _batches(query, InboundSms.id, batch_size):
        done += len(rows)
        if dry_run:
            continue
        db.session.execute(
            update(InboundSms),
            [
                {
                    "id": row.id,
                    "body": ANONYMISED,
                    "raw": ANONYMISED_RAW,
                    "from_number": mask_recipient(row.from_number),
                }
                for row in rows
            ],
        )
        db.session.commit()
    return done


def _anonymise_events(cutoff: datetime, batch_size: int, dry_run: bool) -> int:
    # A JSON column cannot be compared portably (PostgreSQL's json has no "="):
    # the batch is read and rows already anonymised are skipped in Python.
    query = select(DeliveryEvent.id, DeliveryEvent.raw).where(DeliveryEvent.received_at < cutoff)
    done = 0
    for rows in _batches(query, DeliveryEvent.id, batch_size):
        todo = [row.id for row in rows if row.raw != ANONYMISED_RAW]
        done += len(todo)
        if dry_run or not todo:
            continue
        db.session.execute(update(DeliveryEvent), [{"id": i, "raw": ANONYMISED_RAW} for i in todo])
        db.session.commit()
    return done


def _delete_webhook_events(cutoff: datetime, batch_size: int, dry_run: bool) -> int:
    waiting = (
        select(WebhookOutbox.id)
        .where(
            WebhookOutbox.event_id == WebhookEvent.id,
            WebhookOutbox.status.in_(("pending", "sending")),
        )
        .exists()
    )
    query = select(WebhookEvent.id).where(WebhookEvent.occurred_at < cutoff, ~waiting)
    done = 0
    for rows in _batches(query, WebhookEvent.id, batch_size):
        ids = [row.id for row in rows]
        done += len(ids)
        if dry_run or not ids:
            continue
        # Their outbox rows and attempts go with them (ON DELETE CASCADE).
        db.session.execute(delete(WebhookEvent).where(WebhookEvent.id.in_(ids)))
        db.session.commit()
    return done


def anonymise_old(
    now: datetime | None = None,
    older_than: timedelta | None = None,
    *,
    batch_size: int = BATCH_SIZE,
    dry_run: bool = False,
) -> RetentionReport:
    """Anonymise every message, inbound SMS and receipt older than ``older_than`` at ``now``.

    ``older_than`` defaults to the app's ``RETENTION_DAYS``. Returns the counts;
    with ``dry_run`` nothing is written and the counts say what would be.
    """
    now = require_aware(now or utcnow())
    if older_than is None:
        older_than = timedelta(
            days=current_app.config.get("RETENTION_DAYS", DEFAULT_RETENTION_DAYS)
        )
    if older_than <= timedelta(0):
        raise ValueError("the retention period must be positive")
    cutoff = now - older_than
    report = RetentionReport(
        messages=_anonymise_messages(cutoff, batch_size, dry_run),
        inbound_sms=_anonymise_inbound(cutoff, batch_size, dry_run),
        delivery_events=_anonymise_events(cutoff, batch_size, dry_run),
        webhook_events=_delete_webhook_events(cutoff, batch_size, dry_run),
    )
    db.session.rollback()  # a dry run leaves no transaction open
    log.info(
        "retention%s: cutoff %s, %s",
        " (dry run)" if dry_run else "",
        cutoff.isoformat(),
        asdict(report),
    )
    return report


def retention_job() -> dict:
    """The periodic job: anonymise what is older than ``RETENTION_DAYS`` now, and forget
    the codes of online bookings nobody entered (docs/online-booking.md)."""
    from gateway.online.service import forget_expired_codes

    return {**asdict(anonymise_old()), "expired_codes": forget_expired_codes()}


@click.command("retention")
@click.option("--dry-run", is_flag=True, help="Count what would be anonymised, change nothing.")
@click.option("--at", "at", default=None, help="Reference instant (ISO 8601), default now.")
@with_appcontext
def retention_command(dry_run: bool, at: str | None) -> None:
    """Anonymise messages, inbound SMS and receipts older than RETENTION_DAYS."""
    now = None
    if at:
        try:
            now = parse_iso(at, UTC)  # an instant without offset is read as UTC
        except ValueError:
            raise click.BadParameter(f"date ISO 8601 invalide : {at}", param_hint="--at") from None
    report = anonymise_old(now, dry_run=dry_run)
    verb = "à anonymiser" if dry_run else "anonymisés"
    click.echo(f"messages {verb} : {report.messages}")
    click.echo(f"SMS reçus {verb} : {report.inbound_sms}")
    click.echo(f"accusés de réception {verb} : {report.delivery_events}")
    click.echo(
        f"événements de webhooks {'à supprimer' if dry_run else 'supprimés'} : "
        f"{report.webhook_events}"
    )
