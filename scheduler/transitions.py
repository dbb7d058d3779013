"""The one place that changes a message's status.

A status only moves forward (:func:`providers.status.can_transition`): a late
``sent`` receipt after ``delivered`` changes nothing, and the same receipt
twice changes nothing the second time. Every accepted change is recorded in
``message_status_changes`` for the timeline.
"""

from __future__ import annotations

from datetime import datetime

from gateway import events, metrics
from gateway.extensions import db
from gateway.models import Message, MessageStatusChange
from gateway.timeutil import utcnow
from providers import status as S


def transition(
    message: Message,
    new_status: str,
    *,
    at: datetime | None = None,
    detail: str | None = None,
    **fields,
) -> bool:
    """Move ``message`` to ``new_status`` if that is a forward move; set ``fields`` with it.

    Returns False, changing nothing, when the move would go backwards or
    repeat the current status.
    """
    if not S.can_transition(message.status, new_status):
        return False
    at = at or utcnow()
    message.status = new_status
    message.status_changed_at = at
    if new_status == S.SENT and message.sent_at is None:
        message.sent_at = at
    elif new_status == S.DELIVERED:
        message.delivered_at = at
        if message.sent_at is None:
            message.sent_at = at
    for name, value in fields.items():
        setattr(message, name, value)
    if detail and new_status in (S.FAILED, S.UNDELIVERED, S.SKIPPED):
        message.last_error = detail
    db.session.add(MessageStatusChange(message=message, status=new_status, at=at, detail=detail))
    metrics.message_status(new_status, message.channel, message.provider)
    events.message_status_changed(message, at)
    return True


def record_created(message: Message, at: datetime) -> None:
    """Record a new message's first status on its timeline."""
    db.session.add(MessageStatusChange(message=message, status=message.status, at=at))
    metrics.message_status(message.status, message.channel, message.provider)


# Statuses from which the scheduler may put a message back to ``scheduled``.
_RESCHEDULABLE = frozenset({S.QUEUED, S.SENDING})


def reschedule(
    message: Message, send_at: datetime, detail: str, *, at: datetime | None = None, **fields
) -> bool:
    """Put a ``queued`` or ``sending`` message back to ``scheduled`` for ``send_at``.

    This is the scheduler's own retry and the ONE deliberate step backwards in
    the status order: a transient provider error (backoff), quiet hours found
    at send time, or a ``sending`` row whose worker died (see
    :func:`scheduler.dispatch.reconcile_stale`). It is never used by receipts,
    which only move forward through :func:`transition`; a receipt arriving for
    a rescheduled message still moves it forward (``scheduled`` -> ``delivered``
    is allowed), which takes it out of the dispatcher's reach.

    Returns False, changing nothing, from any other status.
    """
    if message.status not in _RESCHEDULABLE:
        return False
    at = at or utcnow()
    message.status = S.SCHEDULED
    message.status_changed_at = at
    message.send_at = send_at
    for name, value in fields.items():
        setattr(message, name, value)
    db.session.add(MessageStatusChange(message=message, status=S.SCHEDULED, at=at, detail=detail))
    return True


def allowed_sources(new_status: str) -> tuple[str, ...]:
    """The statuses from which ``new_status`` is a forward move."""
    return tuple(s for s in S.ALL_STATUSES if S.can_transition(s, new_status))


def bulk_transition(
    ids,
    new_status: str,
    *,
    at: datetime,
    from_statuses=None,
    details: dict[int, str] | None = None,
    **values,
) -> list[int]:
    """Move many messages to ``new_status`` in one UPDATE; return the ids that moved.

    The same forward-only rule as :func:`transition`, applied in SQL: only rows
    whose current status may move to ``new_status`` change (``from_statuses``
    narrows that further, e.g. the send job's claim takes ``queued`` rows
    only). Each moved row gets its timeline entry. ``values`` are columns set
    on every moved row (SQL expressions allowed, e.g. ``attempts + 1``).
    Rows are never loaded: this is the pipeline's path for thousands of rows.
    """
    from sqlalchemy import insert, literal, update

    ids = list(ids)
    if not ids:
        return []
    sources = tuple(
        s for s in (from_statuses or allowed_sources(new_status)) if S.can_transition(s, new_status)
    )
    table = Message.__table__
    set_values = {"status": new_status, "status_changed_at": at, **values}
    if new_status == S.SENT:
        set_values.setdefault(
            "sent_at", db.func.coalesce(table.c.sent_at, literal(at, type_=table.c.sent_at.type))
        )
    moved_rows: list = []
    for start in range(0, len(ids), 1000):  # keep IN lists and parameters bounded
        chunk = ids[start : start + 1000]
        result = db.session.execute(
            update(table)
            .where(table.c.id.in_(chunk), table.c.status.in_(sources))
            .values(**set_values)
            .returning(table.c.id, table.c.organisation_id, table.c.channel, table.c.provider)
        )
        moved_rows.extend(result.all())
    moved = [row[0] for row in moved_rows]
    if moved:
        details = details or {}
        db.session.execute(
            insert(MessageStatusChange.__table__),
            [
                {"message_id": mid, "status": new_status, "at": at, "detail": details.get(mid)}
                for mid in moved
            ],
        )
        metrics.messages_status(new_status, moved_rows)
        events.messages_status_changed(moved_rows, new_status, at)
    return moved


def bulk_reschedule(
    ids,
    send_at: datetime,
    *,
    at: datetime,
    details: dict[int, str] | None = None,
    from_statuses=_RESCHEDULABLE,
    **values,
) -> list[int]:
    """:func:`reschedule` for many rows at once (the send job's retries); returns the moved ids.

    ``from_statuses`` narrows the rows taken (e.g. the send job hands back only
    the ``queued`` rows it never claimed).
    """
    sources = tuple(s for s in from_statuses if s in _RESCHEDULABLE)
    from sqlalchemy import insert, update

    ids = list(ids)
    if not ids:
        return []
    table = Message.__table__
    moved: list[int] = []
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        result = db.session.execute(
            update(table)
            .where(table.c.id.in_(chunk), table.c.status.in_(sources))
            .values(status=S.SCHEDULED, status_changed_at=at, send_at=send_at, **values)
            .returning(table.c.id)
        )
        moved.extend(row[0] for row in result)
    if moved:
        details = details or {}
        db.session.execute(
            insert(MessageStatusChange.__table__),
            [
                {"message_id": mid, "status": S.SCHEDULED, "at": at, "detail": details.get(mid)}
                for mid in moved
            ],
        )
    return moved
