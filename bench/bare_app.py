"""The receipt storm's baselines: bare Flask endpoints that parse the same form.

``create_app()``: no database, no signature check, no logging: what is left
is Flask, Werkzeug's form parsing and gunicorn, the floor under any receipt
endpoint. ``create_app(insert=True)`` adds the least a durable receipt needs:
one ``INSERT`` per request, committed (autocommit, a prepared statement on a
per-thread psycopg connection, no ORM), into ``bench_bare_receipts`` of the
database named by ``BENCH_BARE_DSN``. Served by
``gunicorn 'bench.bare_app:create_app()'`` with the Procfile's settings.
"""

from __future__ import annotations

import os
import threading

from flask import Flask, request

TABLE = "bench_bare_receipts"
_local = threading.local()


def _connection():
    import psycopg

    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = _local.conn = psycopg.connect(os.environ["BENCH_BARE_DSN"], autocommit=True)
    return conn


def create_app(insert: bool = False) -> Flask:
    app = Flask(__name__)

    @app.post("/webhooks/twilio/status")
    def twilio_status():
        form = request.form
        if not form.get("MessageSid") or not form.get("MessageStatus"):
            return "missing fields", 400
        if insert:
            _connection().execute(
                f"INSERT INTO {TABLE} (sid, status) VALUES (%s, %s)",
                (form["MessageSid"], form["MessageStatus"]),
                prepare=True,
            )
        return "", 204

    @app.get("/")
    def index():
        return "ok"

    return app
