"""The reminder and quiet-hours rules, pinned with fixed instants (no clock)."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from scheduler.policy import (
    QuietHours,
    apply_quiet_hours,
    is_sendable_now,
    parse_offsets,
    plan_reminders,
    reminder_time,
)

PARIS = ZoneInfo("Europe/Paris")
REUNION = ZoneInfo("Indian/Reunion")

NIGHT = QuietHours.parse("20:00-08:00")


def local(tz, *args):
    return datetime(*args, tzinfo=tz)


def test_parse_offsets_accepts_the_spec_forms_largest_first():
    assert parse_offsets("48h") == [timedelta(hours=48)]
    assert parse_offsets("2h, 2d") == [timedelta(days=2), timedelta(hours=2)]
    assert parse_offsets("90m") == [timedelta(minutes=90)]


@pytest.mark.parametrize("bad", ["48", "h", "2w", "-2h", "0h", "2d;2h"])
def test_parse_offsets_refuses_garbage(bad):
    with pytest.raises(ValueError):
        parse_offsets(bad)


def test_quiet_hours_parse():
    assert QuietHours.parse("20:00-08:00").contains(datetime(2026, 1, 1, 23, 0).time())
    assert not QuietHours.parse("20:00-08:00").contains(datetime(2026, 1, 1, 8, 0).time())
    assert QuietHours.parse("none") is None
    with pytest.raises(ValueError):
        QuietHours.parse("25:00-08:00")


def test_48h_before_is_counted_in_local_time_across_spring_forward():
    # Clocks go forward in Paris on Sunday 29 March 2026; the rdv is Monday 10:00.
    starts = local(PARIS, 2026, 3, 30, 10, 0)
    at = reminder_time(starts, timedelta(hours=48), PARIS)
    assert at.astimezone(PARIS) == local(PARIS, 2026, 3, 28, 10, 0)
    assert starts - at == timedelta(hours=47)  # one hour vanished that night


def test_48h_before_is_counted_in_local_time_across_fall_back():
    starts = local(PARIS, 2026, 10, 26, 10, 0)
    at = reminder_time(starts, timedelta(hours=48), PARIS)
    assert at.astimezone(PARIS).replace(tzinfo=None) == datetime(2026, 10, 24, 10, 0)
    assert starts - at == timedelta(hours=49)


def test_reunion_has_no_dst_and_its_own_quiet_hours():
    starts = local(REUNION, 2026, 3, 30, 10, 0)
    now = local(REUNION, 2026, 3, 20, 9, 0)
    [at] = plan_reminders(starts, [timedelta(hours=48)], now, REUNION, NIGHT, "sms")
    assert at == datetime(2026, 3, 28, 6, 0, tzinfo=UTC)  # 10:00 at UTC+4


def test_a_reminder_in_quiet_hours_moves_earlier_to_the_last_minute_before_them():
    starts = local(PARIS, 2026, 6, 12, 7, 30)  # 07:30 -> reminder 07:30 two days before: quiet
    now = local(PARIS, 2026, 6, 1, 12, 0)
    [at] = plan_reminders(starts, [timedelta(hours=48)], now, PARIS, NIGHT, "sms")
    assert at.astimezone(PARIS) == local(PARIS, 2026, 6, 9, 19, 59)


def test_a_reminder_in_the_evening_part_of_quiet_hours_moves_to_19_59_that_day():
    starts = local(REUNION, 2026, 6, 12, 21, 0)
    at = apply_quiet_hours(
        reminder_time(starts, timedelta(hours=48), REUNION), "reminder", "sms", NIGHT, REUNION
    )
    assert at.astimezone(REUNION) == local(REUNION, 2026, 6, 10, 19, 59)


def test_email_reminders_are_not_held_back():
    starts = local(PARIS, 2026, 6, 12, 7, 30)
    now = local(PARIS, 2026, 6, 1, 12, 0)
    [at] = plan_reminders(starts, [timedelta(hours=48)], now, PARIS, NIGHT, "email")
    assert at.astimezone(PARIS) == local(PARIS, 2026, 6, 10, 7, 30)


@pytest.mark.parametrize("kind", ["confirmation", "moved", "cancelled"])
def test_other_sms_wait_for_the_morning(kind):
    late = local(PARIS, 2026, 6, 1, 22, 15)
    assert apply_quiet_hours(late, kind, "sms", NIGHT, PARIS).astimezone(PARIS) == local(
        PARIS, 2026, 6, 2, 8, 0
    )
    early = local(PARIS, 2026, 6, 2, 6, 0)
    assert apply_quiet_hours(early, kind, "sms", NIGHT, PARIS).astimezone(PARIS) == local(
        PARIS, 2026, 6, 2, 8, 0
    )
    day = local(PARIS, 2026, 6, 2, 12, 0)
    assert apply_quiet_hours(day, kind, "sms", NIGHT, PARIS) == day


def test_replies_are_never_held():
    late = local(PARIS, 2026, 6, 1, 22, 15)
    assert apply_quiet_hours(late, "reply", "sms", NIGHT, PARIS) == late


def test_morning_after_a_dst_night_is_local_eight():
    late = local(PARIS, 2026, 3, 28, 23, 0)  # the spring-forward night
    assert apply_quiet_hours(late, "confirmation", "sms", NIGHT, PARIS).astimezone(PARIS) == local(
        PARIS, 2026, 3, 29, 8, 0
    )


def test_past_reminders_are_not_planned():
    starts = local(PARIS, 2026, 6, 12, 10, 0)
    now = local(PARIS, 2026, 6, 11, 10, 0)  # 24 h before: the 48 h reminder is past
    assert plan_reminders(starts, parse_offsets("2d,2h"), now, PARIS, NIGHT, "sms") == [
        local(PARIS, 2026, 6, 12, 8, 0).astimezone(UTC)
    ]


def test_a_reminder_pushed_into_the_past_by_quiet_hours_is_not_planned():
    starts = local(PARIS, 2026, 6, 12, 7, 0)
    # 10 h before is 21:00 on the 11th (quiet): moved to 19:59, which is already past at 20:30.
    now = local(PARIS, 2026, 6, 11, 20, 30)
    assert plan_reminders(starts, parse_offsets("10h"), now, PARIS, NIGHT, "sms") == []


def test_send_time_recheck_holds_a_late_reminder_until_morning():
    at = local(PARIS, 2026, 6, 1, 21, 0)
    assert is_sendable_now("reminder", "sms", at, NIGHT, PARIS).astimezone(PARIS) == local(
        PARIS, 2026, 6, 2, 8, 0
    )
    assert is_sendable_now("reminder", "email", at, NIGHT, PARIS) is None
    assert is_sendable_now("reminder", "sms", local(PARIS, 2026, 6, 1, 19, 0), NIGHT, PARIS) is None


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError):
        reminder_time(datetime(2026, 6, 1, 10, 0), timedelta(hours=48), PARIS)
