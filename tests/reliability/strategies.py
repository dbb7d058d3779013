"""Hypothesis strategies for hostile input: JSON values, dates, phone numbers, form text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import strategies as st

# Any Unicode, lone surrogates and NUL included (JSON can carry them all).
any_text = st.text(max_size=60) | st.text(min_size=200, max_size=5000)
# Form fields travel as UTF-8: lone surrogates cannot be encoded by the client.
form_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60
) | st.sampled_from(
    ["", " ", "\x00", "0", "-1", "²", "١٢", "99999999999", "1e3", "1.5", "0x10", "x" * 3000]
)

huge_ints = st.sampled_from(
    [0, -1, 2**31 - 1, 2**31, 2**63 - 1, 2**63, 2**64, 10**30, -(2**63) - 1]
)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | huge_ints
    | st.floats(allow_nan=True, allow_infinity=True)
    | any_text
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)

# Date-time strings that are ISO-looking, edge-case or garbage.
_offsets = st.sampled_from(
    [
        None,
        UTC,
        timezone(timedelta(hours=14)),
        timezone(-timedelta(hours=23, minutes=59)),
        timezone(timedelta(hours=5, minutes=45)),
    ]
)


@st.composite
def _iso_datetimes(draw) -> str:
    naive = draw(
        st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59))
    )
    tz = draw(_offsets)
    value = naive.replace(tzinfo=tz) if tz else naive
    sep = draw(st.sampled_from(["T", " "]))
    text = value.isoformat(sep=sep)
    return text.replace("+00:00", "Z") if draw(st.booleans()) else text


SPECIAL_DATES = [
    "0000-01-01T00:00:00",
    "0001-01-01T00:00:00",
    "0001-01-01T00:30:00+00:00",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59",
    "9999-12-31T23:59:59-23:59",
    "9999-12-31",
    "10000-01-01T00:00:00",
    "2026-03-29T02:30:00",  # inside the spring-forward gap in Paris
    "2026-10-25T02:30:00",  # ambiguous autumn hour in Paris
    "2026-02-30T10:00:00",
    "2026-13-01T10:00:00",
    "2026-06-05T24:00:00",
    "2026-06-05T10:00:00+25:00",
    "2026-06-05T10:00:00+02:00",
    "2026-06-05T10:00:00Z",
    "2026-06-05",
    "2026-W23-5T10:00",
    "",
    " ",
    "now",
    "null",
    "2026-06-05T10:00:00+02:00\x00",
    "２０２６-06-05T10:00:00",
]
date_strings = st.sampled_from(SPECIAL_DATES) | _iso_datetimes() | any_text

phone_strings = (
    st.sampled_from(
        [
            "+33612345678",
            "0612345678",
            "06 12 34 56 78",
            "06.12.34.56.78",
            "0033612345678",
            "+33 6 12 34 56 78",
            "0692123456",
            "+262692123456",
            "0696123456",
            "+590690123456",
            "+447700900000",
            "+1",
            "+",
            "00",
            "0",
            "+33612345678901234567890",
            "06123456789",
            "+99912345678",
            "tel:+33612345678",
            "+33６12345678",
            "0612345678\x00",
            "٠٦١٢٣٤٥٦٧٨",
            "",
        ]
    )
    | st.text(alphabet="0123456789 +-.()", max_size=40)
    | any_text
)
