"""Who may call the provider webhooks; every check fails closed.

1. A provider that is not configured has no webhooks: its routes answer 404
   (:func:`configured`). Configured means its credentials are set (without
   them the gateway cannot have sent anything through it) and it is named in
   ``SMS_PROVIDERS`` or in an organisation's own provider list.
2. The call must carry the provider's signature (403 otherwise). Twilio always
   signs. Vonage signs when a signature secret is set in its dashboard and
   here (``VONAGE_SIGNATURE_SECRET``); without one, unsigned calls are refused
   unless the operator opted in with ``VONAGE_UNSIGNED_WEBHOOKS=accept``
   (a warning at start; refused with ``GATEWAY_ENV=production``).

The receipts' own rule (a receipt only touches messages sent through the
provider it comes from) is in :mod:`webhooks.receipts`.

The signature checks themselves live in :mod:`providers` (the SDKs' own
validators); this module only picks the settings and rebuilds the URL as the
provider called it, from ``PUBLIC_BASE_URL`` (never from the request, which a
proxy may have rewritten).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, current_app, request
from sqlalchemy import select

from gateway.extensions import db
from gateway.models import Organisation
from providers import twilio, vonage

log = logging.getLogger(__name__)

DEFAULT_VONAGE_METHOD = "md5hash"

# The settings without which a provider cannot have sent anything (providers.registry).
CREDENTIALS = {
    "twilio": ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"),
    "vonage": ("VONAGE_API_KEY", "VONAGE_API_SECRET"),
}


def _settings() -> Mapping[str, str]:
    return current_app.config.get("PROVIDER_SETTINGS") or {}


def configured(name: str, app: Flask | None = None) -> bool:
    """Whether provider ``name`` is configured: credentials set, and in use.

    In use: named in ``SMS_PROVIDERS``, else in some organisation's
    ``sms_providers`` (one small query, only for a provider the environment
    does not list).
    """
    app = app or current_app
    settings = app.config.get("PROVIDER_SETTINGS") or {}
    if not all(str(settings.get(key) or "").strip() for key in CREDENTIALS[name]):
        return False
    if name in app.config.get("SMS_PROVIDERS", []):
        return True
    lists = db.session.scalars(
        select(Organisation.sms_providers).where(Organisation.sms_providers.ilike(f"%{name}%"))
    ).all()
    return any(name in (p.strip().lower() for p in value.split(",")) for value in lists)


def public_url() -> str:
    """The URL exactly as the provider called it: public base + path + query."""
    url = current_app.config["PUBLIC_BASE_URL"].rstrip("/") + request.path
    query = request.query_string.decode("utf-8", "replace")
    return f"{url}?{query}" if query else url


def twilio_ok(form: Mapping[str, Any]) -> bool:
    """Whether ``X-Twilio-Signature`` is right; always False without an auth token."""
    token = _settings().get("TWILIO_AUTH_TOKEN")
    if not token:
        log.warning("Twilio webhook refused: TWILIO_AUTH_TOKEN is not configured")
        return False
    ok = twilio.validate_signature(
        token, public_url(), form, request.headers.get("X-Twilio-Signature")
    )
    if not ok:
        log.warning("Twilio webhook refused: bad or missing signature on %s", request.path)
    return ok


def vonage_ok(params: Mapping[str, Any]) -> bool:
    """Whether a Vonage webhook is acceptable.

    With ``VONAGE_SIGNATURE_SECRET`` set, ``sig`` must be right and the
    ``timestamp`` fresh (5 minutes). Without it Vonage does not sign, so
    nothing proves who calls: refused, unless ``VONAGE_UNSIGNED_WEBHOOKS=accept``.
    """
    settings = _settings()
    secret = settings.get("VONAGE_SIGNATURE_SECRET")
    if not secret:
        if current_app.config.get("VONAGE_UNSIGNED_WEBHOOKS"):
            return True
        log.warning(
            "Vonage webhook refused: VONAGE_SIGNATURE_SECRET is not set "
            "(VONAGE_UNSIGNED_WEBHOOKS=accept would take unsigned calls)"
        )
        return False
    method = (settings.get("VONAGE_SIGNATURE_METHOD") or DEFAULT_VONAGE_METHOD).strip().lower()
    try:
        ok = vonage.check_signature(params, secret, method)
    except ValueError:
        log.error("Vonage webhook refused: VONAGE_SIGNATURE_METHOD %r is not supported", method)
        return False
    if not ok:
        log.warning("Vonage webhook refused: bad, missing or stale signature on %s", request.path)
    return ok
