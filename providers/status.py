"""The single vocabulary of message statuses for the whole project.

A message moves forward only::

    scheduled -> queued -> sending -> sent -> delivered

and may end early in ``undelivered``, ``failed``, ``cancelled`` or ``skipped``.
Final statuses never change, so late or duplicated receipts are harmless.

Receipts never move a message back. The scheduler alone has one deliberate
exception, its retry: a ``queued`` or ``sending`` message goes back to
``scheduled`` with a later ``send_at`` after a transient provider error, or
when its worker died (``scheduler.transitions.reschedule``, documented there).
"""

from __future__ import annotations

SCHEDULED = "scheduled"
QUEUED = "queued"
SENDING = "sending"
SENT = "sent"
DELIVERED = "delivered"
UNDELIVERED = "undelivered"
FAILED = "failed"
CANCELLED = "cancelled"
SKIPPED = "skipped"

ALL_STATUSES: tuple[str, ...] = (
    SCHEDULED,
    QUEUED,
    SENDING,
    SENT,
    DELIVERED,
    UNDELIVERED,
    FAILED,
    CANCELLED,
    SKIPPED,
)

FINAL_STATUSES = frozenset({DELIVERED, UNDELIVERED, FAILED, CANCELLED, SKIPPED})
UNSENT_STATUSES = frozenset({SCHEDULED, QUEUED})

# The happy path, in order; a move is allowed when it goes to the right.
_PROGRESS: tuple[str, ...] = (SCHEDULED, QUEUED, SENDING, SENT, DELIVERED)

# Once the provider has the message (``sent``), only a receipt can end it:
# cancelling or skipping it would hide the fact that it went out.
_ENDS_AFTER_SENT = frozenset({DELIVERED, UNDELIVERED, FAILED})
_EARLY_ENDS = frozenset({UNDELIVERED, FAILED, CANCELLED, SKIPPED})


def can_transition(current: str, new: str) -> bool:
    """Tell whether a message in status ``current`` may move to ``new``.

    Rules:
    - the same status again is a no-op (False);
    - a final status never changes;
    - forward moves along scheduled < queued < sending < sent < delivered are
      allowed, jumps included (a receipt may arrive before the worker recorded
      ``sent``); backward moves never are;
    - scheduled, queued and sending may end in undelivered, failed, cancelled or
      skipped; sent may only end in delivered, undelivered or failed.

    Raises ValueError for a string that is not a status: that is a bug, not data.
    """
    for status in (current, new):
        if status not in ALL_STATUSES:
            raise ValueError(f"unknown message status: {status!r}")
    if current == new or current in FINAL_STATUSES:
        return False
    if current == SENT:
        return new in _ENDS_AFTER_SENT
    if new in _EARLY_ENDS:
        return True
    return _PROGRESS.index(new) > _PROGRESS.index(current)
