"""The rdv page's timeline: everything that happened to an rdv, in time order.

One list merges the rdv's own milestones (booked, confirmed by the usager,
cancelled, outcome recorded), every status each message went through
(``message_status_changes``), every receipt (``delivery_events``) and every
inbound SMS matched to the rdv.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from .models import DeliveryEvent, InboundSms, Message, MessageStatusChange, Rdv

# Same instant: the rdv's own facts first, then a message's statuses, then receipts.
_ORDER = {
    "booked": 0,
    "cancelled": 1,
    "confirmed": 1,
    "outcome": 1,
    "inbound": 2,
    "status": 3,
    "receipt": 4,
}


@dataclass
class TimelineEntry:
    """One line of the timeline; ``what`` says which of the optional fields are set."""

    at: datetime
    what: str  # booked, status, receipt, inbound, confirmed, cancelled, outcome
    message: Message | None = None
    change: MessageStatusChange | None = None
    event: DeliveryEvent | None = None
    inbound: InboundSms | None = None
    extra: dict = field(default_factory=dict)


def build_timeline(
    rdv: Rdv, messages: list[Message], inbound: list[InboundSms]
) -> list[TimelineEntry]:
    """Every event of ``rdv`` and of its messages and replies, oldest first."""
    entries = []
    if rdv.confirmed_at:
        entries.append(TimelineEntry(rdv.confirmed_at, "confirmed"))
    if rdv.cancelled_at:
        entries.append(TimelineEntry(rdv.cancelled_at, "cancelled"))
    if rdv.status_recorded_at and rdv.status in ("seen", "noshow"):
        entries.append(TimelineEntry(rdv.status_recorded_at, "outcome"))
    for message in messages:
        # A receipt that changed the message's status is shown on that status's line
        # (one event, one line); receipts without effect keep a line of their own.
        receipts = sorted(message.events, key=lambda e: (e.received_at, e.id or 0))
        merged: set[int] = set()
        for change in message.status_changes:
            receipt = next(
                (
                    e
                    for e in receipts
                    if e.applied and e.mapped_status == change.status and id(e) not in merged
                ),
                None,
            )
            if receipt is not None:
                merged.add(id(receipt))
            entries.append(
                TimelineEntry(change.at, "status", message=message, change=change, event=receipt)
            )
        for event in receipts:
            if id(event) not in merged:
                entries.append(
                    TimelineEntry(event.received_at, "receipt", message=message, event=event)
                )
    for sms in inbound:
        entries.append(TimelineEntry(sms.received_at, "inbound", inbound=sms))
    entries.sort(key=lambda e: (e.at, _ORDER[e.what], e.message.id if e.message else 0))
    # Booking comes first by definition: its messages are planned in the same
    # transaction, sometimes stamped a moment before the rdv row itself.
    return [TimelineEntry(rdv.created_at, "booked"), *entries]


_WENT = ("sending", "sent", "delivered", "undelivered")


def message_reason(message: Message) -> str:
    """Why a message went, was held, or was skipped, in the agents' words ("" if nothing to say).

    A skipped or cancelled message gives the reason recorded by the send-time
    check; a second reminder that went says it went for want of an OUI.
    """
    if message.status in ("skipped", "cancelled", "failed"):
        for change in reversed(message.status_changes):
            if change.status == message.status and change.detail:
                return change.detail
        return ""
    if message.kind == "second_reminder":
        if message.status in _WENT:
            noshow_only = (
                message.rdv is not None and message.rdv.organisation.second_reminder_noshow_only
            )
            reason = "envoyé : pas de confirmation par OUI à l'heure d'envoi"
            return reason + (" ; absence passée" if noshow_only else "")
        return "partira seulement si l'usager n'a pas confirmé par OUI"
    if message.kind == "reminder" and message.status in _WENT:
        return "rappel automatique avant le rendez-vous"
    return ""
