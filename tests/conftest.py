"""Fixtures for the whole suite.

The suite runs on SQLite and the embedded queue by default; with
``TEST_DATABASE_URL`` (PostgreSQL) and ``TEST_REDIS_URL`` set it runs on them.
The schema is created once per session by the real Alembic migrations, and
every test starts from empty tables.
"""

from __future__ import annotations

import os
import tempfile
from datetime import time

import pytest
from flask import g
from flask.testing import FlaskClient
from sqlalchemy import text

from gateway import create_app
from gateway.cli import migrate_to_head
from gateway.extensions import db

from .factories import World, make_world

# The app's instance folder defaults to ./instance of the working directory: the
# suite keeps its generated secret and files in a folder of its own instead.
os.environ.setdefault("INSTANCE_PATH", tempfile.mkdtemp(prefix="lapin-test-instance-"))


def _database_url(tmp_path_factory) -> str:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        return url
    return "sqlite:///" + str(tmp_path_factory.mktemp("db") / "test.sqlite3")


@pytest.fixture(scope="session")
def database_url(tmp_path_factory) -> str:
    url = _database_url(tmp_path_factory)
    if url.startswith("postgresql"):
        # Start from nothing: the migrations are part of what is tested.
        from sqlalchemy import create_engine

        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    return url


@pytest.fixture(scope="session")
def redis_url() -> str | None:
    return os.environ.get("TEST_REDIS_URL") or None


@pytest.fixture(scope="session")
def _migrated(database_url, tmp_path_factory):
    app = create_app(_test_config(database_url, tmp_path_factory.mktemp("instance")))
    with app.app_context():
        migrate_to_head()
        db.engine.dispose()
    return True


def _test_config(database_url: str, instance) -> dict:
    return {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SECRET_KEY": "test-secret",
        "WTF_CSRF_ENABLED": False,
        "EMBEDDED_WORKER": False,
        "PUBLIC_BASE_URL": "https://lapin.test",
        "SMS_PROVIDERS": ["simulator"],
        "EMAIL_PROVIDER": "simulator",
        "REMINDER_OFFSETS": "48h",
        "QUIET_HOURS": "20:00-08:00",
        "RATELIMIT_ENABLED": False,
        "PROVIDER_SETTINGS": {},
        # Outbound webhooks go to receivers on 127.0.0.1 in tests.
        "WEBHOOK_ALLOW_PRIVATE": True,
    }


@pytest.fixture
def app_config(database_url, tmp_path) -> dict:
    """The test configuration; override keys in a test before using ``app``."""
    return _test_config(database_url, tmp_path)


class _Client(FlaskClient):
    """A test client that does not share Flask-Login's per-context user cache.

    Tests keep an app context open (to use ``db.session``), and Flask reuses it
    for requests, so ``g._login_user`` would leak from one client to the next.
    """

    def open(self, *args, **kwargs):
        g.pop("_login_user", None)
        try:
            return super().open(*args, **kwargs)
        finally:
            g.pop("_login_user", None)


@pytest.fixture
def app(app_config, _migrated):
    app = create_app(app_config)
    app.test_client_class = _Client
    with app.app_context():
        _empty_tables()
        yield app
        db.session.remove()
        db.engine.dispose()


def _empty_tables() -> None:
    tables = [t.name for t in reversed(db.Model.metadata.sorted_tables)]
    if db.engine.dialect.name == "postgresql":
        db.session.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
    else:
        for name in tables:
            db.session.execute(text(f"DELETE FROM {name}"))
    db.session.commit()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def world(app) -> World:
    """One organisation (Europe/Paris) with two lieux, two agents, motifs,
    weekday opening hours 09:00-12:00 and 14:00-17:00, and two usagers."""
    return make_world(opening=((time(9), time(12)), (time(14), time(17))))


@pytest.fixture
def login(client, world):
    """Log ``world.agent`` in on ``client``."""
    response = client.post("/login", data={"email": world.agent.email, "password": world.password})
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def pytest_sessionfinish(session, exitstatus):
    """With ``LAPIN_NO_SKIP=1`` (CI's PostgreSQL + Redis run) a skipped test fails the run."""
    if os.environ.get("LAPIN_NO_SKIP") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        reporter.write_line(
            f"LAPIN_NO_SKIP=1: {len(skipped)} test(s) skipped, which this run forbids", red=True
        )
        session.exitstatus = 1
