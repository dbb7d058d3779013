"""The one place that decides when a message is due.

Rules (SPEC section 2):

* reminders are computed from the rdv's start in the organisation's local
  wall-clock time, so "48h before" a 10:00 appointment is 10:00 two days
  before even across a daylight-saving change;
* a reminder whose time is already past when it is planned is not created;
* no automatic SMS during quiet hours (default 20:00-08:00 local): a reminder
  that falls inside is moved *earlier*, to the last minute before quiet hours
  begin, so it is never later than promised; a confirmation, ``moved`` or
  ``cancelled`` SMS waits for the end of quiet hours;
* replies to an inbound SMS and email are never held back (the usager just
  wrote to us; email does not wake anyone).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from gateway.timeutil import UTC, localize, require_aware

_OFFSET = re.compile(r"^\s*(\d{1,4})\s*([dhm])\s*$", re.IGNORECASE)
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}
_QUIET = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")

# Kinds that are held until morning (rather than moved earlier) in quiet hours.
HELD_KINDS = frozenset({"confirmation", "moved", "cancelled"})
# Kinds moved earlier (never later than promised) out of quiet hours.
REMINDER_KINDS = frozenset({"reminder", "second_reminder"})
# Values that switch an optional setting off.
OFF_VALUES = frozenset({"", "off", "none", "0"})
# Kinds that are never held: the usager is waiting for the answer (a reply to their
# SMS, the code of the online booking they are making right now).
IMMEDIATE_KINDS = frozenset({"reply", "agent_alert", "verification"})


def parse_offsets(value: str) -> list[timedelta]:
    """Parse ``"48h"`` or ``"2d,2h"`` into offsets, largest first.

    Raises ValueError with a readable message on anything else.
    """
    offsets = []
    for part in (value or "").split(","):
        if not part.strip():
            continue
        match = _OFFSET.match(part)
        if not match:
            raise ValueError(f"délai de rappel invalide : {part.strip()!r} (ex. 48h, 2d, 90m)")
        amount, unit = int(match.group(1)), match.group(2).lower()
        offsets.append(timedelta(**{_UNITS[unit]: amount}))
    if any(o <= timedelta(0) for o in offsets):
        raise ValueError("un délai de rappel doit être positif")
    return sorted(set(offsets), reverse=True)


@dataclass(frozen=True)
class QuietHours:
    """A nightly window in local time, e.g. 20:00-08:00 (may cross midnight)."""

    start: time
    end: time

    @classmethod
    def parse(cls, value: str | None) -> QuietHours | None:
        """Parse ``HH:MM-HH:MM``; empty, ``none`` or ``off`` mean no quiet hours."""
        if value is None or value.strip().lower() in {"", "none", "off"}:
            return None
        match = _QUIET.match(value)
        if not match:
            raise ValueError(f"heures calmes invalides : {value!r} (format HH:MM-HH:MM)")
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
            raise ValueError(f"heures calmes invalides : {value!r}")
        if (h1, m1) == (h2, m2):
            return None
        return cls(time(h1, m1), time(h2, m2))

    def contains(self, local: time) -> bool:
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def window_around(self, instant: datetime, tz: ZoneInfo) -> tuple[datetime, datetime] | None:
        """The quiet window (start, end) in UTC containing ``instant``, or None."""
        local = instant.astimezone(tz)
        if not self.contains(local.timetz().replace(tzinfo=None)):
            return None
        day = local.date()
        if self.start < self.end or local.time() >= self.start:
            start_day = day
        else:
            start_day = day - timedelta(days=1)
        end_day = start_day if self.start < self.end else start_day + timedelta(days=1)
        start = localize(datetime.combine(start_day, self.start), tz)
        end = localize(datetime.combine(end_day, self.end), tz)
        return start.astimezone(UTC), end.astimezone(UTC)


def reminder_time(starts_at: datetime, offset: timedelta, tz: ZoneInfo) -> datetime:
    """``offset`` before ``starts_at``, counted in local wall-clock time."""
    local_start = require_aware(starts_at).astimezone(tz).replace(tzinfo=None)
    return localize(local_start - offset, tz).astimezone(UTC)


def apply_quiet_hours(
    send_at: datetime, kind: str, channel: str, quiet: QuietHours | None, tz: ZoneInfo
) -> datetime:
    """Move an SMS out of quiet hours: reminders earlier, other kinds to the morning."""
    send_at = require_aware(send_at)
    if quiet is None or channel != "sms" or kind in IMMEDIATE_KINDS:
        return send_at
    window = quiet.window_around(send_at, tz)
    if window is None:
        return send_at
    start, end = window
    if kind in REMINDER_KINDS:
        return start - timedelta(minutes=1)
    return end


def plan_reminders(
    starts_at: datetime,
    offsets: list[timedelta],
    now: datetime,
    tz: ZoneInfo,
    quiet: QuietHours | None,
    channel: str,
) -> list[datetime]:
    """The send times of the reminders for one channel, past ones left out.

    A reminder moved earlier by quiet hours into the past is left out too: the
    confirmation sent at booking already told the usager.
    """
    now = require_aware(now)
    times = []
    for offset in offsets:
        at = apply_quiet_hours(reminder_time(starts_at, offset, tz), "reminder", channel, quiet, tz)
        if at > now and at < starts_at and at not in times:
            times.append(at)
    return sorted(times)


def immediate_time(
    kind: str, channel: str, now: datetime, quiet: QuietHours | None, tz: ZoneInfo
) -> datetime:
    """When a message meant to go "now" may go (held to morning if it is an SMS at night)."""
    return apply_quiet_hours(now, kind, channel, quiet, tz)


def is_sendable_now(
    kind: str, channel: str, now: datetime, quiet: QuietHours | None, tz: ZoneInfo
) -> datetime | None:
    """Send-time re-check: None if it may go now, else the instant to wait for.

    A reminder found inside quiet hours at send time (late queue, worker down)
    waits for the morning: going later than promised beats waking people.
    """
    if quiet is None or channel != "sms" or kind in IMMEDIATE_KINDS:
        return None
    window = quiet.window_around(now, tz)
    return None if window is None else window[1]
