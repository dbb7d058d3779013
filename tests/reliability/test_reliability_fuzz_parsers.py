"""Fuzzing the parsers every input goes through: phone numbers and ISO 8601 dates."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import assume, example, given
from hypothesis import strategies as st

from gateway.log_privacy import mask_personal_data
from gateway.phones import InvalidPhone, display_phone, is_mobile, mask_phone, normalize_phone
from gateway.timeutil import localize, parse_iso

from .strategies import date_strings, phone_strings

ZONES = st.sampled_from(
    [
        ZoneInfo(z)
        for z in (
            "Europe/Paris",
            "America/Cayenne",
            "Indian/Reunion",
            "Pacific/Noumea",
            "Pacific/Kiritimati",
            "UTC",
        )
    ]
)
E164 = re.compile(r"^\+[1-9]\d{6,14}$")


@given(raw=phone_strings)
@example("0612345678")
@example("+33612345678\x00")
def test_normalize_phone_returns_e164_or_refuses(raw):
    try:
        number = normalize_phone(raw)
    except InvalidPhone as exc:
        assert str(exc)  # a French message for the form
        return
    assert E164.match(number), number
    assert normalize_phone(number) == number  # idempotent
    assert display_phone(number)
    assert mask_phone(number).endswith(number[-2:]) and number not in mask_phone(number)
    is_mobile(number)


# Metropolitan mobile ranges (0639 and 069x are overseas mobiles, read as such).
@given(
    national=st.from_regex(r"0(6[1245][0-9]|63[0-8]|7[5-8][0-9])[0-9]{6}", fullmatch=True),
    sep=st.sampled_from(["", " ", ".", "-"]),
)
def test_french_mobiles_in_every_common_form_give_one_number(national, sep):
    spaced = sep.join(national[i : i + 2] for i in range(0, 10, 2))
    e164 = "+33" + national[1:]
    assert normalize_phone(spaced) == e164
    assert normalize_phone("0033" + national[1:]) == e164
    assert is_mobile(e164)


@given(raw=date_strings, tz=ZONES)
@example("9999-12-31T23:59:59-23:59", ZoneInfo("UTC"))
@example("0001-01-01T00:30:00", ZoneInfo("Europe/Paris"))
def test_parse_iso_returns_aware_utc_in_a_sane_range_or_value_error(raw, tz):
    try:
        parsed = parse_iso(raw, tz)
    except ValueError:
        return
    assert parsed.tzinfo is not None and parsed.utcoffset() == timedelta(0)
    # Room for arithmetic around any accepted date (slot ranges, reminders) without overflow.
    parsed + timedelta(days=400), parsed - timedelta(days=400)
    parsed.astimezone(tz)
    assert parse_iso(parsed.isoformat(), tz) == parsed


@given(
    naive=st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2999, 12, 30)), tz=ZONES
)
def test_local_times_are_read_in_the_zone_and_gaps_move_forward(naive, tz):
    aware = localize(naive, tz)
    local = aware.astimezone(tz).replace(tzinfo=None)
    # Either the wall time exists and is kept, or it was in a gap and moves forward by less
    # than a day.
    assert local == naive or timedelta(0) < local - naive <= timedelta(hours=3)
    assert parse_iso(naive.isoformat(), tz) == aware.astimezone(UTC)


@given(
    text=st.text(max_size=80),
    local=st.from_regex(r"[a-z][a-z0-9.]{0,15}", fullmatch=True),
    number=st.from_regex(r"\+33[67][0-9]{8}", fullmatch=True),
)
def test_masking_removes_any_phone_or_email_from_a_log_line(text, local, number):
    email = f"{local}@example.org"
    assume(email not in text and number not in text)
    line = f"{text} {number} {text} <{email}> {number[1:]} 0{number[3:]}"
    masked = mask_personal_data(line)
    assert number not in masked and number[1:] not in masked and "0" + number[3:] not in masked
    assert email not in masked
