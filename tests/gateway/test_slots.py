"""Free slots: opening hours in local time, minus booked rdvs, across DST changes."""

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from gateway.booking import book, cancel
from gateway.extensions import db
from gateway.slots import free_slots

from ..factories import book_rdv, make_world

PARIS = ZoneInfo("Europe/Paris")
REUNION = ZoneInfo("Indian/Reunion")


def local_starts(slots, tz):
    return [s.starts_at.astimezone(tz).strftime("%d %H:%M") for s in slots]


@pytest.fixture
def paris(app):
    return make_world(opening=((time(9), time(11)),))


def test_slots_step_by_motif_duration_and_fit_inside_the_range(paris):
    day = datetime(2026, 6, 5, tzinfo=PARIS)
    slots = free_slots(
        paris.org,
        paris.long_motif,
        day,
        day + timedelta(days=1),
        lieu_id=paris.lieu.id,
        agent_id=paris.agent.id,
        now=day - timedelta(days=1),
    )
    assert local_starts(slots, PARIS) == ["05 09:00", "05 10:00"]
    slots = free_slots(
        paris.org,
        paris.motif,
        day,
        day + timedelta(days=1),
        lieu_id=paris.lieu.id,
        agent_id=paris.agent.id,
        now=day - timedelta(days=1),
    )
    assert local_starts(slots, PARIS) == ["05 09:00", "05 09:30", "05 10:00", "05 10:30"]


@pytest.mark.parametrize("day", [29, 30, 28])  # Sunday 29 March 2026: clocks go forward at 02:00
def test_opening_hours_stay_in_local_time_across_spring_forward(paris, day):
    start = datetime(2026, 3, day, tzinfo=PARIS)
    slots = free_slots(
        paris.org,
        paris.long_motif,
        start,
        start + timedelta(days=1),
        lieu_id=paris.lieu.id,
        agent_id=paris.agent.id,
        now=datetime(2026, 3, 1, tzinfo=PARIS),
    )
    assert local_starts(slots, PARIS) == [f"{day} 09:00", f"{day} 10:00"]
    offset = slots[0].starts_at.astimezone(PARIS).utcoffset()
    assert offset == (timedelta(hours=1) if day == 28 else timedelta(hours=2))


def test_fall_back_weekend(paris):
    start = datetime(2026, 10, 24, tzinfo=PARIS)
    slots = free_slots(
        paris.org,
        paris.long_motif,
        start,
        start + timedelta(days=3),
        lieu_id=paris.lieu.id,
        agent_id=paris.agent.id,
        now=datetime(2026, 10, 1, tzinfo=PARIS),
    )
    assert local_starts(slots, PARIS) == [
        "24 09:00",
        "24 10:00",
        "25 09:00",
        "25 10:00",
        "26 09:00",
        "26 10:00",
    ]
    assert [s.starts_at.astimezone(PARIS).utcoffset().seconds // 3600 for s in slots] == [
        2,
        2,
        1,
        1,
        1,
        1,
    ]


def test_booked_rdvs_are_removed_at_any_lieu_and_cancelled_ones_come_back(paris):
    now = datetime(2026, 6, 1, tzinfo=PARIS)
    day = datetime(2026, 6, 5, tzinfo=PARIS)
    rdv = book(
        paris.org,
        motif_id=paris.motif.id,
        lieu_id=paris.other_lieu.id,
        agent_id=paris.agent.id,
        usager_ids=[paris.usager.id],
        starts_at=day.replace(hour=9, minute=30),
        now=now,
    )
    slots = free_slots(
        paris.org,
        paris.long_motif,
        day,
        day + timedelta(days=1),
        lieu_id=paris.lieu.id,
        agent_id=paris.agent.id,
        now=now,
    )
    assert local_starts(slots, PARIS) == [
        "05 10:00"
    ]  # 09:00-10:00 overlaps the 09:30 rdv elsewhere
    cancel(rdv, via="agent", now=now)
    slots = free_slots(
        paris.org,
        paris.long_motif,
        day,
        day + timedelta(days=1),
        lieu_id=paris.lieu.id,
        agent_id=paris.agent.id,
        now=now,
    )
    assert local_starts(slots, PARIS) == ["05 09:00", "05 10:00"]


def test_past_slots_are_not_offered(paris):
    day = datetime(2026, 6, 5, tzinfo=PARIS)
    slots = free_slots(
        paris.org,
        paris.motif,
        day,
        day + timedelta(days=1),
        lieu_id=paris.lieu.id,
        agent_id=paris.agent.id,
        now=day.replace(hour=9, minute=45),
    )
    assert local_starts(slots, PARIS) == ["05 10:00", "05 10:30"]


def test_motifs_not_served_have_no_slots(paris):
    from gateway.models import Motif

    other = Motif(organisation_id=paris.org.id, name="Autre", service="RSA", duration_minutes=30)
    db.session.add(other)
    db.session.commit()
    day = datetime(2026, 6, 5, tzinfo=PARIS)
    assert (
        free_slots(paris.org, other, day, day + timedelta(days=1), now=day - timedelta(days=1))
        == []
    )


def test_overseas_zone(app):
    world = make_world(tz="Indian/Reunion", opening=((time(8), time(9)),))
    day = datetime(2026, 6, 5, tzinfo=REUNION)
    slots = free_slots(
        world.org,
        world.motif,
        day,
        day + timedelta(days=1),
        lieu_id=world.lieu.id,
        agent_id=world.agent.id,
        now=day - timedelta(days=1),
    )
    assert [s.starts_at.isoformat() for s in slots] == [
        "2026-06-05T04:00:00+00:00",
        "2026-06-05T04:30:00+00:00",
    ]


def test_ranges_longer_than_62_days_are_refused(paris):
    day = datetime(2026, 6, 5, tzinfo=PARIS)
    with pytest.raises(ValueError):
        free_slots(paris.org, paris.motif, day, day + timedelta(days=63))


@pytest.mark.parametrize(
    ("motif", "at", "near"),
    [
        ("motif", "09:30", ["09:30"]),  # on the 30-minute grid
        ("motif", "09:10", ["09:00", "09:30"]),
        ("motif", "10:45", ["10:30"]),  # 11:00 would end after the range
        ("motif", "08:50", ["09:00"]),
        ("long_motif", "09:30", ["09:00", "10:00"]),  # a 60-minute grid
        ("motif", "14:00", []),  # no range that afternoon
    ],
)
def test_grid_starts_near_a_time(paris, motif, at, near):
    from gateway.slots import grid_starts_near

    hour, minute = map(int, at.split(":"))
    starts = datetime(2026, 6, 5, hour, minute, tzinfo=PARIS)
    found = grid_starts_near(
        paris.org, getattr(paris, motif), paris.agent.id, paris.lieu.id, starts
    )
    assert [t.astimezone(PARIS).strftime("%H:%M") for t in found] == near


def test_the_rdv_being_moved_frees_its_own_time_for_the_slots_around_it(paris):
    day = datetime(2026, 6, 5, tzinfo=PARIS)
    rdv = book_rdv(paris, day.replace(hour=9), now=day - timedelta(days=1), motif=paris.long_motif)
    kwargs = {"lieu_id": paris.lieu.id, "agent_id": paris.agent.id, "now": day - timedelta(days=1)}
    window = (day, day + timedelta(days=1))
    assert local_starts(free_slots(paris.org, paris.motif, *window, **kwargs), PARIS) == [
        "05 10:00",
        "05 10:30",
    ]
    assert local_starts(
        free_slots(paris.org, paris.motif, *window, exclude_rdv_id=rdv.id, **kwargs), PARIS
    ) == ["05 09:00", "05 09:30", "05 10:00", "05 10:30"]
