"""Logging hygiene: phone numbers and email addresses never reach the logs in clear.

Usagers' contact details are personal data; logs are kept longer and read by
more people than the database. :class:`PersonalDataFilter` rewrites a record's
message (and its traceback) with every phone number and email masked:
``+33612345678`` becomes ``+*********78`` and ``lea@example.org`` becomes
``l***@example.org``.

:func:`install_log_masking` applies it to every handler of the root logger and
to every record at creation (the record factory), so handlers added later —
gunicorn's, RQ's, pytest's — receive masked records too.
"""

from __future__ import annotations

import logging
import re

# An email: local part @ domain with at least one dot.
_EMAIL = re.compile(r"(?<![\w.+-])([\w.+-])[\w.+-]*@((?:[\w-]+\.)+[\w-]{2,})", re.UNICODE)
# Phone numbers as they appear in logs, payloads and URLs:
#  - international with + (or %2B, URL-encoded) or 00: +33612345678, 0033612345678;
#  - French national, with or without separators: 06 12 34 56 78, 06.12.34.56.78, 0612345678;
#  - bare international digits as Vonage sends them (msisdn): 33612345678 (11 to 15 digits).
_PHONE = re.compile(
    r"(?<![\w+%])"
    r"(?:(?:\+|%2B|00)\d[\d .-]{5,18}\d"
    r"|0[1-9](?:[ .-]?\d{2}){4}"
    r"|\d{11,15})"
    r"(?!\w)",
    re.IGNORECASE,
)


def _mask_phone(match: re.Match) -> str:
    text = match.group(0)
    digits = [i for i, ch in enumerate(text) if ch.isdigit()]
    keep = set(digits[-2:])
    # Keep the international prefix marker and the last two digits only.
    prefix = "+" if text.startswith("+") else ("%2B" if text[:3].upper() == "%2B" else "")
    body = text[len(prefix) :]
    offset = len(prefix)
    return prefix + "".join(
        ch if (i + offset) in keep or not ch.isdigit() else "*" for i, ch in enumerate(body)
    )


def _mask_email(match: re.Match) -> str:
    return f"{match.group(1)}***@{match.group(2)}"


def mask_personal_data(text: str) -> str:
    """Return ``text`` with phone numbers and email addresses masked."""
    if not text:
        return text
    return _PHONE.sub(_mask_phone, _EMAIL.sub(_mask_email, text))


class PersonalDataFilter(logging.Filter):
    """Mask phone numbers and emails in a record's message and traceback; never drops a record."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        mask_record(record)
        return True


def mask_record(record: logging.LogRecord) -> logging.LogRecord:
    """Mask ``record`` in place (idempotent) and return it."""
    if getattr(record, "_personal_data_masked", False):
        return record
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a bad format string must not break logging
        message = str(record.msg)
    record.msg = mask_personal_data(message)
    record.args = None
    if record.exc_info and not record.exc_text:
        # The formatter uses exc_text when set: give it the masked traceback.
        record.exc_text = PersonalDataFilter._formatter.formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = mask_personal_data(record.exc_text)
    if record.stack_info:
        record.stack_info = mask_personal_data(record.stack_info)
    record._personal_data_masked = True
    return record


_installed_factory = False


def install_log_masking() -> None:
    """Mask personal data in every log record (idempotent)."""
    global _installed_factory
    root = logging.getLogger()
    for handler in root.handlers:
        if not any(isinstance(f, PersonalDataFilter) for f in handler.filters):
            handler.addFilter(PersonalDataFilter())
    if not _installed_factory:
        previous = logging.getLogRecordFactory()

        def factory(*args, **kwargs):
            return mask_record(previous(*args, **kwargs))

        logging.setLogRecordFactory(factory)
        _installed_factory = True
