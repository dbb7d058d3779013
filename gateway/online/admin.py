"""The admins' page of online booking: the organisation's switch and URL, each motif's
settings (bookable online, minimum notice, maximum delay, public description).

Admins only (``Agent.is_admin``); every change is a POST with the form's CSRF
token that redirects back (no resubmission on reload). The rules are in
:func:`gateway.online.service.update_organisation_settings` and
:func:`~gateway.online.service.update_motif_settings`.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from sqlalchemy import select

from ..errors import ValidationFailed
from ..extensions import db
from ..models import Motif
from . import service

bp = Blueprint("online_admin", __name__, url_prefix="/admin/prise-de-rdv")


@bp.before_request
@login_required
def _admins_only():
    if not current_user.is_admin:
        abort(403)


def _check_csrf() -> None:
    if not FlaskForm().validate_on_submit():
        abort(400, "Jeton CSRF manquant ou invalide.")


def _number(name: str):
    value = request.form.get(name, "").strip()
    return int(value) if value.isascii() and value.isdigit() and len(value) < 9 else None


@bp.get("")
def index():
    """The organisation's settings and one form per motif."""
    org = current_user.organisation
    motifs = db.session.scalars(
        select(Motif).where(Motif.organisation_id == org.id).order_by(Motif.name)
    ).all()
    return render_template("pages/online_admin.html", org=org, motifs=motifs, form=FlaskForm())


@bp.post("/organisation")
def organisation():
    """Open or close the public pages; set their address."""
    _check_csrf()
    try:
        service.update_organisation_settings(
            current_user.organisation,
            online_booking=request.form.get("online_booking") == "y",
            slug=request.form.get("slug", ""),
        )
    except ValidationFailed as exc:
        db.session.rollback()
        flash(" ".join([exc.message, *exc.fields.values()]), "error")
    else:
        flash("Réglages de la prise de rendez-vous en ligne enregistrés.", "success")
    return redirect(url_for("online_admin.index"))


@bp.post("/motifs/<int:motif_id>")
def motif(motif_id: int):
    """One motif's online settings."""
    _check_csrf()
    row = db.session.get(Motif, motif_id)
    if row is None or row.organisation_id != current_user.organisation_id:
        abort(404)
    hours = _number("min_notice_hours")
    try:
        service.update_motif_settings(
            row,
            bookable_online=request.form.get("bookable_online") == "y",
            min_notice_minutes=hours * 60 if hours is not None else None,
            max_delay_days=_number("max_delay_days"),
            public_description=request.form.get("public_description", ""),
        )
    except ValidationFailed as exc:
        db.session.rollback()
        flash(f"{row.name} : " + " ".join([exc.message, *exc.fields.values()]), "error")
    else:
        flash(f"{row.name} : réglages enregistrés.", "success")
    return redirect(url_for("online_admin.index", _anchor=f"motif-{row.id}"))
