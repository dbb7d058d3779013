"""Agent login and logout (Flask-Login, passwords hashed with scrypt)."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from sqlalchemy import func, select
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired, Email, Length

from .extensions import db, limiter
from .models import Agent

bp = Blueprint("auth", __name__)


class LoginForm(FlaskForm):
    email = EmailField(
        "Adresse e-mail",
        validators=[
            DataRequired("Indiquez votre e-mail."),
            Email("E-mail invalide."),
            Length(max=254),
        ],
    )
    password = PasswordField(
        "Mot de passe", validators=[DataRequired("Indiquez votre mot de passe."), Length(max=200)]
    )


def _safe_next(target: str | None) -> str:
    # Only local paths: never redirect to another site after login.
    if (
        target
        and target.startswith("/")
        and not target.startswith("//")
        and not urlsplit(target).netloc
    ):
        return target
    return url_for("pages.agenda")


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit("20 per minute", methods=["POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("pages.agenda"))
    form = LoginForm()
    if form.validate_on_submit():
        agent = db.session.scalar(
            select(Agent).where(func.lower(Agent.email) == form.email.data.strip().lower())
        )
        if agent is not None and agent.is_active and agent.check_password(form.password.data):
            login_user(agent)
            return redirect(_safe_next(request.args.get("next")))
        form.password.errors.append("E-mail ou mot de passe incorrect.")
    return render_template("pages/login.html", form=form), 422 if request.method == "POST" else 200


@bp.post("/logout")
@login_required
def logout():
    logout_user()
    flash("Vous êtes déconnecté.", "info")
    return redirect(url_for("auth.login"))
