"""Vonage (Nexmo) SMS API adapter, status map, receipts, inbound and signatures.

Sending goes through the SDK (``vonage.sms.send``, its request and its error
classes) over our own transport: :class:`providers.transport.SingleSendAdapter`
replaces the SDK's ``requests`` adapter, because the SDK resends a POST up to
``pool_maxsize`` times when the connection closes before the answer, which
could send one SMS 64 times. Guarantee: one ``send_sms`` writes at most one
POST; a lost answer is a transient error and the scheduler decides whether to
try again.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import time
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from vonage import Auth, HttpClientOptions, Vonage
from vonage_http_client.errors import HttpRequestError, RateLimitedError, ServerError
from vonage_sms import SmsMessage
from vonage_sms.errors import PartialFailureError, SmsError

from . import status as st
from .base import (
    InboundSms,
    OutboundSms,
    PermanentProviderError,
    ProviderError,
    Receipt,
    SendResult,
    SmsProvider,
    TransientProviderError,
)
from .sms_text import is_gsm7
from .transport import SingleSendAdapter

NAME = "vonage"

# Vonage delivery receipt statuses -> ours. None = change nothing.
STATUS_MAP: dict[str, str | None] = {
    "delivered": st.DELIVERED,
    "accepted": st.SENT,
    "buffered": st.SENT,
    "expired": st.UNDELIVERED,
    "failed": st.UNDELIVERED,
    "rejected": st.FAILED,
    "unknown": None,
}

# Send-time `status` codes of the SMS API.
TRANSIENT_STATUSES = frozenset({"1", "5"})  # throttled, internal error
# Problems with our account (invalid credentials, account barred, no credit):
# not the recipient's fault, so transient, letting the scheduler fail over to
# the next provider rather than failing every message at once.
ACCOUNT_STATUSES = frozenset({"4", "8", "9"})
OPTED_OUT_STATUSES = frozenset({"7"})  # "Number barred": destination is blacklisted
SEND_ERRORS: dict[str, str] = {
    "1": "Throttled",
    "2": "Missing parameters",
    "3": "Invalid parameters",
    "4": "Invalid credentials",
    "5": "Internal error",
    "6": "Invalid message (unroutable)",
    "7": "Number barred",
    "8": "Partner account barred",
    "9": "Partner quota violation (insufficient credit)",
    "12": "Message too long",
    "15": "Invalid sender address",
    "29": "Non-whitelisted destination",
    "33": "Number de-activated",
    "34": "Invalid or unreachable destination",
}

# Delivery receipt `err-code` values.
RECEIPT_ERRORS: dict[str, str] = {
    "1": "Unknown error",
    "2": "Absent subscriber (temporary)",
    "3": "Absent subscriber (permanent)",
    "4": "Call barred by user",
    "5": "Portability error",
    "6": "Anti-spam rejection",
    "7": "Handset busy",
    "8": "Network error",
    "9": "Illegal number",
    "10": "Illegal message",
    "11": "Unroutable",
    "12": "Destination unreachable",
    "13": "Subscriber age restriction",
    "14": "Number blocked by carrier",
    "15": "Prepaid insufficient funds",
    "16": "Gateway quota exceeded",
    "50": "Entity filter",
    "51": "Header filter",
    "52": "Content filter",
    "53": "Consent filter",
    "54": "Regulation error",
    "99": "General error",
}

SIGNATURE_METHODS = ("md5hash", "md5", "sha1", "sha256", "sha512")
_SMS_ERROR = re.compile(r"error code (\d+): (.*)", re.DOTALL)
# SmsMessage refuses a longer callback; better to fail at start-up than per message.
_MAX_CALLBACK_LENGTH = 100


def map_status(raw_status: str, err_code: str | None = None) -> str | None:
    """Map a Vonage delivery receipt status to ours; None means "change nothing".

    ``err_code`` does not change the mapping today; it is accepted so both
    providers' ``map_status`` take the same arguments.
    """
    return STATUS_MAP.get((raw_status or "").strip().lower())


def _send_error(status: str, text: str) -> ProviderError:
    text = text or SEND_ERRORS.get(status, f"Vonage status {status}")
    if status in TRANSIENT_STATUSES or status in ACCOUNT_STATUSES:
        return TransientProviderError(NAME, text, status)
    return PermanentProviderError(NAME, text, status, opted_out=status in OPTED_OUT_STATUSES)


class VonageSms(SmsProvider):
    """Send SMS through Vonage's SMS API, authenticated with key and secret.

    Our message id goes in ``client-ref`` so receipts find their message.
    One instance is safe to share between threads.
    """

    name = NAME

    def __init__(
        self,
        api_key: str,
        api_secret: str,
        from_: str | None = None,
        rest_host: str = "rest.nexmo.com",
        status_callback_url: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        if not api_key or not api_secret:
            raise ValueError("Vonage needs an API key and an API secret")
        if status_callback_url and len(status_callback_url) > _MAX_CALLBACK_LENGTH:
            raise ValueError(f"Vonage refuses callback URLs over {_MAX_CALLBACK_LENGTH} characters")
        self.from_ = from_
        self.status_callback_url = status_callback_url
        options = HttpClientOptions(
            rest_host=rest_host,
            # The SDK takes whole seconds only.
            timeout=max(1, math.ceil(timeout)),
            # The SDK's own adapter is replaced below. Its make_request loop
            # also counts its resends on a dropped connection with
            # pool_maxsize: 1 keeps that loop to one try even if our adapter's
            # exceptions ever reached it.
            pool_connections=1,
            pool_maxsize=1,
            max_retries=0,
        )
        # Signing (signature_secret) is deliberately not used for sending: the
        # SDK would sign fields it does not send.
        self._client = Vonage(Auth(api_key=api_key, api_secret=api_secret), options)
        # The SDK offers no hook for its transport: mount ours on its session
        # (a renamed attribute fails here, at start-up, not per message).
        self._transport = SingleSendAdapter(pool_maxsize=64)
        self._client.http_client._session.mount("https://", self._transport)

    def _send_sms(self, sms: OutboundSms) -> SendResult:
        sender = sms.sender or self.from_
        if not sender:
            # Configuration problem, not the recipient's: let another provider try.
            raise TransientProviderError(NAME, "no sender configured", "no_sender")
        try:
            message = SmsMessage(
                to=sms.to.lstrip("+"),
                from_=sender,
                text=sms.body,
                type="text" if is_gsm7(sms.body) else "unicode",
                client_ref=sms.reference,
                callback=self.status_callback_url,
            )
        except ValidationError as exc:
            raise PermanentProviderError(NAME, f"invalid message: {exc}", "invalid") from exc
        try:
            with self._transport.one_request():
                response = self._client.sms.send(message)
        except PartialFailureError as exc:
            # Some parts of a long SMS went out, others not: report the first failure.
            parts = exc.response.get("messages", []) if isinstance(exc.response, dict) else []
            failed = next((p for p in parts if str(p.get("status")) != "0"), {})
            raise _send_error(str(failed.get("status", "5")), failed.get("error-text", "")) from exc
        except SmsError as exc:
            # The SDK only gives the status inside its message text.
            match = _SMS_ERROR.search(str(exc))
            if not match:
                raise TransientProviderError(NAME, str(exc), "unparsed") from exc
            raise _send_error(match.group(1), match.group(2).strip()) from exc
        except (RateLimitedError, ServerError) as exc:
            raise TransientProviderError(NAME, exc.message, exc.response.status_code) from exc
        except HttpRequestError as exc:
            status = exc.response.status_code
            if status >= 500 or status in (401, 403):
                raise TransientProviderError(NAME, exc.message, status) from exc
            raise PermanentProviderError(NAME, exc.message, status) from exc
        first = response.messages[0] if response.messages else None
        return SendResult(
            provider=NAME,
            provider_message_id=first.message_id if first else None,
            segments=int(response.message_count),
            raw=response.model_dump(by_alias=False),
        )


def _get(params: Mapping[str, Any], key: str) -> str | None:
    value = params.get(key)
    if value in (None, ""):
        return None
    return str(value)


# A long SMS has at most 255 parts (the concatenation header's part numbers are one byte).
MAX_PARTS = 255


def _part_number(params: Mapping[str, Any], key: str) -> int | None:
    """A part number or count (``concat-part``, ``concat-total``), or None.

    Only 1..255 written in ASCII digits is a number; anything else gives None.
    """
    value = (_get(params, key) or "").strip()
    if not (value.isascii() and value.isdigit() and len(value) <= 3):
        return None
    number = int(value)
    return number if 1 <= number <= MAX_PARTS else None


def parse_receipt(params: Mapping[str, Any]) -> Receipt:
    """Parse a Vonage delivery receipt (query, form or JSON keys) into a Receipt.

    Vonage sends one receipt per part of a long message; ``part``/``parts``
    are filled when the receipt says which part it is about.
    """
    raw_status = _get(params, "status") or ""
    err_code = _get(params, "err-code")
    error_code = None if err_code in (None, "0") else err_code
    return Receipt(
        provider=NAME,
        provider_message_id=_get(params, "messageId") or _get(params, "message-id"),
        reference=_get(params, "client-ref"),
        raw_status=raw_status,
        status=map_status(raw_status, err_code),
        error_code=error_code,
        error_message=(
            RECEIPT_ERRORS.get(error_code, f"Vonage error {error_code}") if error_code else None
        ),
        part=_part_number(params, "concat-part"),
        parts=_part_number(params, "concat-total"),
        raw=dict(params),
    )


def parse_inbound(params: Mapping[str, Any]) -> InboundSms:
    """Parse a Vonage inbound SMS; parts of a long SMS carry concat-ref/part/total."""
    msisdn = _get(params, "msisdn") or ""
    concat = (_get(params, "concat") or "").lower() == "true"
    return InboundSms(
        provider=NAME,
        provider_message_id=_get(params, "messageId"),
        from_number=msisdn if msisdn.startswith("+") or not msisdn else f"+{msisdn}",
        to_number=_get(params, "to") or "",
        body=str(params.get("text") or ""),
        concat_ref=_get(params, "concat-ref") if concat else None,
        part=_part_number(params, "concat-part") if concat else None,
        parts=_part_number(params, "concat-total") if concat else None,
        raw=dict(params),
    )


def signed_string(params: Mapping[str, Any]) -> str:
    """The string Vonage signs: ``&k=v`` over every param but ``sig``, sorted keys.

    ``&`` and ``=`` inside values become ``_``.
    """
    return "".join(
        f"&{key}={str(params[key]).replace('&', '_').replace('=', '_')}"
        for key in sorted(params)
        if key != "sig"
    )


def compute_signature(params: Mapping[str, Any], secret: str, method: str) -> str:
    """Compute the hex signature of ``params`` with ``secret`` and ``method``."""
    # surrogatepass: a JSON body may carry lone surrogates; they must fail the check, not crash it.
    text = signed_string(params).encode("utf-8", "surrogatepass")
    key = secret.encode("utf-8")
    if method == "md5hash":
        return hashlib.md5(text + key).hexdigest()
    if method in ("md5", "sha1", "sha256", "sha512"):
        return hmac.new(key, text, method).hexdigest()
    raise ValueError(f"unknown Vonage signature method {method!r}; use one of {SIGNATURE_METHODS}")


def check_signature(
    params: Mapping[str, Any],
    secret: str,
    method: str,
    *,
    now: float | None = None,
    max_age: int = 300,
) -> bool:
    """Check a signed Vonage webhook (``sig``, ``timestamp``, ``nonce`` params).

    Refuses a missing signature, a missing or unreadable timestamp, and one
    more than ``max_age`` seconds away from ``now`` (replays). The signature is
    compared case-insensitively in constant time. An unknown ``method`` is a
    configuration error and raises ValueError.
    """
    expected = compute_signature(params, secret, method)
    signature = _get(params, "sig")
    if not signature:
        return False
    try:
        timestamp = float(_get(params, "timestamp") or "")
    except ValueError:
        return False
    if not math.isfinite(timestamp):  # NaN would pass any freshness comparison
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > max_age:
        return False
    return hmac.compare_digest(
        signature.strip().lower().encode("utf-8", "surrogatepass"), expected.lower().encode("utf-8")
    )
