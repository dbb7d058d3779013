"""Time helpers: aware datetimes only, UTC inside, the organisation's zone at the edges."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

# Dates people type are in this range; outside it, date arithmetic (time zones,
# slot ranges, reminders) could overflow Python's calendar, so they are refused.
MIN_YEAR = 1900
MAX_YEAR = 2999


def utcnow() -> datetime:
    """The current instant, timezone-aware in UTC."""
    return datetime.now(UTC)


def require_aware(value: datetime) -> datetime:
    """Return ``value`` in UTC; refuse naive datetimes, which are always a bug here."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime refused: {value!r}")
    return value.astimezone(UTC)


def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def parse_iso(value: str, default_zone: ZoneInfo) -> datetime:
    """Parse ISO 8601; a value without offset is read in ``default_zone``.

    Raises ValueError on anything that is not a date-time between the years
    MIN_YEAR and MAX_YEAR.
    """
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    _check_year(parsed.year)
    if parsed.tzinfo is None:
        parsed = localize(parsed, default_zone)
    return parsed.astimezone(UTC)


def parse_date(value: str) -> date:
    """Parse an ISO date (``2026-06-05``); ValueError outside MIN_YEAR..MAX_YEAR."""
    parsed = date.fromisoformat(value.strip())
    _check_year(parsed.year)
    return parsed


def _check_year(year: int) -> None:
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise ValueError(f"year {year} outside {MIN_YEAR}-{MAX_YEAR}")


def localize(naive: datetime, tz: ZoneInfo) -> datetime:
    """Attach ``tz`` to a local wall-clock time, resolving DST gaps and folds.

    A wall time inside a spring-forward gap does not exist; it is moved forward
    by the gap (02:30 becomes 03:30), as people would read it. An ambiguous
    autumn time takes its first occurrence (fold=0).
    """
    aware = naive.replace(tzinfo=tz, fold=0)
    roundtrip = aware.astimezone(UTC).astimezone(tz)
    if roundtrip.replace(tzinfo=None) != naive:
        # In a gap: the UTC round trip lands after it; that is the time people mean.
        return roundtrip
    return aware
