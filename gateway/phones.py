"""Phone numbers: parsed with ``phonenumbers``, French default region, stored E.164.

French overseas départements (Réunion, Guadeloupe, Martinique, Guyane, Mayotte,
Saint-Pierre-et-Miquelon…) have their own regions; a national number such as
``0692 12 34 56`` is found by trying them after metropolitan France.
"""

from __future__ import annotations

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType

# Metropolitan France first, then the overseas regions reachable with a 0 prefix.
REGIONS = ("FR", "RE", "YT", "GP", "MQ", "GF", "PM", "BL", "MF", "NC", "PF", "WF")
_MOBILE_TYPES = {PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE}


class InvalidPhone(ValueError):
    """A number that is not a valid phone number (message in French)."""


def parse_phone(raw: str) -> phonenumbers.PhoneNumber:
    """Parse a number written in any common French form; raise InvalidPhone."""
    text = (raw or "").strip()
    if not text:
        raise InvalidPhone("Numéro de téléphone vide.")
    if len(text) > 32:
        raise InvalidPhone("Numéro de téléphone trop long.")
    if text.startswith("00"):
        text = "+" + text[2:]
    for region in REGIONS:
        try:
            number = phonenumbers.parse(text, region)
        except NumberParseException:
            raise InvalidPhone(f"« {raw} » n'est pas un numéro de téléphone.") from None
        if phonenumbers.is_valid_number(number):
            return number
        if text.startswith("+"):
            break  # an international number has one reading only
    raise InvalidPhone(f"« {raw} » n'est pas un numéro de téléphone valide.")


def normalize_phone(raw: str) -> str:
    """Return the E.164 form (``+33612345678``) or raise InvalidPhone."""
    return phonenumbers.format_number(parse_phone(raw), phonenumbers.PhoneNumberFormat.E164)


def is_mobile(e164: str | None) -> bool:
    """Whether an E.164 number can receive SMS (mobile only)."""
    if not e164:
        return False
    try:
        number = phonenumbers.parse(e164, None)
    except NumberParseException:
        return False
    return phonenumbers.number_type(number) in _MOBILE_TYPES


def display_phone(e164: str | None) -> str:
    """A French reader's form: ``06 12 34 56 78`` (national) or international."""
    if not e164:
        return ""
    try:
        number = phonenumbers.parse(e164, None)
    except NumberParseException:
        return e164
    if phonenumbers.region_code_for_number(number) == "FR":
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def mask_phone(e164: str | None) -> str:
    """For logs: keep the last two digits only."""
    if not e164:
        return ""
    return "*" * max(len(e164) - 2, 0) + e164[-2:]
