"""Lapin's Flask application: ``create_app`` is the factory."""

from __future__ import annotations

import logging
import os

from flask import Flask


def create_app(test_config: dict | None = None) -> Flask:
    """Create the app: config from the environment, then ``test_config`` on top."""
    from . import config
    from .resources import resource_dir

    app = Flask(
        __name__,
        instance_path=config.instance_path(),
        instance_relative_config=True,
        template_folder=resource_dir("templates"),
        static_folder=resource_dir("static"),
    )
    os.makedirs(app.instance_path, exist_ok=True)

    app.config.from_mapping(config.from_environment(app.instance_path))
    if test_config:
        app.config.update(test_config)
    _trust_proxies(app)
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from .log_privacy import install_log_masking

    install_log_masking()

    from .extensions import csrf, db, limiter, login_manager

    app.config.setdefault(
        "SQLALCHEMY_ENGINE_OPTIONS",
        config.engine_options(
            app.config["SQLALCHEMY_DATABASE_URI"], app.config["DATABASE_CONNECT_TIMEOUT"]
        ),
    )
    db.init_app(app)
    csrf.init_app(app)
    limiter.init_app(app)
    login_manager.init_app(app)
    _configure_database(app)

    from . import (
        api,
        auth,
        export,
        health,
        metrics,
        openapi,
        pages,
        stats,
        usager_pages,
        waitlist_pages,
        web,
        webhook_pages,
    )

    web.init_app(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(stats.bp)
    app.register_blueprint(export.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(webhook_pages.bp)
    app.register_blueprint(usager_pages.bp)
    app.register_blueprint(waitlist_pages.bp)
    csrf.exempt(api.bp)
    from . import online

    online.init_app(app)
    # Receipts, inbound SMS, /c/ links, simulator outbox.
    from webhooks import init_app as init_webhooks

    init_webhooks(app)

    from .cli import register_commands

    register_commands(app)

    with app.app_context():
        from .rendering import check_templates

        check_templates()
    _start_embedded_pipeline_on_first_request(app)
    return app


def _trust_proxies(app: Flask) -> None:
    """``PROXY_FIX_X_FOR`` > 0: take the client's address from that many ``X-Forwarded-For``
    hops (Werkzeug's ProxyFix), so rate limits key on the real client, not on the router.

    0 (the default) ignores the header: a client could otherwise pick its own
    address and escape every limit. Only ``x_for`` is trusted; the public URL
    comes from ``PUBLIC_BASE_URL``, never from forwarded headers.
    """
    hops = int(app.config.get("PROXY_FIX_X_FOR") or 0)
    if hops > 0:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=0, x_host=0, x_port=0)


def _start_embedded_pipeline_on_first_request(app: Flask) -> None:
    """Embedded mode (no REDIS_URL): worker and scheduler threads start with the first request.

    Lazily, so that CLI commands and tests (EMBEDDED_WORKER off) never start threads.
    """
    if app.config.get("REDIS_URL") or not app.config.get("EMBEDDED_WORKER"):
        return

    @app.before_request
    def _start_pipeline() -> None:
        if not app.extensions.get("lapin_embedded_scheduler"):
            from scheduler.periodic import start_embedded

            start_embedded(app)


def _configure_database(app: Flask) -> None:
    """SQLite: wait for the write lock instead of failing, and enforce foreign keys."""
    from sqlalchemy import event

    from .extensions import db

    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        return
    with app.app_context():
        engine = db.engine

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()
