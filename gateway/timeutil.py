"""Time helpers: aware datetimes only, UTC inside, the organisation's zone at the edges."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo


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

    Raises ValueError on anything that is not a date-time.
    """
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = localize(parsed, default_zone)
    return parsed.astimezone(UTC)


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
