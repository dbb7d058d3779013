"""SMS text helpers: GSM-7 sanitising and segment counting (pure functions)."""

from __future__ import annotations

import unicodedata

# GSM 03.38 basic character set (the escape character 0x1B excluded: it only
# introduces the extension table and is never text on its own).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Extension table: each of these costs two septets (escape + char).
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")

GSM7 = "GSM-7"
UCS2 = "UCS-2"

_SINGLE_GSM7 = 160
_MULTI_GSM7 = 153  # 7 septets go to the concatenation header
_SINGLE_UCS2 = 70
_MULTI_UCS2 = 67

# Replacements that keep the meaning. Letters with accents outside GSM-7 are
# handled generically below (decomposition), this table covers the rest.
_REPLACEMENTS: dict[str, str] = {
    "œ": "oe",
    "Œ": "OE",
    "‘": "'",
    "’": "'",
    "‚": "'",
    "‛": "'",
    "′": "'",
    "`": "'",
    "´": "'",
    "‹": "'",
    "›": "'",
    "“": '"',
    "”": '"',
    "„": '"',
    "‟": '"',
    "″": '"',
    "«": '"',
    "»": '"',
    "¨": '"',
    "‐": "-",
    "‑": "-",
    "‒": "-",
    "–": "-",
    "—": "-",
    "―": "-",
    "−": "-",
    "¬": "-",
    "¯": "-",
    "…": "...",
    "•": "-",
    "·": ".",
    "\t": " ",
    "\u00a0": " ",  # no-break space
    "\u202f": " ",  # narrow no-break space (French typography before ; : ! ?)
    "\u2007": " ",
    "\u2009": " ",
    "\u200a": " ",
    "\u3000": " ",
    "\u00ad": "",  # soft hyphen
    "\u200b": "",  # zero-width space
    "\u200c": "",
    "\u200d": "",
    "\u2060": "",
    "\ufeff": "",
    "©": "(c)",
    "®": "(R)",
    "™": "TM",
    "°": "o",  # "n°" -> "no"
    "º": "o",
    "ª": "a",
    "±": "+/-",
    "×": "x",
    "÷": "/",
    "¼": "1/4",
    "½": "1/2",
    "¾": "3/4",
    "¢": "c",
    "¦": "|",
    "µ": "u",
    "¶": "",
    "¸": "",
    "Ð": "D",
    "ð": "d",
    "Þ": "Th",
    "þ": "th",
    "ç": "c",  # only the capital Ç is in GSM-7
}


def _is_gsm7_char(ch: str) -> bool:
    return ch in GSM7_BASIC or ch in GSM7_EXTENSION


def _sanitise_char(ch: str) -> str:
    if _is_gsm7_char(ch):
        return ch
    if ch in _REPLACEMENTS:
        return _REPLACEMENTS[ch]
    category = unicodedata.category(ch)
    if category in ("Cc", "Cf"):
        # Control and format characters carry no meaning in an SMS.
        return ""
    if category == "Zs":
        return " "
    # ê -> e, Á -> A, ² -> 2...: compatibility decomposition minus the accents.
    decomposed = "".join(
        c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c)
    )
    if decomposed and all(_is_gsm7_char(c) for c in decomposed):
        return decomposed
    # No sensible replacement (emoji, CJK...): keep it, the SMS goes UCS-2.
    return ch


def to_gsm7(text: str) -> str:
    """Sanitise ``text`` to the GSM-7 alphabet where the meaning is kept.

    Characters of GSM-7 (é, è, à, ù, Ç, ä, ö, ñ, ü...) stay; other accented
    letters lose their accent (ê -> e, ç -> c); typographic quotes, dashes,
    ellipses and special spaces become their plain forms; "œ" becomes "oe".
    Characters without a sensible replacement (emoji, CJK) are kept, in which
    case the text is not GSM-7 and will be sent as UCS-2.
    """
    return "".join(_sanitise_char(ch) for ch in text)


def is_gsm7(text: str) -> bool:
    """Tell whether ``text`` only uses GSM-7 basic and extension characters."""
    return all(_is_gsm7_char(ch) for ch in text)


def _pack(units: list[int], size: int) -> int:
    """Count segments of ``size`` units, never splitting one character's units."""
    segments, used = 1, 0
    for width in units:
        if used + width > size:
            segments += 1
            used = 0
        used += width
    return segments


def count_segments(text: str) -> tuple[str, int]:
    """Return the encoding (``"GSM-7"`` or ``"UCS-2"``) and number of SMS segments.

    GSM-7: up to 160 septets in one segment, else segments of 153; extension
    characters (``^{}\\[~]|€``) cost 2 septets and are never split across
    segments. UCS-2: up to 70 UTF-16 code units in one segment, else segments
    of 67; a surrogate pair (emoji) is never split. Empty text is 1 segment.
    """
    if is_gsm7(text):
        units = [2 if ch in GSM7_EXTENSION else 1 for ch in text]
        single, multi, encoding = _SINGLE_GSM7, _MULTI_GSM7, GSM7
    else:
        units = [2 if ord(ch) > 0xFFFF else 1 for ch in text]
        single, multi, encoding = _SINGLE_UCS2, _MULTI_UCS2, UCS2
    total = sum(units)
    if total <= single:
        return encoding, 1
    return encoding, _pack(units, multi)
