"""The one place that changes a message's status.

A status only moves forward (:func:`providers.status.can_transition`): a late
``sent`` receipt after ``delivered`` changes nothing, and the same receipt
twice changes nothing the second time. Every accepted change is recorded in
``message_status_changes`` for the timeline.
"""

from __future__ import annotations

from datetime import datetime

from gateway.extensions import db
from gateway.models import Message, MessageStatusChange
from gateway.timeutil import utcnow
from providers import status as S


def transition(message: Message, new_status: str, *, at: datetime | None = None,
               detail: str | None = None, **fields) -> bool:
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
    return True


def record_created(message: Message, at: datetime) -> None:
    """Record a new message's first status on its timeline."""
    db.session.add(MessageStatusChange(message=message, status=message.status, at=at))
