"""``/usagers/<id>``: a usager's history, for the agents of their organisation."""

from __future__ import annotations

from flask import Blueprint, abort, render_template
from flask_login import current_user, login_required

from .errors import NotFound
from .history import outcome, usager_history
from .timeutil import utcnow

bp = Blueprint("usager_pages", __name__)


@bp.get("/usagers/<int:usager_id>")
@login_required
def show(usager_id: int):
    """The usager's rdvs (outcome, who cancelled and how), messages, confirmations, no-shows."""
    org = current_user.organisation
    now = utcnow()
    try:
        history = usager_history(org, usager_id, now)
    except NotFound:
        abort(404)
    return render_template(
        "pages/usager.html", h=history, outcome=lambda rdv: outcome(rdv, now), tz=org.tz
    )
