"""Cancellation links ``/c/<code>`` (SPEC section 2, Cancellation link).

GET only shows the rdv and a button: link previewers and mail scanners open
links, so a GET never changes anything. The button POSTs (with a CSRF token)
and cancels, once; a second POST shows the same confirmation. Both are
rate-limited per client address, so codes cannot be guessed by brute force.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import Blueprint, abort, current_app, render_template
from sqlalchemy import select

from gateway.booking import cancel
from gateway.errors import DomainError
from gateway.extensions import db, limiter
from gateway.models import LOCATION_TYPES, Participation
from gateway.phones import display_phone
from gateway.rendering import hour, long_date
from gateway.timeutil import utcnow

bp = Blueprint("links", __name__)

DEFAULT_RATE_LIMIT = "30 per minute;300 per day"
MAX_CODE_LENGTH = 32


def _rate_limit() -> str:
    return current_app.config.get("CANCEL_LINK_RATE_LIMIT", DEFAULT_RATE_LIMIT)


# One budget for GET and POST together: both tell a right code from a wrong one.
cancel_link_limit = limiter.shared_limit(_rate_limit, scope="cancel-link")


def _participation(code: str) -> Participation:
    if not code.isalnum() or len(code) > MAX_CODE_LENGTH:
        abort(404)
    participation = db.session.scalar(
        select(Participation).where(Participation.cancel_code == code)
    )
    if participation is None:
        abort(404)
    return participation


def cancellable(participation: Participation, now: datetime) -> bool:
    """Whether the usager may still cancel: before the start minus the organisation's notice."""
    rdv = participation.rdv
    notice = timedelta(minutes=rdv.organisation.min_cancel_notice_minutes or 0)
    return not rdv.is_cancelled and now < rdv.starts_at - notice


def _render(participation: Participation, state: str, status: int = 200):
    rdv = participation.rdv
    org = rdv.organisation
    tz = org.tz
    page = render_template(
        "pages/cancel_link.html",
        rdv=rdv,
        state=state,
        code=participation.cancel_code,
        date=long_date(rdv.starts_at, tz),
        time=hour(rdv.starts_at, tz),
        location=LOCATION_TYPES.get(rdv.motif.location_type, ""),
        phone=display_phone(rdv.lieu.phone or org.phone),
    )
    return page, status, {"Cache-Control": "no-store", "X-Robots-Tag": "noindex"}


@bp.get("/c/<code>")
@cancel_link_limit
def show(code: str):
    """The rdv and, while it can still be cancelled, the cancel button."""
    participation = _participation(code)
    rdv = participation.rdv
    if rdv.is_cancelled:
        state = "cancelled"
    elif cancellable(participation, utcnow()):
        state = "open"
    else:
        state = "too_late"
    return _render(participation, state)


@bp.post("/c/<code>")
@cancel_link_limit
def confirm_cancel(code: str):
    """Cancel the rdv (idempotent): the confirmation, or why it cannot be done."""
    participation = _participation(code)
    try:
        cancel(participation.rdv, via="link")
    except DomainError:
        return _render(participation, "too_late", 409)
    return _render(participation, "cancelled")
