"""Who may call the provider webhooks: each provider's signature, checked from config.

The checks themselves live in :mod:`providers` (the SDKs' own validators);
this module only picks the settings and rebuilds the URL as the provider
called it, from ``PUBLIC_BASE_URL`` (never from the request, which a proxy
may have rewritten).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import current_app, request

from providers import twilio, vonage

log = logging.getLogger(__name__)

DEFAULT_VONAGE_METHOD = "md5hash"


def _settings() -> Mapping[str, str]:
    return current_app.config.get("PROVIDER_SETTINGS") or {}


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
    ``timestamp`` fresh (5 minutes); without it Vonage does not sign, so
    there is nothing to check (SPEC section 3) — set it in production.
    """
    settings = _settings()
    secret = settings.get("VONAGE_SIGNATURE_SECRET")
    if not secret:
        return True
    method = (settings.get("VONAGE_SIGNATURE_METHOD") or DEFAULT_VONAGE_METHOD).strip().lower()
    try:
        ok = vonage.check_signature(params, secret, method)
    except ValueError:
        log.error("Vonage webhook refused: VONAGE_SIGNATURE_METHOD %r is not supported", method)
        return False
    if not ok:
        log.warning("Vonage webhook refused: bad, missing or stale signature on %s", request.path)
    return ok
