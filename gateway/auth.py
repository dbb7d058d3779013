"""Agent login and logout (Flask-Login, passwords hashed with scrypt).

A login attempt always verifies one scrypt hash: the agent's, or a dummy one
for an unknown email, an inactive agent or one without a password. Otherwise
an unknown email answers in 2 ms and a known one in 100 ms, which tells anyone
which emails are agents' (issue 11, defect 8).
"""

from __future__ import annotations

import functools
import secrets
from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from sqlalchemy import func, select
from werkzeug.security import check_password_hash, generate_password_hash
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


@functools.cache
def dummy_hash() -> str:
    """A scrypt hash of a random password, made once per process, like an agent's."""
    return generate_password_hash(secrets.token_urlsafe(32), method="scrypt")


def _verify(agent: Agent | None, password: str) -> bool:
    """Whether ``agent`` may log in with ``password``; one hash verified in every case."""
    known = agent is not None and bool(agent.password_hash)
    valid = check_password_hash(agent.password_hash if known else dummy_hash(), password)
    return known and valid and agent.is_active


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
        if _verify(agent, form.password.data):
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
