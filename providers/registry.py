"""Build provider adapters by name from configuration (SPEC environment names)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import EmailProvider, SmsProvider
from .simulator import ReceiptSink, SimulatorEmail, SimulatorSms
from .smtp import SmtpEmail
from .twilio import TwilioSms
from .vonage import VonageSms

SMS_PROVIDERS = ("twilio", "vonage", "simulator")
EMAIL_PROVIDERS = ("smtp", "simulator")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def _optional(config: Mapping[str, Any], key: str) -> str | None:
    value = config.get(key)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _required(config: Mapping[str, Any], key: str, provider: str) -> str:
    value = _optional(config, key)
    if value is None:
        raise ValueError(f"{key} must be set to use the {provider} provider")
    return value


def _number(config: Mapping[str, Any], key: str, default: float, kind: type = float) -> Any:
    value = _optional(config, key)
    if value is None:
        return default
    try:
        return kind(value)
    except ValueError:
        raise ValueError(f"{key} must be a number, got {value!r}") from None


def _flag(config: Mapping[str, Any], key: str) -> bool:
    value = config.get(key)
    if isinstance(value, bool):
        return value
    text = str(value or "").strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{key} must be true or false, got {value!r}")


def _simulator_options(config: Mapping[str, Any], receipt_sink: ReceiptSink | None) -> dict:
    seed = _optional(config, "SIMULATOR_SEED")
    return {
        "latency": _number(config, "SIMULATOR_LATENCY", 0.0),
        "failure_rate": _number(config, "SIMULATOR_FAILURE_RATE", 0.0),
        "seed": int(seed) if seed is not None else None,
        "receipt_sink": receipt_sink,
    }


def sms_provider(
    name: str,
    config: Mapping[str, Any],
    status_callback_url: str | None = None,
    receipt_sink: ReceiptSink | None = None,
) -> SmsProvider:
    """Build the SMS adapter called ``name`` (``twilio``, ``vonage``, ``simulator``).

    ``config`` uses the SPEC's environment variable names as keys.
    ``status_callback_url`` is the full URL of this provider's receipt route
    (e.g. ``https://host/webhooks/twilio/status``); ``receipt_sink`` only
    matters for the simulator. Raises ValueError naming the missing variable.
    """
    key = (name or "").strip().lower()
    if key == "twilio":
        from_number = _optional(config, "TWILIO_FROM")
        service = _optional(config, "TWILIO_MESSAGING_SERVICE_SID")
        if not from_number and not service:
            raise ValueError(
                "TWILIO_FROM or TWILIO_MESSAGING_SERVICE_SID must be set to use the twilio provider"
            )
        return TwilioSms(
            account_sid=_required(config, "TWILIO_ACCOUNT_SID", "twilio"),
            auth_token=_required(config, "TWILIO_AUTH_TOKEN", "twilio"),
            from_number=from_number,
            messaging_service_sid=service,
            api_base_url=_optional(config, "TWILIO_API_BASE_URL") or "https://api.twilio.com",
            status_callback_url=status_callback_url,
        )
    if key == "vonage":
        return VonageSms(
            api_key=_required(config, "VONAGE_API_KEY", "vonage"),
            api_secret=_required(config, "VONAGE_API_SECRET", "vonage"),
            from_=_required(config, "VONAGE_FROM", "vonage"),
            rest_host=_optional(config, "VONAGE_REST_HOST") or "rest.nexmo.com",
            status_callback_url=status_callback_url,
        )
    if key == "simulator":
        return SimulatorSms(**_simulator_options(config, receipt_sink))
    raise ValueError(f"unknown SMS provider {name!r}; expected one of {', '.join(SMS_PROVIDERS)}")


def email_provider(
    name: str, config: Mapping[str, Any], receipt_sink: ReceiptSink | None = None
) -> EmailProvider:
    """Build the email adapter called ``name`` (``smtp`` or ``simulator``).

    ``config`` uses the SPEC's environment variable names as keys. Raises
    ValueError naming the missing or malformed variable.
    """
    key = (name or "").strip().lower()
    if key == "smtp":
        username = _optional(config, "SMTP_USERNAME")
        password = _optional(config, "SMTP_PASSWORD")
        if username and password is None:
            raise ValueError("SMTP_PASSWORD must be set when SMTP_USERNAME is")
        return SmtpEmail(
            host=_required(config, "SMTP_HOST", "smtp"),
            port=_number(config, "SMTP_PORT", 25, int),
            username=username,
            password=password,
            starttls=_flag(config, "SMTP_STARTTLS"),
            mail_from=_optional(config, "MAIL_FROM") or "lapin@localhost",
        )
    if key == "simulator":
        return SimulatorEmail(**_simulator_options(config, receipt_sink))
    raise ValueError(
        f"unknown email provider {name!r}; expected one of {', '.join(EMAIL_PROVIDERS)}"
    )
