"""Agent pages: the agenda, the booking form, the rdv page and its actions
(cancel, move, record the outcome).

Every page needs a logged-in agent and sees only the agent's organisation: an
id of another organisation answers 404, as an unknown one does. The pages work
without JavaScript: the booking form is a sequence of plain GET steps (motif,
lieu, slot, usager) whose choices travel in the query string, and each action
is a POST form with its CSRF token that redirects back to the rdv page (no
resubmission on reload).

Trade-off: the handlers hold no rule of their own; they call the same domain
functions as the JSON API (:mod:`gateway.booking`, :mod:`gateway.usagers`,
:mod:`gateway.slots`) and turn a refusal into a French message on the page, so
the two surfaces cannot disagree on what is allowed, and a refused action
changes nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload
from wtforms import BooleanField, EmailField, HiddenField, StringField, TelField, TextAreaField
from wtforms.validators import Length, Optional

from .booking import book, cancel, get_rdv, move, record_outcome
from .errors import DomainError, NotFound
from .extensions import db
from .history import noshow_counts
from .models import (
    CANCEL_REASON_MAX,
    RDV_UNKNOWN,
    Agent,
    InboundSms,
    Lieu,
    Message,
    Motif,
    Participation,
    Rdv,
    Usager,
    is_db_id,
)
from .slots import free_slots
from .timeline import build_timeline, message_reason
from .timeutil import localize, parse_date, parse_iso, utcnow
from .usagers import (
    clean_usager_fields,
    create_usager,
    find_duplicate_usager,
    search_usagers,
)
from .waitlist import set_waiting

bp = Blueprint("pages", __name__)


@bp.before_request
@login_required
def _require_login():
    """Every page of this blueprint needs a logged-in agent."""


def _org():
    """The logged-in agent's organisation: the scope of every query here."""
    return current_user.organisation


def _owned_or_404(model, obj_id):
    """The row of ``model`` with ``obj_id`` if it belongs to the agent's organisation, else 404."""
    obj = db.session.get(model, obj_id) if obj_id is not None else None
    if obj is None or obj.organisation_id != current_user.organisation_id:
        abort(404)
    return obj


@bp.get("/")
def index():
    """``/``: the agenda is the agents' home page."""
    return redirect(url_for("pages.agenda"))


@bp.get("/agenda")
def agenda():
    """``/agenda?date=&view=day|week&agent=me|<id>|all``: the rdvs of a day or a week.

    Days are the organisation's local days; an unreadable date shows today
    rather than an error, since the parameters come from the page's own links.
    """
    org = _org()
    tz = org.tz
    view = "week" if request.args.get("view") == "week" else "day"
    try:
        day = (
            parse_date(request.args["date"])
            if request.args.get("date")
            else utcnow().astimezone(tz).date()
        )
    except ValueError:
        day = utcnow().astimezone(tz).date()
    if view == "week":
        first = day - timedelta(days=day.weekday())
        days = [first + timedelta(days=i) for i in range(7)]
    else:
        days = [day]
    start = localize(datetime.combine(days[0], datetime.min.time()), tz)
    end = localize(datetime.combine(days[-1] + timedelta(days=1), datetime.min.time()), tz)
    agent_param = request.args.get("agent", "me")
    query = (
        select(Rdv)
        .where(Rdv.organisation_id == org.id, Rdv.starts_at >= start, Rdv.starts_at < end)
        .options(
            selectinload(Rdv.participations).selectinload(Participation.usager),
            selectinload(Rdv.motif),
            selectinload(Rdv.lieu),
            selectinload(Rdv.agent),
        )
        .order_by(Rdv.starts_at)
    )
    if agent_param == "me":
        query = query.where(Rdv.agent_id == current_user.id)
    elif agent_param.isascii() and agent_param.isdigit() and len(agent_param) < 12:
        query = query.where(Rdv.agent_id == int(agent_param))
    rdvs = db.session.scalars(query).all()
    by_day = {d: [] for d in days}
    for rdv in rdvs:
        by_day.setdefault(rdv.starts_at.astimezone(tz).date(), []).append(rdv)
    step = timedelta(days=7 if view == "week" else 1)
    agents = db.session.scalars(
        select(Agent).where(Agent.organisation_id == org.id).order_by(Agent.last_name)
    ).all()
    return render_template(
        "pages/agenda.html",
        view=view,
        day=day,
        by_day=by_day,
        tz=tz,
        agents=agents,
        agent_param=agent_param,
        previous=day - step,
        next=day + step,
        today=utcnow().astimezone(tz).date(),
    )


class BookingForm(FlaskForm):
    """The last step of the booking form: the chosen slot (hidden) and the usager.

    ``usager_id`` books an existing usager; otherwise the fields create one.
    """

    motif_id = HiddenField()
    lieu_id = HiddenField()
    agent_id = HiddenField()
    starts_at = HiddenField()
    usager_id = HiddenField()
    first_name = StringField("Prénom", validators=[Optional(), Length(max=100)])
    last_name = StringField("Nom", validators=[Optional(), Length(max=100)])
    phone = TelField("Téléphone mobile", validators=[Optional(), Length(max=32)])
    email = EmailField("Adresse e-mail", validators=[Optional(), Length(max=254)])
    notify_sms = BooleanField("Accepte les SMS", default=True)
    notify_email = BooleanField("Accepte les e-mails", default=True)
    waitlist = BooleanField("Prévenez-moi si un créneau plus tôt se libère", default=False)


def _int_arg(name):
    """A positive id from the query string or form, or ``None`` for anything else."""
    value = request.values.get(name, "")
    # isascii: "²".isdigit() is true but int("²") fails.
    number = int(value) if value.isascii() and value.isdigit() and len(value) < 12 else None
    return number if is_db_id(number) else None


@bp.route("/rdvs/new", methods=["GET", "POST"])
def new_rdv():
    """The booking form, in steps: motif → lieu → free slot → usager (found or created)."""
    org = _org()
    tz = org.tz
    motifs = db.session.scalars(
        select(Motif).where(Motif.organisation_id == org.id).order_by(Motif.name)
    ).all()
    motif = _owned_or_404(Motif, _int_arg("motif_id")) if _int_arg("motif_id") else None
    lieux = db.session.scalars(
        select(Lieu).where(Lieu.organisation_id == org.id).order_by(Lieu.name)
    ).all()
    lieu = _owned_or_404(Lieu, _int_arg("lieu_id")) if motif and _int_arg("lieu_id") else None
    form = BookingForm()
    slot_start = None
    slot_agent = None
    if lieu and request.values.get("starts_at") and _int_arg("agent_id"):
        try:
            slot_start = parse_iso(request.values["starts_at"], tz)
        except ValueError:
            abort(400)
        slot_agent = _owned_or_404(Agent, _int_arg("agent_id"))
    context = {
        "motifs": motifs,
        "motif": motif,
        "lieux": lieux,
        "lieu": lieu,
        "tz": tz,
        "slot_start": slot_start,
        "slot_agent": slot_agent,
        "form": form,
    }

    if request.method == "POST":
        if not (motif and lieu and slot_start and slot_agent):
            abort(400)
        if not form.validate_on_submit():
            return render_template("pages/rdv_new.html", step="usager", **context), 400
        try:
            usager_id = _int_arg("usager_id")
            if usager_id is None:
                data = {
                    "first_name": form.first_name.data,
                    "last_name": form.last_name.data,
                    "phone": form.phone.data,
                    "email": form.email.data,
                    "notify_sms": bool(form.notify_sms.data),
                    "notify_email": bool(form.notify_email.data),
                }
                duplicate = (
                    None if request.form.get("allow_duplicate") == "1" else _duplicate(org, data)
                )
                if duplicate is not None:
                    # The same person again: offer to book for them (or to create anyway).
                    return render_template(
                        "pages/rdv_new.html",
                        step="usager",
                        duplicate=duplicate,
                        usagers=[],
                        noshows=noshow_counts([duplicate.id]),
                        **context,
                    ), 409
                usager = create_usager(org, data, commit=False)
                db.session.flush()
                usager_id = usager.id
            rdv = book(
                org,
                motif_id=motif.id,
                lieu_id=lieu.id,
                agent_id=slot_agent.id,
                usager_ids=[usager_id],
                starts_at=slot_start,
                waitlist=bool(form.waitlist.data),
            )
        except DomainError as exc:
            db.session.rollback()
            for name, message in exc.fields.items():
                field = getattr(form, name, None)
                if field is not None and hasattr(field, "errors"):
                    field.errors = list(field.errors) + [message]
            flash(exc.message, "error")
            usagers = _usager_results(org)
            return render_template(
                "pages/rdv_new.html",
                step="usager",
                usagers=usagers,
                noshows=noshow_counts([u.id for u in usagers]),
                **context,
            ), exc.status
        flash("Rendez-vous enregistré. La confirmation part maintenant.", "success")
        return redirect(url_for("pages.show_rdv", rdv_id=rdv.id))

    if motif is None:
        return render_template("pages/rdv_new.html", step="motif", **context)
    if lieu is None:
        return render_template("pages/rdv_new.html", step="lieu", **context)
    if slot_start is None:
        try:
            week = parse_date(request.args.get("week", ""))
        except ValueError:
            week = utcnow().astimezone(tz).date()
        start = max(localize(datetime.combine(week, datetime.min.time()), tz), utcnow())
        end = localize(datetime.combine(week + timedelta(days=7), datetime.min.time()), tz)
        slots = free_slots(org, motif, start, end, lieu_id=lieu.id)
        agents = {
            a.id: a
            for a in db.session.scalars(select(Agent).where(Agent.organisation_id == org.id))
        }
        by_day: dict = {}
        for s in slots:
            by_day.setdefault(s.starts_at.astimezone(tz).date(), []).append(s)
        return render_template(
            "pages/rdv_new.html",
            step="slot",
            by_day=by_day,
            agents=agents,
            week=week,
            next_week=week + timedelta(days=7),
            previous_week=week - timedelta(days=7)
            if week > utcnow().astimezone(tz).date()
            else None,
            **context,
        )
    usagers, recent = _usager_results(org), _recent_usagers(org)
    return render_template(
        "pages/rdv_new.html",
        step="usager",
        usagers=usagers,
        recent=recent,
        noshows=noshow_counts([u.id for u in [*usagers, *recent]]),
        **context,
    )


def _duplicate(org, data: dict) -> Usager | None:
    """The known usager that ``data`` (the creation form) describes again, if any.

    Same rule as ``POST /api/v1/usagers`` (409 unless ``allow_duplicate``): same name and
    same mobile or e-mail. Invalid fields raise ``ValidationFailed``, every one at once.
    """
    clean = clean_usager_fields(data)
    return find_duplicate_usager(
        org, clean["first_name"], clean["last_name"], clean["phone"], clean["email"]
    )


def _usager_results(org):
    """The usagers matching the search box (``q``), none when it is empty."""
    q = request.values.get("q", "")
    return search_usagers(org, q) if q else []


def _recent_usagers(org, limit: int = 5) -> list[Usager]:
    """The usagers of the organisation's latest bookings: most bookings are for them."""
    latest = (
        select(Participation.usager_id, func.max(Rdv.created_at).label("booked"))
        .join(Rdv, Rdv.id == Participation.rdv_id)
        .where(Rdv.organisation_id == org.id)
        .group_by(Participation.usager_id)
        .subquery()
    )
    return list(
        db.session.scalars(
            select(Usager)
            .join(latest, latest.c.usager_id == Usager.id)
            .order_by(latest.c.booked.desc())
            .limit(limit)
        )
    )


@bp.get("/rdvs/<int:rdv_id>")
def show_rdv(rdv_id: int):
    """``/rdvs/<id>``: the rdv, its messages with their history, and the actions on it."""
    org = _org()
    try:
        rdv = get_rdv(org, rdv_id)
    except NotFound:
        abort(404)
    messages = db.session.scalars(
        select(Message)
        .where(Message.rdv_id == rdv.id)
        .order_by(Message.send_at, Message.id)
        .options(selectinload(Message.status_changes), selectinload(Message.events))
    ).all()
    inbound = db.session.scalars(
        select(InboundSms).where(InboundSms.rdv_id == rdv.id).order_by(InboundSms.received_at)
    ).all()
    lieux = db.session.scalars(
        select(Lieu).where(Lieu.organisation_id == org.id).order_by(Lieu.name)
    ).all()
    now = utcnow()
    movable = rdv.status == RDV_UNKNOWN and rdv.starts_at > now
    return render_template(
        "pages/rdv.html",
        rdv=rdv,
        messages=messages,
        timeline=build_timeline(rdv, messages, inbound),
        reasons={m.id: message_reason(m) for m in messages},
        tz=org.tz,
        lieux=lieux,
        now=now,
        form=FlaskForm(),
        move=_move_choices(org, rdv, now) if movable else None,
    )


MOVE_DAYS = 7  # days of free slots the move form shows at a time


def _move_choices(org, rdv: Rdv, now: datetime) -> dict:
    """The free slots an rdv may move to: its agent's, for its motif, at the chosen lieu.

    ``move_lieu_id`` and ``move_from`` (a date) in the query string choose the
    lieu and the first of the ``MOVE_DAYS`` days shown; the rdv's own time
    counts as free for the slots around it, and is not offered.
    """
    tz = org.tz
    lieu = _owned_or_404(Lieu, _int_arg("move_lieu_id")) if _int_arg("move_lieu_id") else rdv.lieu
    today = now.astimezone(tz).date()
    try:
        first_day = max(parse_date(request.args.get("move_from", "")), today)
    except ValueError:
        first_day = today
    start = max(localize(datetime.combine(first_day, datetime.min.time()), tz), now)
    last = first_day + timedelta(days=MOVE_DAYS)
    end = localize(datetime.combine(last, datetime.min.time()), tz)
    slots = free_slots(
        org,
        rdv.motif,
        start,
        end,
        lieu_id=lieu.id,
        agent_id=rdv.agent_id,
        now=now,
        exclude_rdv_id=rdv.id,
    )
    by_day: dict = {}
    for s in slots:
        if (s.starts_at, s.lieu_id) != (rdv.starts_at, rdv.lieu_id):
            by_day.setdefault(s.starts_at.astimezone(tz).date(), []).append(s)
    earlier = first_day - timedelta(days=MOVE_DAYS)
    return {
        "lieu": lieu,
        "first_day": first_day,
        "last_day": last - timedelta(days=1),
        "by_day": by_day,
        "next_from": last,
        "previous_from": max(earlier, today) if first_day > today else None,
    }


class CancelForm(FlaskForm):
    """The agent's cancellation, confirmed, with an optional reason for the timeline."""

    confirmed = HiddenField()
    reason = TextAreaField(
        "Motif de l'annulation (facultatif)",
        validators=[Optional(), Length(max=CANCEL_REASON_MAX)],
    )


@bp.get("/rdvs/<int:rdv_id>/cancel")
def confirm_cancel_rdv(rdv_id: int):
    """The confirmation step of the agent's cancellation: what it does, an optional reason."""
    try:
        rdv = get_rdv(_org(), rdv_id)
    except NotFound:
        abort(404)
    if rdv.is_cancelled:
        flash("Ce rendez-vous était déjà annulé.", "info")
        return redirect(url_for("pages.show_rdv", rdv_id=rdv_id))
    return render_template("pages/rdv_cancel.html", rdv=rdv, form=CancelForm())


@bp.post("/rdvs/<int:rdv_id>/cancel")
def cancel_rdv(rdv_id: int):
    """``POST /rdvs/<id>/cancel``: the agent cancels; the usager is told by the planned notice.

    Only from the confirmation step (``confirmed=yes``): a POST without it (an old page,
    a stray form) changes nothing and shows the confirmation step.
    """
    rdv = _rdv_for_action(rdv_id)
    form = CancelForm()
    if form.confirmed.data != "yes":
        return redirect(url_for("pages.confirm_cancel_rdv", rdv_id=rdv_id))
    if not form.validate():
        return render_template("pages/rdv_cancel.html", rdv=rdv, form=form), 422
    try:
        changed = cancel(rdv, via="agent", agent=current_user, reason=form.reason.data)
    except DomainError as exc:
        flash(exc.message, "error")
    else:
        flash("Rendez-vous annulé." if changed else "Ce rendez-vous était déjà annulé.", "success")
    return redirect(url_for("pages.show_rdv", rdv_id=rdv_id))


@bp.post("/rdvs/<int:rdv_id>/move")
def move_rdv(rdv_id: int):
    """``POST /rdvs/<id>/move``: new start and/or lieu; a refusal is shown, nothing changes."""
    rdv = _rdv_for_action(rdv_id)
    tz = rdv.organisation.tz
    try:
        new_start = parse_iso(request.form.get("starts_at", ""), tz)
    except ValueError:
        flash("Choisissez un des créneaux libres proposés.", "error")
        return redirect(url_for("pages.show_rdv", rdv_id=rdv_id))
    lieu_id = request.form.get("lieu_id", "")
    try:
        move(
            rdv,
            starts_at=new_start,
            lieu_id=int(lieu_id)
            if lieu_id.isascii() and lieu_id.isdigit() and len(lieu_id) < 12
            else None,
        )
    except DomainError as exc:
        flash(exc.message, "error")
    else:
        flash("Rendez-vous déplacé. L'usager est prévenu.", "success")
    return redirect(url_for("pages.show_rdv", rdv_id=rdv_id))


@bp.post("/rdvs/<int:rdv_id>/waitlist")
def rdv_waitlist(rdv_id: int):
    """``POST /rdvs/<id>/waitlist`` (``waitlist=1|0``): wait for an earlier slot, or no more."""
    rdv = _rdv_for_action(rdv_id)
    waiting = request.form.get("waitlist") == "1"
    try:
        set_waiting(rdv, waiting)
    except DomainError as exc:
        flash(exc.message, "error")
    else:
        flash(
            "Rendez-vous sur la liste d'attente." if waiting else "Retiré de la liste d'attente.",
            "success",
        )
    return redirect(url_for("pages.show_rdv", rdv_id=rdv_id))


@bp.post("/rdvs/<int:rdv_id>/status")
def rdv_status(rdv_id: int):
    """``POST /rdvs/<id>/status``: record that the usager came (``seen``) or not (``noshow``)."""
    rdv = _rdv_for_action(rdv_id)
    try:
        record_outcome(rdv, request.form.get("status", ""))
    except DomainError as exc:
        flash(exc.message, "error")
    else:
        flash("Statut enregistré.", "success")
    return redirect(url_for("pages.show_rdv", rdv_id=rdv_id))


def _rdv_for_action(rdv_id: int) -> Rdv:
    """The rdv an action POST targets: 400 without a valid CSRF token, 404 if not ours."""
    if not FlaskForm().validate_on_submit():
        abort(400, "Jeton CSRF manquant ou invalide.")
    try:
        return get_rdv(_org(), rdv_id)
    except NotFound:
        abort(404)
