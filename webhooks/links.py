"""Manage links ``/c/<code>`` (SPEC sections 2 and 5): show, cancel, move.

GET only shows: the rdv and a cancel button, and, when its motif is bookable
online, the free slots to move it to (``?deplacer=1``, a week at a time) and a
chosen slot to confirm (``&debut=``). Link previewers and mail scanners open
links, so a GET never changes anything. Only a POST with the form's CSRF token
acts: ``action=cancel`` (the default) cancels, once; ``action=move`` moves the
rdv with :func:`gateway.booking.move` (the agent's move: old reminders
cancelled, a ``moved`` notice, new reminders). Both are rate-limited per client
address, so codes cannot be guessed by brute force.

A usager may move an rdv while they could cancel it (before its start minus
the organisation's notice), to a free slot of the same agent, motif and lieu
inside the motif's online window (:func:`gateway.online.service.booking_window`).
"""

from __future__ import annotations

from datetime import datetime, time, timedelta

from flask import Blueprint, abort, current_app, render_template, request
from sqlalchemy import select

from gateway.booking import cancel, move
from gateway.errors import DomainError
from gateway.extensions import db, limiter
from gateway.models import LOCATION_TYPES, Participation
from gateway.online import service as online
from gateway.online.pages import slot_week
from gateway.phones import display_phone
from gateway.rendering import hour, long_date
from gateway.timeutil import localize, parse_iso, utcnow
from gateway.waitlist import set_waiting

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


def movable(participation: Participation, now: datetime) -> bool:
    """Whether the usager may move the rdv from the link: while cancellable, and only
    for a motif the organisation lets usagers book online."""
    rdv = participation.rdv
    return (
        cancellable(participation, now)
        and rdv.motif.bookable_online
        and rdv.organisation.online_booking
    )


def _render(participation: Participation, state: str, status: int = 200, **extra):
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
        can_move=state == "open" and movable(participation, utcnow()),
        **{"tz": tz, **extra},
    )
    return page, status, {"Cache-Control": "no-store", "X-Robots-Tag": "noindex"}


def _state(participation: Participation, now: datetime) -> str:
    if participation.rdv.is_cancelled:
        return "cancelled"
    return "open" if cancellable(participation, now) else "too_late"


def _offered(participation: Participation, starts_at: datetime, now: datetime) -> bool:
    """Whether ``starts_at`` is one of the free slots the move page offers."""
    rdv = participation.rdv
    tz = rdv.organisation.tz
    day = starts_at.astimezone(tz).date()
    start = localize(datetime.combine(day, time()), tz)
    end = localize(datetime.combine(day + timedelta(days=1), time()), tz)
    slots = online.online_slots(
        rdv.organisation, rdv.motif, rdv.lieu, start, end, now, agent_id=rdv.agent_id
    )
    return any(s.starts_at == starts_at for s in slots)


@bp.get("/c/<code>")
@cancel_link_limit
def show(code: str):
    """The rdv, the cancel button and, for a motif bookable online, the slots to move to."""
    participation = _participation(code)
    now = utcnow()
    state = _state(participation, now)
    if state == "open" and request.args.get("deplacer") == "1" and movable(participation, now):
        rdv = participation.rdv
        chosen = None
        if request.args.get("debut"):
            try:
                chosen = parse_iso(request.args["debut"], rdv.organisation.tz)
            except ValueError:
                chosen = None
            if chosen is not None and not _offered(participation, chosen, now):
                chosen = None
        if chosen is not None:
            return _render(
                participation,
                "move_confirm",
                new_date=long_date(chosen, rdv.organisation.tz),
                new_time=hour(chosen, rdv.organisation.tz),
                new_start=chosen.astimezone(rdv.organisation.tz).isoformat(),
            )
        week = slot_week(rdv.organisation, rdv.motif, rdv.lieu, now, agent_id=rdv.agent_id)
        return _render(participation, "move", **week)
    return _render(participation, state)


@bp.post("/c/<code>")
@cancel_link_limit
def confirm_cancel(code: str):
    """Cancel (idempotent) or, with ``action=move``, move the rdv; the outcome, or why not."""
    participation = _participation(code)
    if request.form.get("action") == "move":
        return _move(participation)
    if request.form.get("action") in ("waitlist_on", "waitlist_off"):
        return _waitlist(participation, request.form["action"] == "waitlist_on")
    try:
        cancel(participation.rdv, via="link")
    except DomainError:
        return _render(participation, "too_late", 409)
    return _render(participation, "cancelled")


def _waitlist(participation: Participation, waiting: bool):
    """Join or leave the waiting list (docs/waitlist.md) while the rdv can be cancelled."""
    if not cancellable(participation, utcnow()):
        return _render(participation, _state(participation, utcnow()), 409)
    set_waiting(participation.rdv, waiting)
    return _render(participation, "open", waitlist_changed=True)


def _move(participation: Participation):
    rdv = participation.rdv
    now = utcnow()
    tz = rdv.organisation.tz
    if not movable(participation, now):
        return _render(participation, _state(participation, now), 409, error=MOVE_REFUSED)
    try:
        new_start = parse_iso(request.form.get("debut", ""), tz)
    except ValueError:
        new_start = None
    if new_start is None or not _offered(participation, new_start, now):
        week = slot_week(rdv.organisation, rdv.motif, rdv.lieu, now, agent_id=rdv.agent_id)
        return _render(participation, "move", 409, error=SLOT_GONE, **week)
    try:
        move(rdv, starts_at=new_start, now=now)
    except DomainError as exc:
        db.session.rollback()
        week = slot_week(rdv.organisation, rdv.motif, rdv.lieu, now, agent_id=rdv.agent_id)
        return _render(participation, "move", exc.status, error=exc.message, **week)
    return _render(participation, "moved")


MOVE_REFUSED = "Ce rendez-vous ne peut plus être déplacé en ligne."
SLOT_GONE = "Ce créneau n'est plus libre ou n'est pas proposé : choisissez-en un autre."
