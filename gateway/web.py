"""What every HTML page shares: the login loader, filters, security headers, error pages."""

from __future__ import annotations

import math
import re
from datetime import datetime

from babel.dates import format_date
from flask import Flask, abort, jsonify, render_template, request
from flask_login import current_user
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter

from .extensions import db, login_manager
from .labels import (
    BOOKED_VIA_LABELS,
    CHANNEL_LABELS,
    INBOUND_ACTION_LABELS,
    KIND_LABELS,
    MESSAGE_STATUS_LABELS,
    OUTCOME_LABELS,
    STATUS_LABELS,
    VIA_LABELS,
    WAITLIST_OFFER_STATUS_LABELS,
)
from .models import LOCATION_TYPES, MAX_ID, Agent
from .phones import display_phone
from .rendering import hour

# Paths of the links sent to usagers (cancellation, online booking): their error pages
# speak to a usager (what to do, whom to call), never leading to the agents' login.
USAGER_LINK_PREFIXES = ("/c/", "/o/")
# Public pages for usagers (online booking): their errors speak to usagers too.
USAGER_PAGE_PREFIXES = (*USAGER_LINK_PREFIXES, "/prendre-rdv")
RETRY_AFTER_SECONDS = 60  # told to clients when the database is unreachable (503)


@login_manager.user_loader
def _load_agent(agent_id: str):
    agent = (
        db.session.get(Agent, int(agent_id)) if agent_id.isascii() and agent_id.isdigit() else None
    )
    return agent if agent is not None and agent.is_active else None


class IdConverter(IntegerConverter):
    """``<int:...>`` in URLs: a number beyond any primary key is a 404, not a database overflow."""

    def __init__(self, map, *args, **kwargs):
        kwargs.setdefault("max", MAX_ID)
        super().__init__(map, *args, **kwargs)


def init_app(app: Flask) -> None:
    app.url_map.converters["int"] = IdConverter
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Connectez-vous pour accéder à cette page."
    login_manager.login_message_category = "info"

    def local(value: datetime, fmt: str = "%d/%m/%Y %H:%M") -> str:
        if value is None:
            return ""
        tz = current_user.organisation.tz if current_user.is_authenticated else None
        return value.astimezone(tz).strftime(fmt) if tz else value.strftime(fmt)

    app.jinja_env.filters["local"] = local

    def frdate(value, fmt: str = "EEEE d MMMM y") -> str:
        if isinstance(value, datetime):
            tz = current_user.organisation.tz if current_user.is_authenticated else None
            value = value.astimezone(tz) if tz else value
        return format_date(value, fmt, locale="fr")

    app.jinja_env.filters["frdate"] = frdate
    app.jinja_env.filters["phone"] = display_phone
    app.jinja_env.filters["hour"] = lambda v, tz: hour(v, tz)
    app.jinja_env.globals.update(
        STATUS_LABELS=STATUS_LABELS,
        MESSAGE_STATUS_LABELS=MESSAGE_STATUS_LABELS,
        KIND_LABELS=KIND_LABELS,
        VIA_LABELS=VIA_LABELS,
        BOOKED_VIA_LABELS=BOOKED_VIA_LABELS,
        INBOUND_ACTION_LABELS=INBOUND_ACTION_LABELS,
        CHANNEL_LABELS=CHANNEL_LABELS,
        OUTCOME_LABELS=OUTCOME_LABELS,
        WAITLIST_OFFER_STATUS_LABELS=WAITLIST_OFFER_STATUS_LABELS,
        LOCATION_TYPES=LOCATION_TYPES,
    )

    @app.context_processor
    def _layout() -> dict:
        # The outbox exists only when the simulator is a configured provider (webhooks decides).
        return {
            "simulator_outbox": "simulator.outbox" in app.view_functions,
            "BRAND": app.config.get("BRAND", "neutral"),
        }

    @app.before_request
    def _refuse_unstorable_text():
        # PostgreSQL cannot store NUL in text: refuse it at the door (webhooks decide for
        # themselves).
        if request.path.startswith("/webhooks/"):
            return
        values = [*request.args.values(), *(request.view_args or {}).values()]
        if any(unstorable(v) for v in values) or (
            request.method != "GET" and any(unstorable(v) for v in request.form.values())
        ):
            abort(400, "Caractère invalide dans la requête.")

    @app.after_request
    def _security_headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "frame-ancestors 'none'; form-action 'self'",
        )
        if app.config.get("PRODUCTION"):
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        return response

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        if _wants_json():
            code = (exc.name or "error").lower().replace(" ", "_")
            return jsonify(error={"code": code, "message": exc.description, "fields": {}}), exc.code
        usager = request.path.startswith(USAGER_PAGE_PREFIXES)
        if exc.code == 404 and request.path.startswith(USAGER_LINK_PREFIXES):
            return render_template("pages/link_not_found.html"), 404
        return render_template("pages/error.html", error=exc, usager_page=usager), exc.code

    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    @app.errorhandler(PoolTimeout)
    def _database_unavailable(exc: Exception):
        # The database restarting or unreachable: 503, so that providers and clients retry;
        # a 500 would look like a bug. Nothing was committed by the failed request.
        try:
            db.session.rollback()
        except Exception:
            app.logger.debug("rollback after a database error failed", exc_info=True)
        app.logger.error(
            "database unavailable on %s %s (%s)",
            request.method,
            request.path,
            exc.__class__.__name__,
        )
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
        if _wants_json():
            body = jsonify(
                error={
                    "code": "unavailable",
                    "fields": {},
                    "message": "Base de données indisponible : réessayez dans un instant.",
                }
            )
            return body, 503, headers
        return render_template("pages/unavailable.html"), 503, headers

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        # Never leave a transaction half-done behind a 500.
        db.session.rollback()
        app.logger.exception("unhandled error on %s %s", request.method, request.path)
        if _wants_json():
            return jsonify(
                error={"code": "internal_error", "message": "Erreur interne.", "fields": {}}
            ), 500
        return render_template("pages/error.html", error=None), 500


def unstorable(value) -> bool:
    """Whether ``value`` (a string, or JSON nested in lists and dicts) holds text no database
    column can store: NUL (refused by PostgreSQL) or lone surrogates (not encodable in UTF-8)."""
    if isinstance(value, str):
        if "\x00" in value:
            return True
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(unstorable(k) or unstorable(v) for k, v in value.items())
    if isinstance(value, list):
        return any(unstorable(v) for v in value)
    return False


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def storable(value):
    """``value`` (JSON: strings, numbers, lists, dicts) with what no column can store replaced:
    NUL and lone surrogates by U+FFFD, infinite and NaN numbers by their text (JSON has none).

    For data we must keep though it is odd (a provider's webhook): refusing it would lose it.
    """
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value.replace("\x00", "\ufffd"))
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [storable(v) for v in value]
    return value


def _wants_json() -> bool:
    return request.path.startswith(("/api/", "/webhooks/")) or request.path.endswith(".json")
