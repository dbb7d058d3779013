"""Free slots: opening hours minus booked, non-cancelled rdvs.

Opening hours are weekly wall-clock ranges in the organisation's zone; each
day's range is turned into aware instants separately, so a range "09:00-12:00"
stays 09:00-12:00 local on both sides of a daylight-saving change.

The grid: a motif's slots start at the beginning of each range and follow one
another every ``duration_minutes``; a slot ends inside its range. Moving an rdv
accepts only a start on this grid (:func:`grid_starts_near`), so a move never
leaves a gap that hides slots (15:10 on a 30-minute grid would hide 15:00 and
15:30).
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import select

from .extensions import db
from .models import (
    RDV_CANCELLED_STATUSES,
    Motif,
    OpeningHours,
    Organisation,
    Rdv,
    VerificationCode,
)
from .timeutil import UTC, localize, require_aware, utcnow

MAX_RANGE = timedelta(days=62)


@dataclass(frozen=True, order=True)
class Slot:
    starts_at: datetime
    ends_at: datetime
    agent_id: int
    lieu_id: int


def busy_intervals(
    agent_ids, start: datetime, end: datetime, exclude_rdv_id: int | None = None
) -> dict[int, list[tuple]]:
    """Booked, non-cancelled rdvs of these agents overlapping [start, end), but one rdv,
    and the slots held by online bookings waiting for their code (:mod:`gateway.online`)."""
    agent_ids = list(agent_ids)
    rdvs = select(Rdv.agent_id, Rdv.starts_at, Rdv.ends_at).where(
        Rdv.agent_id.in_(agent_ids),
        Rdv.status.not_in(RDV_CANCELLED_STATUSES),
        Rdv.starts_at < end,
        Rdv.ends_at > start,
    )
    if exclude_rdv_id is not None:
        rdvs = rdvs.where(Rdv.id != exclude_rdv_id)
    holds = select(
        VerificationCode.agent_id, VerificationCode.starts_at, VerificationCode.ends_at
    ).where(
        VerificationCode.agent_id.in_(agent_ids),
        VerificationCode.status == "pending",
        VerificationCode.expires_at > utcnow(),
        VerificationCode.starts_at < end,
        VerificationCode.ends_at > start,
    )
    rows = db.session.execute(rdvs.union_all(holds)).all()
    busy: dict[int, list[tuple]] = {}
    # Neither rdvs nor holds overlap each other (both are checked under the agent's
    # lock), so each agent's list sorted by start is what _overlaps expects.
    for agent_id, s, e in sorted(rows, key=lambda r: (r[0], r[1])):
        busy.setdefault(agent_id, []).append((s, e))
    return busy


def _overlaps(intervals: list[tuple], starts: list[datetime], s: datetime, e: datetime) -> bool:
    # intervals are sorted by start and never overlap each other: check neighbours.
    i = bisect_left(starts, e)
    return i > 0 and intervals[i - 1][1] > s


def free_slots(
    organisation: Organisation,
    motif: Motif,
    start: datetime,
    end: datetime,
    lieu_id: int | None = None,
    agent_id: int | None = None,
    now: datetime | None = None,
    exclude_rdv_id: int | None = None,
) -> list[Slot]:
    """Every free slot of ``motif`` starting in [start, end), soonest first.

    Slots start at the beginning of each opening range and step by the motif's
    duration; a slot must end inside the range, start after ``now``, and not
    overlap any booked rdv of its agent (at any lieu) but ``exclude_rdv_id``
    (the rdv being moved, which frees its own time).
    """
    start, end = require_aware(start), require_aware(end)
    if end - start > MAX_RANGE:
        raise ValueError("période trop longue (62 jours au plus)")
    now = require_aware(now or utcnow())
    tz = organisation.tz
    query = select(OpeningHours).where(
        OpeningHours.organisation_id == organisation.id,
        OpeningHours.motifs.any(id=motif.id),
    )
    if lieu_id is not None:
        query = query.where(OpeningHours.lieu_id == lieu_id)
    if agent_id is not None:
        query = query.where(OpeningHours.agent_id == agent_id)
    # Plain tuples: the loop below runs for every range of every day.
    ranges = db.session.execute(
        query.with_only_columns(
            OpeningHours.weekday,
            OpeningHours.start_time,
            OpeningHours.end_time,
            OpeningHours.agent_id,
            OpeningHours.lieu_id,
        )
    ).all()
    if not ranges:
        return []
    duration = timedelta(minutes=motif.duration_minutes)
    busy = busy_intervals(
        {r.agent_id for r in ranges}, start - duration, end + duration, exclude_rdv_id
    )
    busy_starts = {a: [s for s, _ in iv] for a, iv in busy.items()}
    by_weekday: dict[int, list[tuple]] = {}
    for r in ranges:
        by_weekday.setdefault(r.weekday, []).append(tuple(r))

    found: set[tuple] = set()
    to_utc: dict[datetime, datetime] = {}  # local wall time -> UTC, shared by all agents

    def utc(day: date, at) -> datetime:
        wall = datetime.combine(day, at)
        value = to_utc.get(wall)
        if value is None:
            value = to_utc[wall] = localize(wall, tz).astimezone(UTC)
        return value

    day: date = start.astimezone(tz).date()
    last_day: date = end.astimezone(tz).date()
    while day <= last_day:
        for _weekday, start_time, end_time, range_agent, range_lieu in by_weekday.get(
            day.weekday(), ()
        ):
            range_end = utc(day, end_time)
            cursor = utc(day, start_time)
            intervals, starts = busy.get(range_agent, []), busy_starts.get(range_agent, [])
            while cursor + duration <= range_end:
                slot_end = cursor + duration
                if (
                    start <= cursor < end
                    and cursor > now
                    and not (intervals and _overlaps(intervals, starts, cursor, slot_end))
                ):
                    found.add((cursor, range_agent, range_lieu, slot_end))
                cursor = slot_end
        day += timedelta(days=1)
    return [Slot(s, e, a, lieu) for s, a, lieu, e in sorted(found)]


def _day_ranges(organisation, motif, agent_id: int, lieu_id: int, weekday: int) -> list:
    """(start_time, end_time) of the agent's ranges for ``motif`` at ``lieu_id`` on ``weekday``."""
    return db.session.execute(
        select(OpeningHours.start_time, OpeningHours.end_time).where(
            OpeningHours.organisation_id == organisation.id,
            OpeningHours.agent_id == agent_id,
            OpeningHours.lieu_id == lieu_id,
            OpeningHours.weekday == weekday,
            OpeningHours.motifs.any(id=motif.id),
        )
    ).all()


def is_within_opening_hours(
    organisation: Organisation, motif: Motif, agent_id: int, lieu_id: int, starts_at: datetime
) -> bool:
    """Whether [starts_at, +duration) lies inside one of the agent's ranges for this motif."""
    tz = organisation.tz
    local = starts_at.astimezone(tz)
    ends_local = (starts_at + timedelta(minutes=motif.duration_minutes)).astimezone(tz)
    for r in _day_ranges(organisation, motif, agent_id, lieu_id, local.weekday()):
        if (
            local.date() == ends_local.date()
            and r.start_time <= local.time().replace(tzinfo=None)
            and ends_local.time().replace(tzinfo=None) <= r.end_time
        ):
            return True
    return False


def grid_starts_near(
    organisation: Organisation, motif: Motif, agent_id: int, lieu_id: int, starts_at: datetime
) -> list[datetime]:
    """``[starts_at]`` when it starts a slot of the grid, else the grid starts around it.

    The grid is the one :func:`free_slots` walks (booked rdvs aside): the
    agent's ranges that day for this motif at this lieu. Around means the last
    start before and the first after, in the same range (none, one or two).
    """
    tz = organisation.tz
    day = starts_at.astimezone(tz).date()
    duration = timedelta(minutes=motif.duration_minutes)
    near: set[datetime] = set()
    for start_time, end_time in _day_ranges(organisation, motif, agent_id, lieu_id, day.weekday()):
        first = localize(datetime.combine(day, start_time), tz)
        last = localize(datetime.combine(day, end_time), tz) - duration
        if last < first:
            continue
        steps = (starts_at - first) // duration
        if first + steps * duration == starts_at and first <= starts_at <= last:
            return [starts_at]
        for k in (steps, steps + 1):
            candidate = first + k * duration
            if first <= candidate <= last:
                near.add(candidate)
    return sorted(near)
