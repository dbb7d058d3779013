"""The interface every SMS and email adapter implements, and the data it trades.

Adapters take plain data in and give plain data (or a ``ProviderError``) out:
they know nothing of the database, Flask or the scheduler.
"""

from __future__ import annotations

import logging
import re
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import requests

from .transport import AnswerLost, TransportError

logger = logging.getLogger("providers")


class ProviderError(Exception):
    """A provider refused or could not take a message.

    ``transient`` tells the scheduler whether trying again (later, or with the
    next provider) may succeed; ``opted_out`` that the recipient asked not to
    receive SMS any more (e.g. sent STOP), so the usager should be flagged.
    """

    def __init__(
        self,
        provider: str,
        message: str,
        code: str | int | None = None,
        *,
        transient: bool = True,
        opted_out: bool = False,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.code = None if code is None else str(code)
        self.message = message
        self.transient = transient
        self.opted_out = opted_out

    def __str__(self) -> str:
        code = f" [{self.code}]" if self.code else ""
        return f"{self.provider}{code}: {self.message}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(provider={self.provider!r}, code={self.code!r}, "
            f"message={self.message!r}, transient={self.transient}, opted_out={self.opted_out})"
        )


class TransientProviderError(ProviderError):
    """Trying again later or elsewhere may work (timeout, 5xx, throttling...)."""

    def __init__(
        self, provider: str, message: str, code: str | int | None = None, *, opted_out: bool = False
    ) -> None:
        super().__init__(provider, message, code, transient=True, opted_out=opted_out)


class PermanentProviderError(ProviderError):
    """Trying again will not work (invalid number, unsubscribed recipient...)."""

    def __init__(
        self, provider: str, message: str, code: str | int | None = None, *, opted_out: bool = False
    ) -> None:
        super().__init__(provider, message, code, transient=False, opted_out=opted_out)


@dataclass(frozen=True)
class OutboundSms:
    """One SMS to send. ``reference`` is our message id, echoed back in receipts."""

    reference: str
    to: str  # E.164 with the leading +
    body: str
    sender: str | None = None  # overrides the adapter's default sender


@dataclass(frozen=True)
class OutboundEmail:
    """One email to send; ``ics`` is an iCalendar text attached as ``rdv.ics``."""

    reference: str
    to: str
    subject: str
    text: str
    html: str | None = None
    ics: str | None = None
    reply_to: str | None = None


@dataclass(frozen=True)
class SendResult:
    """What a provider answered when it accepted a message."""

    provider: str
    provider_message_id: str | None
    segments: int | None = None
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Receipt:
    """A delivery receipt, parsed; ``status`` is ours (None = change nothing)."""

    provider: str
    provider_message_id: str | None
    reference: str | None
    raw_status: str
    status: str | None
    error_code: str | None
    error_message: str | None
    opted_out: bool = False
    part: int | None = None
    parts: int | None = None
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InboundSms:
    """An SMS sent to us; long messages may come in parts to be joined by the caller."""

    provider: str
    provider_message_id: str | None
    from_number: str  # E.164 with the leading +
    to_number: str
    body: str
    concat_ref: str | None = None
    part: int | None = None
    parts: int | None = None
    raw: dict[str, Any] = field(default_factory=dict)


_LONG_DIGITS = re.compile(r"\+?\d[\d ]{4,}\d")


def mask_phone(number: str | None) -> str:
    """Hide a phone number for logs, keeping its last 2 digits: ``+*********78``."""
    if not number:
        return ""
    digits = [i for i, ch in enumerate(number) if ch.isdigit()]
    keep = set(digits[-2:])
    return "".join(ch if (i in keep or not ch.isdigit()) else "*" for i, ch in enumerate(number))


def mask_email(address: str | None) -> str:
    """Hide an email address for logs, keeping its first letter and domain."""
    if not address:
        return ""
    local, at, domain = address.partition("@")
    return f"{local[:1]}***{at}{domain}"


def _mask_text(text: str) -> str:
    # Provider error texts often quote the recipient's number.
    return _LONG_DIGITS.sub(lambda m: mask_phone(m.group(0)), text)


def _wrap_unexpected(provider: str, exc: Exception) -> ProviderError:
    """Turn an exception an adapter did not classify into a transient error.

    Unknown failures are treated as transient so that the scheduler retries and
    then fails over, rather than dropping a reminder because of a bug or a
    network hiccup.
    """
    kind = type(exc).__name__
    if isinstance(exc, AnswerLost):
        return TransientProviderError(
            provider, f"no answer, the provider may have taken the message: {exc}", exc.code
        )
    if isinstance(exc, TransportError):
        return TransientProviderError(provider, f"connection error: {exc}", exc.code)
    if isinstance(exc, requests.Timeout):
        return TransientProviderError(provider, f"timeout: {exc}", code="timeout")
    if isinstance(exc, requests.ConnectionError):
        return TransientProviderError(provider, f"connection error: {exc}", code="connection")
    return TransientProviderError(provider, f"unexpected {kind}: {exc}", code=kind)


class _TimedProvider:
    name: str = "base"

    def _call(
        self, kind: str, reference: str, recipient: str, func: Any, message: Any
    ) -> SendResult:
        started = time.monotonic()
        try:
            result = func(message)
        except ProviderError as exc:
            error = exc
        except Exception as exc:  # noqa: BLE001 - every failure must become a ProviderError
            error = _wrap_unexpected(self.name, exc)
            error.__cause__ = exc
        else:
            logger.info(
                "%s sent via %s ref=%s to=%s id=%s segments=%s in %.0f ms",
                kind,
                self.name,
                reference,
                recipient,
                result.provider_message_id,
                result.segments,
                (time.monotonic() - started) * 1000,
            )
            return result
        logger.warning(
            "%s not sent via %s ref=%s to=%s %s code=%s: %s in %.0f ms",
            kind,
            self.name,
            reference,
            recipient,
            "transient" if error.transient else "permanent",
            error.code,
            _mask_text(error.message),
            (time.monotonic() - started) * 1000,
        )
        raise error


class SmsProvider(_TimedProvider, ABC):
    """An SMS adapter. Call ``send_sms``; subclasses implement ``_send_sms``."""

    name: str = "sms"

    def send_sms(self, sms: OutboundSms) -> SendResult:
        """Send one SMS; raise a ``ProviderError`` subclass on any failure."""
        return self._call("sms", sms.reference, mask_phone(sms.to), self._send_sms, sms)

    @abstractmethod
    def _send_sms(self, sms: OutboundSms) -> SendResult:
        """Send through the provider; raise ProviderError for known failures."""


class EmailProvider(_TimedProvider, ABC):
    """An email adapter. Call ``send_email``; subclasses implement ``_send_email``."""

    name: str = "email"

    def send_email(self, email: OutboundEmail) -> SendResult:
        """Send one email; raise a ``ProviderError`` subclass on any failure."""
        return self._call("email", email.reference, mask_email(email.to), self._send_email, email)

    @abstractmethod
    def _send_email(self, email: OutboundEmail) -> SendResult:
        """Send through the provider; raise ProviderError for known failures."""
