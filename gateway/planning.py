"""Which messages an rdv's life creates (the decisions; sending is the scheduler's).

Booking, moving and cancelling call these inside their own transaction, so a
message row exists exactly when the change it announces was committed.
When each message is due is decided by :mod:`scheduler.policy` alone.

Plan generations: every move and every cancel starts a new generation of the
rdv's plan (``rdv.plan_generation + 1``) before it plans its own messages, and
every message is stamped with the generation it was planned in (an email
fallback with its SMS's). A dated message (:data:`DATED_KINDS`) of an older
generation than its rdv's names a date or lieu that is no longer true: it is
stale (:func:`is_stale`), whatever the order in which rows were written.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select

from providers import status as S
from scheduler import policy
from scheduler.transitions import record_created, transition

from .extensions import db
from .models import CHANNEL_EMAIL, CHANNEL_SMS, Message, Participation, Rdv
from .phones import is_mobile
from .rendering import Rendered, render_email, render_sms

# Kinds that carry the rdv's date and lieu: a move makes them wrong.
DATED_KINDS = frozenset({"confirmation", "reminder", "second_reminder", "moved"})


def is_stale(message: Message, rdv: Rdv) -> bool:
    """Whether ``message`` (of ``rdv``) announces a date or lieu a later move replaced."""
    return message.kind in DATED_KINDS and message.plan_generation < rdv.plan_generation


def new_generation(rdv: Rdv) -> int:
    """Start a new plan for ``rdv`` (a move or a cancel): what was planned before is stale."""
    rdv.plan_generation = (rdv.plan_generation or 0) + 1
    return rdv.plan_generation


def reminder_offsets(rdv: Rdv) -> list[timedelta]:
    """The motif's override, else the organisation's, else ``REMINDER_OFFSETS``."""
    value = (
        rdv.motif.reminder_offsets
        or rdv.organisation.reminder_offsets
        or current_app.config["REMINDER_OFFSETS"]
    )
    return policy.parse_offsets(value)


def second_reminder_offset(rdv: Rdv) -> timedelta | None:
    """The second reminder's offset: the motif's (``off`` switches it off), else the
    organisation's, else none. Whether it goes is decided at send time
    (:func:`scheduler.jobs.no_show_loop_verdict`): only without an OUI."""
    value = rdv.motif.second_reminder_offset or rdv.organisation.second_reminder_offset
    if not value or value.strip().lower() in policy.OFF_VALUES:
        return None
    offsets = policy.parse_offsets(value)
    return offsets[0] if offsets else None


def quiet_hours(organisation) -> policy.QuietHours | None:
    value = organisation.quiet_hours
    if value is None:
        value = current_app.config["QUIET_HOURS"]
    return policy.QuietHours.parse(value)


def usager_channels(usager) -> list[tuple[str, str]]:
    """(channel, recipient) for every channel the usager consents to and can receive.

    SMS needs a mobile number; the SMS opt-out is checked at send time (the
    message is then ``skipped``), so an agent sees why nothing went.
    """
    channels = []
    if usager.notify_sms and usager.phone and is_mobile(usager.phone):
        channels.append((CHANNEL_SMS, usager.phone))
    if usager.notify_email and usager.email:
        channels.append((CHANNEL_EMAIL, usager.email))
    return channels


def new_message(
    *,
    organisation_id: int,
    rdv: Rdv | None,
    usager_id: int | None,
    channel: str,
    kind: str,
    recipient: str,
    send_at: datetime,
    now: datetime,
    rendered: Rendered,
    **fields,
) -> Message:
    """Add a ``scheduled`` message row with its rendered text; the one place rows are born.

    The row is stamped with its rdv's current plan generation unless
    ``fields`` says otherwise (an email fallback keeps its SMS's).
    """
    fields.setdefault("plan_generation", rdv.plan_generation if rdv is not None else 0)
    message = Message(
        organisation_id=organisation_id,
        rdv=rdv,
        usager_id=usager_id,
        channel=channel,
        kind=kind,
        status=S.SCHEDULED,
        send_at=send_at,
        recipient=recipient,
        subject=rendered.subject,
        body=rendered.body,
        html_body=rendered.html,
        segments=rendered.segments,
        encoding=rendered.encoding,
        status_changed_at=now,
        **fields,
    )
    db.session.add(message)
    record_created(message, now)
    return message


def _add(
    rdv: Rdv,
    participation: Participation,
    kind: str,
    channel: str,
    recipient: str,
    send_at: datetime,
    now: datetime,
    **extra,
) -> Message:
    usager = participation.usager
    render = render_sms if channel == CHANNEL_SMS else render_email
    rendered = render(kind, rdv, usager, participation.cancel_code, **extra)
    return new_message(
        organisation_id=rdv.organisation_id,
        rdv=rdv,
        usager_id=usager.id,
        channel=channel,
        kind=kind,
        recipient=recipient,
        send_at=send_at,
        now=now,
        rendered=rendered,
    )


def _announce(rdv: Rdv, kind: str, now: datetime, with_reminders: bool, **extra) -> list[Message]:
    org = rdv.organisation
    tz, quiet = org.tz, quiet_hours(org)
    offsets = reminder_offsets(rdv) if with_reminders else []
    second = [second_reminder_offset(rdv)] if with_reminders else []
    second = [o for o in second if o is not None]
    created = []
    for participation in rdv.participations:
        for channel, recipient in usager_channels(participation.usager):
            at = policy.immediate_time(kind, channel, now, quiet, tz)
            if at < rdv.starts_at:
                created.append(_add(rdv, participation, kind, channel, recipient, at, now, **extra))
            for at in policy.plan_reminders(rdv.starts_at, offsets, now, tz, quiet, channel):
                created.append(_add(rdv, participation, "reminder", channel, recipient, at, now))
            for at in policy.plan_reminders(rdv.starts_at, second, now, tz, quiet, channel):
                created.append(
                    _add(rdv, participation, "second_reminder", channel, recipient, at, now)
                )
    return created


def plan_booking(rdv: Rdv, now: datetime) -> list[Message]:
    """A confirmation per consented channel, now, and the reminders still ahead."""
    return _announce(rdv, "confirmation", now, with_reminders=True)


def cancel_unsent(rdv: Rdv, now: datetime, reason: str) -> int:
    """Every message of the rdv not yet handed to a provider becomes ``cancelled``."""
    count = 0
    rows = db.session.scalars(
        select(Message).where(Message.rdv_id == rdv.id, Message.status.in_(S.UNSENT_STATUSES))
    ).all()
    for message in rows:
        if transition(message, S.CANCELLED, at=now, detail=reason):
            count += 1
    return count


def plan_move(rdv: Rdv, now: datetime, previous_starts_at: datetime) -> list[Message]:
    """Cancel what is pending (it carries the old date), announce the move, re-plan reminders."""
    new_generation(rdv)
    cancel_unsent(rdv, now, "rdv déplacé")
    return _announce(rdv, "moved", now, with_reminders=True, previous_starts_at=previous_starts_at)


def plan_cancel(rdv: Rdv, now: datetime, by_usager: bool) -> list[Message]:
    """Cancel what is pending, confirm the cancellation, alert the agent if the usager did it."""
    new_generation(rdv)
    cancel_unsent(rdv, now, "rdv annulé")
    created = _announce(rdv, "cancelled", now, with_reminders=False)
    if by_usager:
        for participation in rdv.participations:
            created.append(agent_alert(rdv, participation.usager, now))
    return created


def agent_alert(rdv: Rdv, usager, now: datetime, reply_text: str | None = None) -> Message:
    """An email to the rdv's agent: the usager cancelled, or replied with free text."""
    rendered = render_email("agent_alert", rdv, usager, None, reply_text=reply_text)
    return new_message(
        organisation_id=rdv.organisation_id,
        rdv=rdv,
        usager_id=usager.id,
        channel=CHANNEL_EMAIL,
        kind="agent_alert",
        recipient=rdv.agent.email,
        send_at=now,
        now=now,
        rendered=rendered,
        agent_id=rdv.agent_id,
    )


FALLBACK_KINDS = ("confirmation", "reminder", "second_reminder", "moved", "cancelled")


def plan_email_fallback(sms: Message, now: datetime) -> Message | None:
    """The same content by email when an SMS ended ``failed`` or ``undelivered``.

    Called by the send job (failed) and by receipts (undelivered). Goes only
    when the usager has an email address (SPEC: "has an email", so even
    without email notifications switched on: the message matters and the SMS
    is known not to have arrived), the rdv is still ahead, and no email of the
    same kind is already planned or sent for this rdv. Returns the new message,
    or None. Idempotent: a second call for the same SMS creates nothing.
    """
    if sms.channel != CHANNEL_SMS or sms.kind not in FALLBACK_KINDS or sms.rdv is None:
        return None
    usager = sms.usager
    rdv = sms.rdv
    if usager is None or not usager.email or rdv.starts_at <= now:
        return None
    if sms.kind != "cancelled" and rdv.is_cancelled:
        return None
    if is_stale(sms, rdv):  # its date was replaced by a move: the moved notice tells the usager
        return None
    already = db.session.scalar(
        select(Message.id)
        .where(
            Message.rdv_id == rdv.id,
            Message.usager_id == usager.id,
            Message.channel == CHANNEL_EMAIL,
            Message.kind == sms.kind,
            Message.status.not_in((S.CANCELLED, S.SKIPPED, S.FAILED)),
        )
        .limit(1)
    )
    if already is not None:
        return None
    participation = next((p for p in rdv.participations if p.usager_id == usager.id), None)
    code = participation.cancel_code if participation else None
    rendered = render_email(sms.kind, rdv, usager, code)
    return new_message(
        organisation_id=sms.organisation_id,
        rdv=rdv,
        usager_id=usager.id,
        channel=CHANNEL_EMAIL,
        kind=sms.kind,
        recipient=usager.email,
        send_at=now,
        now=now,
        rendered=rendered,
        fallback_of_id=sms.id,
        plan_generation=sms.plan_generation,
    )
