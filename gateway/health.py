"""``GET /health``: the state of the database and the queue, for operators."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

from .extensions import db

bp = Blueprint("health", __name__)


@bp.get("/health")
def health():
    checks = {}
    ok = True
    try:
        db.session.execute(text("SELECT 1"))
        checks["database"] = {"status": "ok", "dialect": db.engine.dialect.name}
    except Exception as exc:  # noqa: BLE001 - any failure means "down"
        db.session.rollback()
        ok = False
        checks["database"] = {"status": "error", "error": exc.__class__.__name__}
    from scheduler.queue import queue_health

    checks["queue"] = queue_health(current_app)
    ok = ok and checks["queue"]["status"] == "ok"
    return jsonify(status="ok" if ok else "error", **checks), 200 if ok else 503
