"""``/o/<code>``: a waiting-list offer (SPEC section 5).

GET shows the offered slot and a button, and changes nothing (link previewers
open links). The button POSTs, with the CSRF token the app checks on every
form, and takes the slot if it is still free (:func:`gateway.waitlist.take_offer`):
the first usager wins, the others read "ce créneau vient d'être pris" and keep
their rdv. Both share the cancellation links' rate limit per client address.
"""

from __future__ import annotations

from flask import Blueprint, abort, current_app, render_template

from .errors import Conflict, NotFound
from .extensions import limiter
from .models import WaitlistOffer
from .phones import display_phone
from .rendering import hour, long_date
from .timeutil import utcnow
from .waitlist import OfferExpired, SlotTaken, find_offer, offer_state, take_offer

bp = Blueprint("waitlist_pages", __name__)

MAX_CODE_LENGTH = 32


def _rate_limit() -> str:
    return current_app.config.get("CANCEL_LINK_RATE_LIMIT", "30 per minute;300 per day")


offer_link_limit = limiter.shared_limit(_rate_limit, scope="offer-link")


def _offer(code: str) -> WaitlistOffer:
    if not code.isalnum() or len(code) > MAX_CODE_LENGTH:
        abort(404)
    try:
        return find_offer(code)
    except NotFound:
        abort(404)


def _render(offer: WaitlistOffer, state: str, status: int = 200):
    rdv, slot = offer.rdv, offer.freed_slot
    org = rdv.organisation
    tz = org.tz
    page = render_template(
        "pages/offer.html",
        offer=offer,
        state=state,
        rdv=rdv,
        slot=slot,
        slot_date=long_date(slot.starts_at, tz),
        slot_time=hour(slot.starts_at, tz),
        rdv_date=long_date(rdv.starts_at, tz),
        rdv_time=hour(rdv.starts_at, tz),
        phone=display_phone(rdv.lieu.phone or org.phone),
    )
    return page, status, {"Cache-Control": "no-store", "X-Robots-Tag": "noindex"}


@bp.get("/o/<code>")
@offer_link_limit
def show(code: str):
    """The offered slot and, while it is free, the button that takes it."""
    offer = _offer(code)
    return _render(offer, offer_state(offer, utcnow()))


@bp.post("/o/<code>")
@offer_link_limit
def take(code: str):
    """Take the slot (idempotent for the usager who took it)."""
    offer = _offer(code)
    try:
        take_offer(offer)
    except OfferExpired:
        return _render(offer, "expired", 409)
    except (SlotTaken, Conflict):  # Conflict: the database's own overlap guard
        return _render(offer, "lost", 409)
    return _render(offer, "taken")
