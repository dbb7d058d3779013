"""No sequence of cancellations, moves and taken offers can exceed the waiting list's limits.

Hypothesis draws sequences of events (an rdv booked then cancelled by its
usager or the service, the clock moving on by minutes to days, across nights,
a waiting usager taking an offer they received) and checks, per usager: at most
one offer per local day, three in all, none sent in quiet hours, none for a slot
closer than the notice. (The service Lapin reproduces once sent one person 136
SMS this way.)
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from gateway.booking import book, cancel
from gateway.errors import DomainError
from gateway.extensions import db
from gateway.models import FreedSlot, WaitlistOffer
from gateway.waitlist import MAX_OFFERS_IN_ALL, MAX_OFFERS_PER_DAY, offer_slot, take_offer

from ..conftest import _empty_tables
from ..factories import make_usager, make_world

PARIS = ZoneInfo("Europe/Paris")
START = datetime(2030, 3, 4, 7, 0, tzinfo=PARIS)
HOURS = [(9, 0), (9, 30), (10, 0), (11, 0), (11, 30), (14, 0), (15, 0), (16, 30)]
NOTICE = timedelta(hours=4)

events = st.lists(
    st.tuples(
        st.sampled_from(["cancel", "cancel", "take"]),
        st.integers(0, 6),  # day of the slot booked then cancelled, from today
        st.sampled_from(HOURS),
        st.sampled_from(["link", "sms", "agent"]),
        st.sampled_from([0, 1, 30, 150, 600, 1440, 2000]),  # minutes the clock then moves
    ),
    min_size=1,
    max_size=25,
)


def _offer_what_is_due(now: datetime) -> None:
    """The scheduler and its job, at ``now`` (the job's own code path, a fixed clock)."""
    due = db.session.scalars(select(FreedSlot.id).where(FreedSlot.next_offer_at <= now)).all()
    for slot_id in due:
        offer_slot(slot_id, now)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=events)
def test_no_sequence_of_cancellations_exceeds_the_limits(app, steps):
    _empty_tables()
    world = make_world(opening=((time(9), time(12)), (time(14), time(17))))
    waiting = [make_usager(world.org, first=f"W{i}", phone=f"+3362000000{i}") for i in range(3)]
    db.session.commit()
    for i, usager in enumerate(waiting):
        book(
            world.org,
            motif_id=world.motif.id,
            lieu_id=world.lieu.id,
            agent_id=world.agent.id,
            usager_ids=[usager.id],
            starts_at=datetime(2030, 3, 20 + i, 10, 0, tzinfo=PARIS),
            now=START,
            waitlist=True,
        )
    now = START
    for n, (kind, day, (hour, minute), via, advance) in enumerate(steps):
        if kind == "take":
            offer = db.session.scalars(
                select(WaitlistOffer).where(WaitlistOffer.status == "offered").limit(1)
            ).first()
            if offer is not None:
                try:
                    take_offer(offer, now)
                except DomainError:
                    db.session.rollback()
        else:
            holder = make_usager(world.org, first=f"H{n}", phone=f"+336300{n:05d}")
            db.session.commit()
            d = now.astimezone(PARIS).date() + timedelta(days=day)
            starts = datetime(d.year, d.month, d.day, hour, minute, tzinfo=PARIS)
            try:
                rdv = book(
                    world.org,
                    motif_id=world.motif.id,
                    lieu_id=world.lieu.id,
                    agent_id=world.agent.id,
                    usager_ids=[holder.id],
                    starts_at=starts,
                    now=now,
                )
                cancel(rdv, via=via, agent=world.agent if via == "agent" else None, now=now)
            except DomainError:
                db.session.rollback()
        _offer_what_is_due(now)
        now += timedelta(minutes=advance)
        _offer_what_is_due(now)

    offers = db.session.scalars(select(WaitlistOffer)).all()
    per_usager = Counter(o.usager_id for o in offers)
    per_day = Counter((o.usager_id, o.created_at.astimezone(PARIS).date()) for o in offers)
    assert max(per_usager.values(), default=0) <= MAX_OFFERS_IN_ALL
    assert max(per_day.values(), default=0) <= MAX_OFFERS_PER_DAY
    for offer in offers:
        local = offer.created_at.astimezone(PARIS).time()
        assert time(8) <= local < time(20), "an offer in quiet hours"
        assert offer.freed_slot.starts_at - offer.created_at > NOTICE, "an offer too late"
