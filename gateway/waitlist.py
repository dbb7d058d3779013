"""The waiting list: a freed slot is offered to usagers who asked for an earlier one.

Flow (SPEC section 5, docs/waitlist.md):

1. Cancelling or moving an rdv records the slot it leaves as a
   :class:`~gateway.models.FreedSlot`, in the transaction of the change
   (:func:`rdv_cancelled`, :func:`rdv_moved`), due to be offered now.
2. The scheduler's tick queues :func:`offer_slot_job` for every due freed
   slot (:func:`dispatch_freed_slots`): the work is a job, never the request.
3. The job offers the slot to at most ``WAITLIST_OFFERS_PER_SLOT`` waiting
   usagers of that motif and lieu whose rdv is at least a day later, earliest
   rdv first, by SMS (email when no SMS), each with a link ``/o/<code>``.
4. The first usager to POST the link gets the slot (:func:`take_offer`): their
   rdv moves there (``moved`` notice, new reminders), the others' offers are
   lost, and the slot their rdv left is freed in turn (back to step 1).

Limits, per usager, whatever the sequence of cancellations: at most one offer
per local day and three in all; no offer for a slot starting sooner than the
organisation's notice (default 4 h); none during quiet hours (the slot waits
for the morning). An offer ends when its slot is taken or starts.

Concurrency: the offering job serialises per organisation (a row lock on the
organisation on PostgreSQL, the write lock on SQLite), so two jobs cannot both
count a usager under the limit. Taking an offer goes through the booking's own
agent lock and overlap check, so of two usagers racing, one moves and the
other gets a clear "slot taken" refusal, their rdv untouched.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import func, select, update

from providers import status as S

from . import booking, events
from .errors import Conflict, NotFound
from .extensions import db
from .labels import SKIP_REASON_LABELS
from .models import (
    CHANNEL_SMS,
    RDV_NOSHOW,
    RDV_UNKNOWN,
    FreedSlot,
    Message,
    Organisation,
    Participation,
    Rdv,
    WaitlistOffer,
)
from .planning import new_message, plan_move, quiet_hours, usager_channels
from .rendering import offer_extra, render_email, render_sms
from .timeutil import localize, require_aware, utcnow

OFFERED, TAKEN, LOST, EXPIRED = "offered", "taken", "lost", "expired"
# The waiting rdv must be at least this much later than the slot offered.
MIN_GAIN = timedelta(days=1)
MAX_OFFERS_PER_DAY = 1
MAX_OFFERS_IN_ALL = 3
# A queued offering job that died is queued again after this.
JOB_LEASE = timedelta(minutes=5)


def past_noshows(usager_id: int | None, now: datetime) -> int:
    """How many past rdvs of the usager were recorded ``noshow``."""
    if usager_id is None:
        return 0
    return db.session.scalar(
        select(func.count())
        .select_from(Participation)
        .join(Rdv, Rdv.id == Participation.rdv_id)
        .where(
            Participation.usager_id == usager_id,
            Rdv.status == RDV_NOSHOW,
            Rdv.starts_at < now,
        )
    )


def set_waiting(rdv: Rdv, waiting: bool, now: datetime | None = None) -> Rdv:
    """Put an upcoming rdv on the waiting list, or take it off (agent page, manage link).

    Taking it off expires its open offers; a cancelled or started rdv cannot wait.
    """
    now = require_aware(now or utcnow())
    if waiting and (rdv.is_cancelled or rdv.starts_at <= now):
        raise Conflict("Ce rendez-vous ne peut plus attendre un créneau plus tôt.", code="rdv_past")
    rdv.waitlist = bool(waiting)
    if not waiting:
        db.session.execute(
            update(WaitlistOffer)
            .where(WaitlistOffer.rdv_id == rdv.id, WaitlistOffer.status == OFFERED)
            .values(status=EXPIRED, closed_at=now)
            .execution_options(synchronize_session=False)
        )
    db.session.commit()
    return rdv


# --- 1. recording freed slots (called inside the change's transaction) ---


def _record(
    rdv: Rdv,
    *,
    starts_at: datetime,
    lieu_id: int,
    agent_id: int,
    by_usager: bool,
    now: datetime,
) -> FreedSlot:
    slot = FreedSlot(
        organisation_id=rdv.organisation_id,
        motif_id=rdv.motif_id,
        lieu_id=lieu_id,
        agent_id=agent_id,
        starts_at=starts_at,
        ends_at=starts_at + timedelta(minutes=rdv.duration_minutes),
        freed_at=now,
        freed_by_usager=by_usager,
        source_rdv_id=rdv.id,
        next_offer_at=now if starts_at > now else None,
    )
    db.session.add(slot)
    return slot


def rdv_cancelled(rdv: Rdv, now: datetime) -> FreedSlot:
    """Record the slot a cancelled rdv leaves; called before the cancellation commits."""
    return _record(
        rdv,
        starts_at=rdv.starts_at,
        lieu_id=rdv.lieu_id,
        agent_id=rdv.agent_id,
        by_usager=rdv.cancelled_via in booking.USAGER_CHANNELS,
        now=now,
    )


def rdv_moved(
    rdv: Rdv,
    previous_starts_at: datetime,
    previous_lieu_id: int,
    now: datetime,
    *,
    previous_agent_id: int | None = None,
    by_usager: bool = False,
) -> FreedSlot:
    """Record the slot a moved rdv leaves, and the freed slots its new time fills.

    Called before the move commits.
    """
    _mark_filled(rdv, now, via="move")
    return _record(
        rdv,
        starts_at=previous_starts_at,
        lieu_id=previous_lieu_id,
        agent_id=previous_agent_id or rdv.agent_id,
        by_usager=by_usager,
        now=now,
    )


def _mark_filled(rdv: Rdv, now: datetime, via: str) -> None:
    db.session.execute(
        update(FreedSlot)
        .where(
            FreedSlot.agent_id == rdv.agent_id,
            FreedSlot.filled_at.is_(None),
            FreedSlot.starts_at < rdv.ends_at,
            FreedSlot.ends_at > rdv.starts_at,
        )
        .values(filled_at=now, filled_via=via, filled_rdv_id=rdv.id, next_offer_at=None)
        .execution_options(synchronize_session=False)
    )


# --- 2. the scheduler's part ---


def dispatch_freed_slots(now: datetime | None = None, limit: int = 100) -> int:
    """Queue an offering job for each freed slot due now; returns how many were queued.

    Each slot is claimed by pushing its ``next_offer_at`` a lease ahead with a
    conditional UPDATE: several schedulers queue it once, and a job lost with
    its worker is queued again when the lease ends.
    """
    from scheduler.queue import enqueue

    now = require_aware(now or utcnow())
    due = db.session.execute(
        select(FreedSlot.id, FreedSlot.next_offer_at)
        .where(FreedSlot.next_offer_at <= now)
        .order_by(FreedSlot.next_offer_at)
        .limit(limit)
    ).all()
    claimed = []
    for slot_id, due_at in due:
        result = db.session.execute(
            update(FreedSlot)
            .where(FreedSlot.id == slot_id, FreedSlot.next_offer_at == due_at)
            .values(next_offer_at=now + JOB_LEASE)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount:
            claimed.append(slot_id)
    db.session.commit()
    for slot_id in claimed:
        enqueue("gateway.waitlist.offer_slot_job", slot_id)
    return len(claimed)


def offer_slot_job(freed_slot_id: int) -> int:
    """RQ job: offer one freed slot now; returns the number of offers made."""
    return offer_slot(freed_slot_id, utcnow())


# --- 3. offering ---


def slot_is_free(slot: FreedSlot) -> bool:
    """No live rdv of the slot's agent overlaps it."""
    return not booking._overlapping(slot.agent_id, slot.starts_at, slot.ends_at, None)


def _notice(org: Organisation) -> timedelta:
    """No offer for a slot starting sooner than this (the organisation's setting, 4 h)."""
    return timedelta(minutes=org.waitlist_notice_minutes)


def _close_slot(slot: FreedSlot, now: datetime, status: str) -> None:
    slot.next_offer_at = None
    db.session.execute(
        update(WaitlistOffer)
        .where(WaitlistOffer.freed_slot_id == slot.id, WaitlistOffer.status == OFFERED)
        .values(status=status, closed_at=now)
        .execution_options(synchronize_session=False)
    )


def _local_day_start(now: datetime, tz) -> datetime:
    return localize(datetime.combine(now.astimezone(tz).date(), datetime.min.time()), tz)


def offer_slot(freed_slot_id: int, now: datetime) -> int:
    """Offer the freed slot to the waiting usagers it suits, within the limits.

    One transaction, serialised per organisation. The slot is closed (nothing
    more to do) when it is taken, too close, or offered; during quiet hours it
    waits for the morning.
    """
    now = require_aware(now)
    slot = db.session.get(FreedSlot, freed_slot_id)
    if slot is None or slot.next_offer_at is None:
        return 0
    # Serialise offering per organisation: the limits are counted, then written.
    db.session.execute(
        update(FreedSlot)
        .where(FreedSlot.id == slot.id)
        .values(next_offer_at=slot.next_offer_at)
        .execution_options(synchronize_session=False)
    )
    org = db.session.scalar(
        select(Organisation).where(Organisation.id == slot.organisation_id).with_for_update()
    )
    db.session.refresh(slot)
    if slot.next_offer_at is None:
        db.session.commit()
        return 0
    if slot.filled_at is not None or not slot_is_free(slot):
        _close_slot(slot, now, LOST)
        db.session.commit()
        return 0
    if slot.starts_at - _notice(org) <= now:
        _close_slot(slot, now, EXPIRED)
        db.session.commit()
        return 0
    quiet = quiet_hours(org)
    window = quiet.window_around(now, org.tz) if quiet else None
    if window is not None:
        # Wait for the morning; the job then checks again that it is free and far enough.
        slot.next_offer_at = window[1]
        db.session.commit()
        return 0
    made = 0
    batch = int(current_app.config.get("WAITLIST_OFFERS_PER_SLOT", 3))
    for rdv in _waiting_rdvs(slot):
        if made >= batch:
            break
        if _offer(slot, rdv, org, now):
            made += 1
    slot.next_offer_at = None
    db.session.commit()
    return made


def _waiting_rdvs(slot: FreedSlot) -> list[Rdv]:
    return list(
        db.session.scalars(
            select(Rdv)
            .where(
                Rdv.organisation_id == slot.organisation_id,
                Rdv.motif_id == slot.motif_id,
                Rdv.lieu_id == slot.lieu_id,
                Rdv.waitlist.is_(True),
                Rdv.status == RDV_UNKNOWN,
                Rdv.starts_at >= slot.starts_at + MIN_GAIN,
            )
            .order_by(Rdv.starts_at, Rdv.id)
            .limit(200)
        )
    )


def may_offer(usager_id: int, now: datetime, tz) -> bool:
    """Whether the usager is under both limits: one offer per local day, three in all."""
    counts = db.session.execute(
        select(
            func.count(),
            func.count().filter(WaitlistOffer.created_at >= _local_day_start(now, tz)),
        ).where(WaitlistOffer.usager_id == usager_id)
    ).one()
    in_all, today = counts
    return in_all < MAX_OFFERS_IN_ALL and today < MAX_OFFERS_PER_DAY


def _offer(slot: FreedSlot, rdv: Rdv, org: Organisation, now: datetime) -> WaitlistOffer | None:
    # The rdv's first usager is offered the slot (an rdv of several usagers moves as one).
    participation = rdv.participations[0] if rdv.participations else None
    if participation is None:
        return None
    usager = participation.usager
    channels = [
        c for c in usager_channels(usager) if not (c[0] == CHANNEL_SMS and usager.sms_opted_out)
    ]
    if not channels or not may_offer(usager.id, now, org.tz):
        return None
    channel, recipient = channels[0]  # SMS first, email when there is no SMS
    offer = WaitlistOffer(
        organisation_id=org.id,
        freed_slot_id=slot.id,
        rdv_id=rdv.id,
        usager_id=usager.id,
        status=OFFERED,
        created_at=now,
    )
    db.session.add(offer)
    db.session.flush()
    extra = offer_extra(slot.starts_at, slot.lieu, offer.code, org.tz)
    render = render_sms if channel == CHANNEL_SMS else render_email
    message = new_message(
        organisation_id=org.id,
        rdv=rdv,
        usager_id=usager.id,
        channel=channel,
        kind="waitlist_offer",
        recipient=recipient,
        send_at=now,
        now=now,
        rendered=render("waitlist_offer", rdv, usager, participation.cancel_code, **extra),
    )
    db.session.flush()
    offer.message_id = message.id
    return offer


def offer_send_verdict(message: Message, org: Organisation, now: datetime):
    """Send-time check of an offer: None (it goes) or (status, reason)."""
    offer = db.session.scalar(select(WaitlistOffer).where(WaitlistOffer.message_id == message.id))
    if offer is None or offer.status != OFFERED:
        return S.CANCELLED, SKIP_REASON_LABELS["offer_closed"]
    slot = offer.freed_slot
    if slot.filled_at is not None or not slot_is_free(slot):
        return S.CANCELLED, SKIP_REASON_LABELS["slot_taken"]
    if slot.starts_at - _notice(org) <= now:
        return S.SKIPPED, SKIP_REASON_LABELS["slot_too_soon"]
    return None


# --- 4. taking an offer ---


def find_offer(code: str) -> WaitlistOffer:
    offer = db.session.scalar(select(WaitlistOffer).where(WaitlistOffer.code == code))
    if offer is None:
        raise NotFound("Proposition introuvable.")
    return offer


def offer_state(offer: WaitlistOffer, now: datetime) -> str:
    """``open``, ``taken`` (by this usager), ``lost`` (by someone else) or ``expired``."""
    if offer.status == TAKEN:
        return "taken"
    if offer.status == LOST:
        return "lost"
    if offer.status == EXPIRED:
        return "expired"
    slot, rdv = offer.freed_slot, offer.rdv
    if slot.filled_at is not None or not slot_is_free(slot):
        return "lost"
    if (
        slot.starts_at <= now
        or rdv.is_cancelled
        or not rdv.waitlist
        or rdv.starts_at <= slot.starts_at
    ):
        return "expired"
    return "open"


class SlotTaken(Conflict):
    """Someone else took the slot first."""

    def __init__(self) -> None:
        super().__init__("Ce créneau vient d'être pris.", code="slot_taken")


class OfferExpired(Conflict):
    def __init__(self) -> None:
        super().__init__("Cette proposition n'est plus valable.", code="offer_expired")


def take_offer(offer: WaitlistOffer, now: datetime | None = None) -> Rdv:
    """Move the offer's rdv into the freed slot, if still free: the first one wins.

    Idempotent for the usager who took it. Raises :class:`SlotTaken` (their rdv
    unchanged) or :class:`OfferExpired`.
    """
    now = require_aware(now or utcnow())
    state = offer_state(offer, now)
    if state == "taken":
        return offer.rdv
    if state == "lost":
        _set_status(offer, LOST, now)
        raise SlotTaken()
    if state == "expired":
        _set_status(offer, EXPIRED, now)
        raise OfferExpired()
    offer_id = offer.id
    rdv, slot = offer.rdv, offer.freed_slot
    try:
        # The locks in the order of every move: the rdv's row (an agent's move or a
        # cancellation of it waits), then the slot agent's booking lock (racing takers
        # queue here), and only then the offer rows, so they never deadlock.
        booking._lock_rdv(rdv)
        previous, previous_lieu, previous_agent = rdv.starts_at, rdv.lieu_id, rdv.agent_id
        if rdv.is_cancelled or rdv.starts_at <= slot.starts_at:
            raise SlotTaken()
        ends_at = booking._check_slot(
            rdv.organisation, rdv.motif, slot.agent, slot.lieu, slot.starts_at, exclude_id=rdv.id
        )
    except Conflict:
        db.session.rollback()
        _set_status(db.session.get(WaitlistOffer, offer_id), LOST, now)
        raise SlotTaken() from None
    claimed = db.session.execute(
        update(WaitlistOffer)
        .where(WaitlistOffer.id == offer_id, WaitlistOffer.status == OFFERED)
        .values(status=TAKEN, closed_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not claimed:  # a double POST: the first one moved the rdv
        db.session.rollback()
        return take_offer(db.session.get(WaitlistOffer, offer_id), now)
    db.session.refresh(slot)
    if slot.filled_at is not None:
        db.session.rollback()
        _set_status(db.session.get(WaitlistOffer, offer_id), LOST, now)
        raise SlotTaken()
    rdv.starts_at, rdv.ends_at = slot.starts_at, ends_at
    rdv.lieu, rdv.agent = slot.lieu, slot.agent
    rdv.duration_minutes = rdv.motif.duration_minutes
    # They got the earlier slot they asked for: no more offers for this rdv.
    rdv.waitlist = False
    db.session.flush()
    plan_move(rdv, now, previous)
    events.rdv_changed(rdv, events.RDV_MOVED, now)
    slot.filled_at, slot.filled_via, slot.filled_rdv_id = now, "waitlist", rdv.id
    _close_slot(slot, now, LOST)
    db.session.execute(
        update(WaitlistOffer)
        .where(WaitlistOffer.rdv_id == rdv.id, WaitlistOffer.status == OFFERED)
        .values(status=EXPIRED, closed_at=now)
        .execution_options(synchronize_session=False)
    )
    # The slot the rdv leaves is offered in turn, by the next job.
    rdv_moved(
        rdv,
        previous,
        previous_lieu,
        now,
        previous_agent_id=previous_agent,
        by_usager=True,
    )
    booking._commit_or_conflict()
    return rdv


def _set_status(offer: WaitlistOffer, status: str, now: datetime) -> None:
    if offer.status == OFFERED:
        offer.status, offer.closed_at = status, now
        db.session.commit()
