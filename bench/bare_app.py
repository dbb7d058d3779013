"""The receipt storm's baseline: a bare Flask endpoint that parses the same form.

No database, no signature check, no logging: what is left is Flask,
Werkzeug's form parsing and gunicorn, the floor under any receipt endpoint.
Served by ``gunicorn 'bench.bare_app:create_app()'`` with the Procfile's settings.
"""

from __future__ import annotations

from flask import Flask, request


def create_app() -> Flask:
    app = Flask(__name__)

    @app.post("/webhooks/twilio/status")
    def twilio_status():
        form = request.form
        if not form.get("MessageSid") or not form.get("MessageStatus"):
            return "missing fields", 400
        return "", 204

    @app.get("/")
    def index():
        return "ok"

    return app
