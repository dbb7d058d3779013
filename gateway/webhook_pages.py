"""The organisation admins' page of outbound webhooks: endpoints and every delivery attempt.

Admins only (``Agent.is_admin``): the page shows endpoint URLs and the
history of what was sent where. Re-enabling a disabled endpoint is the one
action here (a POST with the form's CSRF token); endpoints are created and
deleted through the API or ``gateway create-webhook-endpoint``, which show
the secret once.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from sqlalchemy import select

from .errors import NotFound
from .extensions import db
from .models import WebhookDelivery, WebhookEvent
from .webhook_endpoints import enable_endpoint, endpoints_of

bp = Blueprint("webhook_admin", __name__, url_prefix="/admin/webhooks")
ATTEMPTS_SHOWN = 200


@bp.before_request
@login_required
def _admins_only():
    if not current_user.is_admin:
        abort(403)


@bp.get("")
def index():
    """Endpoints of the organisation and the latest delivery attempts (optionally of one)."""
    org = current_user.organisation
    endpoints = endpoints_of(org)
    by_id = {e.id: e for e in endpoints}
    chosen = request.args.get("point", "")
    query = (
        select(WebhookDelivery, WebhookEvent.type, WebhookEvent.webhook_id)
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .where(WebhookDelivery.endpoint_id.in_(list(by_id) or [0]))
        .order_by(WebhookDelivery.at.desc(), WebhookDelivery.id.desc())
        .limit(ATTEMPTS_SHOWN)
    )
    if chosen.isascii() and chosen.isdigit() and int(chosen) in by_id:
        query = query.where(WebhookDelivery.endpoint_id == int(chosen))
    attempts = db.session.execute(query).all()
    return render_template(
        "pages/admin_webhooks.html",
        endpoints=endpoints,
        by_id=by_id,
        attempts=attempts,
        chosen=chosen,
        tz=org.tz,
        form=FlaskForm(),
    )


@bp.post("/<int:endpoint_id>/enable")
def enable(endpoint_id: int):
    """Re-enable a disabled endpoint: its waiting events go out again."""
    if not FlaskForm().validate_on_submit():
        abort(400, "Jeton CSRF manquant ou invalide.")
    try:
        enable_endpoint(current_user.organisation, endpoint_id)
    except NotFound:
        abort(404)
    flash("Point de réception réactivé : les événements en attente repartent.", "success")
    return redirect(url_for("webhook_admin.index"))
