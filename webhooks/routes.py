"""The provider webhooks of SPEC section 3: check, record, queue, answer.

Each route fails closed (:mod:`webhooks.signatures`): 404 when its provider
is not configured, 403 and nothing stored when the signature is missing or
wrong (or, for Vonage, when no signature secret is set and unsigned calls
were not accepted explicitly). It then makes the data storable (NUL, lone surrogates: see
:func:`gateway.web.storable`) and parses with the provider's own parser. A
receipt is then stored and applied in one transaction; an inbound SMS is
recorded and its work queued. A database that cannot be reached answers 503
with ``Retry-After`` (the app-wide handler in :mod:`gateway.web`), so that the
provider retries later.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from flask import Blueprint, Response, abort, request
from twilio.twiml.messaging_response import MessagingResponse

from gateway.web import storable
from providers import twilio, vonage

from . import inbound, receipts, signatures

log = logging.getLogger(__name__)

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")


def _twiml() -> Response:
    return Response(str(MessagingResponse()), mimetype="text/xml")


def _vonage_params() -> dict[str, Any]:
    """Vonage's fields from the query (GET), the form or a JSON body (POST)."""
    params: dict[str, Any] = request.args.to_dict()
    if request.method == "POST":
        if request.is_json:
            body = request.get_json(silent=True)
            if not isinstance(body, dict):
                abort(400, "Corps JSON invalide.")
            params.update(body)
        else:
            params.update(request.form.to_dict())
    return params


def _ok() -> Response:
    return Response(status=204)


def _configured(provider: str) -> None:
    """404 when ``provider`` is not configured: its webhooks do not exist."""
    if not signatures.configured(provider):
        abort(404)


@bp.post("/twilio/status")
def twilio_status():
    """Twilio status callback; our message id comes back as ``ref`` in the URL."""
    _configured("twilio")
    if not signatures.twilio_ok(request.form):
        abort(403)
    query, form = storable(request.args.to_dict()), storable(request.form.to_dict())
    receipt = twilio.parse_status_callback(form, query.get("ref"))
    # Keep the query (``ref``) with the form in the stored raw receipt.
    receipt = replace(receipt, raw=query | form)
    receipts.apply_receipt(receipt)
    return _ok()


@bp.post("/twilio/inbound")
def twilio_inbound():
    """Inbound SMS from Twilio. The TwiML answer is empty on purpose: our reply goes
    through the sending pipeline as a message row, so it is recorded like any other."""
    _configured("twilio")
    if not signatures.twilio_ok(request.form):
        abort(403)
    try:
        inbound.receive(twilio.parse_inbound(storable(request.form.to_dict())))
    except inbound.InvalidInbound:
        abort(400, "SMS entrant incomplet : MessageSid et From sont obligatoires.")
    return _twiml()


@bp.route("/vonage/status", methods=["GET", "POST"])
def vonage_status():
    """Vonage delivery receipt (one per part of a long SMS)."""
    _configured("vonage")
    params = _vonage_params()
    if not signatures.vonage_ok(params):
        abort(403)
    receipts.apply_receipt(vonage.parse_receipt(storable(params)))
    return _ok()


@bp.route("/vonage/inbound", methods=["GET", "POST"])
def vonage_inbound():
    """Inbound SMS from Vonage; parts of a long SMS are joined before acting."""
    _configured("vonage")
    params = _vonage_params()
    if not signatures.vonage_ok(params):
        abort(403)
    try:
        inbound.receive(vonage.parse_inbound(storable(params)))
    except inbound.InvalidInbound:
        abort(400, "SMS entrant incomplet : messageId et msisdn sont obligatoires.")
    return _ok()
