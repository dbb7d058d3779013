"""The public booking pages: ``/prendre-rdv`` and the steps under ``/prendre-rdv/<slug>``.

No account, no JavaScript needed: each step is a plain GET page whose choices
travel in the query string (motif, lieu, slot), so the back button and a
reload always show the same step; the details form POSTs (with its CSRF
token) to the same URL and leads to the code page, named by the unguessable
``public_id`` of the pending request. Handlers parse, call
:mod:`gateway.online.service`, render.

The POSTs that send a code and those that check one are rate-limited per
client address (Flask-Limiter, ``ONLINE_CODE_RATE_LIMIT`` and
``ONLINE_CHECK_RATE_LIMIT``), on top of the per-number limits of the service.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, StringField, TelField
from wtforms.validators import Length, Optional

from ..errors import DomainError, ValidationFailed
from ..extensions import db, limiter
from ..models import Agent, is_db_id
from ..phones import display_phone
from ..rendering import hour, long_date
from ..timeutil import localize, parse_date, parse_iso, utcnow
from . import service

bp = Blueprint("online", __name__, url_prefix="/prendre-rdv")

STEPS = ("Motif", "Lieu", "Date et heure", "Vos coordonnées", "Code de confirmation", "Confirmé")
TOO_MANY = "Trop de demandes depuis votre connexion. Réessayez dans un moment."

code_request_limit = limiter.shared_limit(
    lambda: current_app.config["ONLINE_CODE_RATE_LIMIT"],
    scope="online-code-request",
    methods=["POST"],
    error_message=TOO_MANY,
)
code_check_limit = limiter.shared_limit(
    lambda: current_app.config["ONLINE_CHECK_RATE_LIMIT"],
    scope="online-code-check",
    methods=["POST"],
    error_message=TOO_MANY,
)


def _no_store(page, status: int = 200):
    # Pages with a usager's details or a pending request: not kept by caches nor indexed.
    return page, status, {"Cache-Control": "no-store", "X-Robots-Tag": "noindex"}


def _int(name: str):
    value = request.values.get(name, "")
    number = int(value) if value.isascii() and value.isdigit() and len(value) < 12 else None
    return number if is_db_id(number) else None


def _org(slug: str):
    org = service.public_organisation(slug)
    if org is None:
        abort(404)
    return org


def _motif(org):
    motif = service.bookable_motif(org, _int("motif"))
    if motif is None:
        abort(404)
    return motif


def _lieu(org, motif):
    lieu = service.offering_lieu(org, motif, _int("lieu"))
    if lieu is None:
        abort(404)
    return lieu


def _render(template: str, step: int, **context):
    return render_template(
        f"pages/{template}", step=step, steps=STEPS, display_phone=display_phone, **context
    )


@bp.get("")
def organisations():
    """The organisations taking online bookings."""
    return _render("online_organisations.html", 0, organisations=service.public_organisations())


@bp.get("/<slug>")
def motifs(slug: str):
    """Step 1: the motifs of the organisation bookable online."""
    org = _org(slug)
    return _render("online_motifs.html", 1, org=org, motifs=service.bookable_motifs(org))


@bp.get("/<slug>/lieu")
def lieux(slug: str):
    """Step 2: where the motif is offered, with opening hours; sorted by the postcode typed."""
    org = _org(slug)
    motif = _motif(org)
    postcode = request.args.get("cp", "").strip()[:5]
    return _render(
        "online_lieux.html",
        2,
        org=org,
        motif=motif,
        postcode=postcode,
        postcode_invalid=bool(postcode) and not (postcode.isascii() and postcode.isdigit()),
        choices=service.lieux_for(org, motif, postcode),
    )


def _week_start(org, motif, now: datetime) -> tuple[date, date, date]:
    """(first day shown, first bookable day, last bookable day), in local days."""
    tz = org.tz
    first, last = service.booking_window(motif, now)
    first_day, last_day = first.astimezone(tz).date(), last.astimezone(tz).date()
    try:
        day = parse_date(request.args["du"]) if request.args.get("du") else first_day
    except ValueError:
        day = first_day
    return min(max(day, first_day), last_day), first_day, last_day


def _slots_by_day(org, motif, lieu, day: date, now: datetime, agent_id=None) -> dict:
    tz = org.tz
    start = localize(datetime.combine(day, datetime.min.time()), tz)
    end = localize(datetime.combine(day + timedelta(days=7), datetime.min.time()), tz)
    by_day: dict = {}
    for slot in service.online_slots(org, motif, lieu, start, end, now, agent_id=agent_id):
        by_day.setdefault(slot.starts_at.astimezone(tz).date(), []).append(slot)
    return by_day


def slot_week(org, motif, lieu, now: datetime, agent_id=None) -> dict:
    """The week of free slots to show (from ``du``, else the first week that has any)."""
    day, first_day, last_day = _week_start(org, motif, now)
    by_day = _slots_by_day(org, motif, lieu, day, now, agent_id)
    if not by_day and not request.args.get("du"):
        # Nothing this week: jump to the first week with a free slot, within the window.
        probe = day + timedelta(days=7)
        while probe <= last_day and not by_day:
            by_day = _slots_by_day(org, motif, lieu, probe, now, agent_id)
            day = probe if by_day else day
            probe += timedelta(days=7)
    return {
        "by_day": by_day,
        "week": day,
        "previous_week": max(day - timedelta(days=7), first_day) if day > first_day else None,
        "next_week": day + timedelta(days=7) if day + timedelta(days=7) <= last_day else None,
        "tz": org.tz,
    }


@bp.get("/<slug>/creneau")
def slots(slug: str):
    """Step 3: free slots, a week at a time, inside the motif's online window."""
    org = _org(slug)
    motif = _motif(org)
    lieu = _lieu(org, motif)
    context = slot_week(org, motif, lieu, utcnow())
    return _no_store(
        _render(
            "online_slots.html",
            3,
            org=org,
            motif=motif,
            lieu=lieu,
            taken=request.args.get("pris") == "1",
            **context,
        )
    )


class DetailsForm(FlaskForm):
    """The usager's details: names, mobile and/or email, consents per channel."""

    first_name = StringField("Prénom", validators=[Optional(), Length(max=100)])
    last_name = StringField("Nom", validators=[Optional(), Length(max=100)])
    phone = TelField("Téléphone mobile", validators=[Optional(), Length(max=32)])
    email = EmailField("Adresse électronique", validators=[Optional(), Length(max=254)])
    notify_sms = BooleanField("J'accepte de recevoir la confirmation et les rappels par SMS")
    notify_email = BooleanField("J'accepte de recevoir la confirmation et les rappels par courriel")
    waitlist = BooleanField("Prévenez-moi si un créneau plus tôt se libère")


def _chosen_slot(org):
    """The slot of the query string (agent, start), if it is a slot of the motif's window."""
    agent_id = _int("agent")
    agent = db.session.get(Agent, agent_id) if agent_id else None
    if agent is None or agent.organisation_id != org.id:
        abort(404)
    try:
        starts_at = parse_iso(request.args.get("debut", ""), org.tz)
    except ValueError:
        abort(404)
    return agent, starts_at


def _slots_url(org, motif, lieu, starts_at=None, **extra) -> str:
    week = starts_at.astimezone(org.tz).date().isoformat() if starts_at else None
    return url_for("online.slots", slug=org.slug, motif=motif.id, lieu=lieu.id, du=week, **extra)


@bp.route("/<slug>/coordonnees", methods=["GET", "POST"])
@code_request_limit
def details(slug: str):
    """Step 4: the usager's details; the POST holds the slot and sends the code."""
    org = _org(slug)
    motif = _motif(org)
    lieu = _lieu(org, motif)
    agent, starts_at = _chosen_slot(org)
    form = DetailsForm()
    if request.method == "GET":
        form.notify_sms.data = True
        form.notify_email.data = True
    context = {
        "org": org,
        "motif": motif,
        "lieu": lieu,
        "starts_at": starts_at,
        "date": long_date(starts_at, org.tz),
        "time": hour(starts_at, org.tz),
        "form": form,
        "slots_url": _slots_url(org, motif, lieu, starts_at),
        "error": None,
    }
    if request.method == "GET":
        return _no_store(_render("online_details.html", 4, **context))
    if not form.validate_on_submit():
        context["error"] = "Le formulaire a expiré ou n'est pas valide : vérifiez et renvoyez-le."
        return _no_store(_render("online_details.html", 4, **context), 400)
    data = {f.name: f.data for f in (form.first_name, form.last_name, form.phone, form.email)}
    data.update(
        notify_sms=bool(form.notify_sms.data),
        notify_email=bool(form.notify_email.data),
        waitlist=bool(form.waitlist.data),
    )
    try:
        row, _code = service.request_code(org, motif, lieu, agent.id, starts_at, data)
    except ValidationFailed as exc:
        for name, message in exc.fields.items():
            field = getattr(form, name, None)
            if field is not None:
                field.errors = list(field.errors) + [message]
        context["error"] = exc.message
        return _no_store(_render("online_details.html", 4, **context), 422)
    except DomainError as exc:
        if exc.code in ("slot_taken", "slot_unavailable"):
            return redirect(_slots_url(org, motif, lieu, starts_at, pris=1), 303)
        context["error"] = exc.message
        return _no_store(_render("online_details.html", 4, **context), exc.status)
    return redirect(url_for("online.code", slug=slug, public_id=row.public_id), 303)


def _request_or_404(org, public_id: str):
    row = service.find_request(org, public_id)
    if row is None:
        abort(404)
    return row


def masked(recipient: str) -> str:
    """``06 •• •• •• 78`` or ``l•••@example.org``: enough to recognise, not to read."""
    if "@" in recipient:
        name, _, domain = recipient.partition("@")
        return f"{name[:1]}•••@{domain}"
    shown = display_phone(recipient)
    digits = [i for i, c in enumerate(shown) if c.isdigit()]
    hidden = set(digits[2:-2])
    return "".join("•" if i in hidden else c for i, c in enumerate(shown))


def _code_page(org, row, status: int = 200, error: str | None = None, state: str = "open"):
    tz = org.tz
    return _no_store(
        _render(
            "online_code.html",
            5,
            org=org,
            row=row,
            motif=row.motif,
            lieu=row.lieu,
            date=long_date(row.starts_at, tz),
            time=hour(row.starts_at, tz),
            expires=hour(row.expires_at, tz),
            recipient=masked(row.recipient),
            error=error,
            state=state,
            form=FlaskForm(),
            slots_url=_slots_url(org, row.motif, row.lieu, row.starts_at),
        ),
        status,
    )


@bp.route("/<slug>/code/<public_id>", methods=["GET", "POST"])
@code_check_limit
def code(slug: str, public_id: str):
    """Step 5: the code sent by SMS (or email); the right one books the rdv."""
    org = _org(slug)
    row = _request_or_404(org, public_id)
    now = utcnow()
    if row.status == service.USED and row.rdv_id:
        return redirect(url_for("online.done", slug=org.slug, public_id=row.public_id), 303)
    if request.method == "GET":
        service.expire_if_due(row, now)
        state = "open" if service.is_live(row, now) else row.status
        return _code_page(org, row, state=state)
    if not FlaskForm().validate():
        return _code_page(org, row, 400, "Le formulaire a expiré : saisissez le code à nouveau.")
    try:
        service.check_code(row, request.form.get("code", ""), now)
    except DomainError as exc:
        if exc.code == "slot_taken":
            return redirect(_slots_url(org, row.motif, row.lieu, row.starts_at, pris=1), 303)
        if exc.code == "code_used":
            return redirect(url_for("online.done", slug=slug, public_id=public_id), 303)
        db.session.refresh(row)
        state = "open" if service.is_live(row, now) else row.status
        return _code_page(org, row, exc.status, exc.message, state=state)
    return redirect(url_for("online.done", slug=slug, public_id=public_id), 303)


@bp.post("/<slug>/code/<public_id>/renvoyer")
@code_request_limit
def resend(slug: str, public_id: str):
    """A new code for the same slot and details (limits apply)."""
    org = _org(slug)
    row = _request_or_404(org, public_id)
    if row.status == service.USED:
        return redirect(url_for("online.done", slug=org.slug, public_id=row.public_id), 303)
    if not FlaskForm().validate():
        return _code_page(org, row, 400, "Le formulaire a expiré : réessayez.")
    try:
        new_row, _code = service.resend(row)
    except DomainError as exc:
        if exc.code in ("slot_taken", "slot_unavailable"):
            return redirect(_slots_url(org, row.motif, row.lieu, row.starts_at, pris=1), 303)
        db.session.refresh(row)
        state = "open" if service.is_live(row, utcnow()) else row.status
        return _code_page(org, row, exc.status, exc.message, state=state)
    return redirect(url_for("online.code", slug=org.slug, public_id=new_row.public_id), 303)


@bp.get("/<slug>/confirmation/<public_id>")
def done(slug: str, public_id: str):
    """Step 6: the rdv is booked; its details and the link to move or cancel it."""
    org = _org(slug)
    row = _request_or_404(org, public_id)
    if row.status != service.USED or row.rdv is None:
        return redirect(url_for("online.code", slug=org.slug, public_id=row.public_id), 303)
    rdv = row.rdv
    tz = org.tz
    manage = service.manage_code(rdv)
    return _no_store(
        _render(
            "online_done.html",
            6,
            org=org,
            rdv=rdv,
            date=long_date(rdv.starts_at, tz),
            time=hour(rdv.starts_at, tz),
            recipient=masked(row.recipient),
            manage_url=url_for("links.show", code=manage) if manage else None,
            phone=display_phone(rdv.lieu.phone or org.phone),
        )
    )


__all__ = ["bp", "masked", "slot_week"]
