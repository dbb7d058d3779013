"""Configuration, read once from the environment (SPEC section 3, Environment).

Every setting the app uses is named here; nothing else reads ``os.environ``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path

DEFAULT_PUBLIC_BASE_URL = "http://127.0.0.1:5000"

# Variables passed through untouched to the provider registry.
PROVIDER_KEYS = (
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_FROM",
    "TWILIO_MESSAGING_SERVICE_SID",
    "TWILIO_API_BASE_URL",
    "VONAGE_API_KEY",
    "VONAGE_API_SECRET",
    "VONAGE_FROM",
    "VONAGE_REST_HOST",
    "VONAGE_SIGNATURE_SECRET",
    "VONAGE_SIGNATURE_METHOD",
    "SMTP_HOST",
    "SMTP_PORT",
    "SMTP_USERNAME",
    "SMTP_PASSWORD",
    "SMTP_STARTTLS",
    "MAIL_FROM",
    "SIMULATOR_LATENCY",
    "SIMULATOR_FAILURE_RATE",
)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def instance_path(environ: Mapping[str, str] | None = None) -> str:
    """The instance folder (generated secret key, default SQLite file), as an absolute path.

    ``INSTANCE_PATH``, relative paths taken from the working directory; by
    default ``./instance`` of the working directory, never the package's own
    directory (in a wheel install that is site-packages).
    """
    env = os.environ if environ is None else environ
    return os.path.abspath(env.get("INSTANCE_PATH") or "instance")


def from_environment(instance_path: str, environ: Mapping[str, str] | None = None) -> dict:
    """Build the Flask config mapping from environment variables.

    ``SECRET_KEY`` is required when ``FLASK_ENV``/``GATEWAY_ENV`` says production;
    in development a key is generated once and kept in the instance folder, so
    sessions survive restarts of ``make run``.
    """
    env = dict(os.environ if environ is None else environ)
    production = env.get("GATEWAY_ENV", "").lower() == "production"
    secret = env.get("SECRET_KEY")
    if not secret:
        if production:
            raise RuntimeError("SECRET_KEY must be set when GATEWAY_ENV=production")
        secret = _instance_secret(instance_path)
    database_url = env.get("DATABASE_URL") or "sqlite:///" + str(
        Path(instance_path) / "lapin.sqlite3"
    )
    if database_url.startswith("postgres://"):
        # Heroku-style URLs; SQLAlchemy wants the dialect spelled out.
        database_url = "postgresql+psycopg://" + database_url[len("postgres://") :]
    elif database_url.startswith("postgresql://"):
        database_url = "postgresql+psycopg://" + database_url[len("postgresql://") :]
    config = {
        "SECRET_KEY": secret,
        "SQLALCHEMY_DATABASE_URI": database_url,
        # Seconds a request waits for an unreachable database before answering 503.
        "DATABASE_CONNECT_TIMEOUT": _positive_int(
            env.get("DATABASE_CONNECT_TIMEOUT"), 10, "DATABASE_CONNECT_TIMEOUT"
        ),
        "REDIS_URL": env.get("REDIS_URL") or None,
        "PUBLIC_BASE_URL": (env.get("PUBLIC_BASE_URL") or DEFAULT_PUBLIC_BASE_URL).rstrip("/"),
        "SMS_PROVIDERS": _list(env.get("SMS_PROVIDERS") or "simulator"),
        "EMAIL_PROVIDER": (env.get("EMAIL_PROVIDER") or "simulator").strip(),
        "REMINDER_OFFSETS": env.get("REMINDER_OFFSETS") or "48h",
        "QUIET_HOURS": env.get("QUIET_HOURS") or "20:00-08:00",
        "PRODUCTION": production,
        # Bodies above this size are refused with 413 before any parsing.
        "MAX_CONTENT_LENGTH": int(env.get("MAX_CONTENT_LENGTH") or 256 * 1024),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": _truthy(env.get("SESSION_COOKIE_SECURE")) or production,
        "WTF_CSRF_TIME_LIMIT": None,
        # Embedded mode (no REDIS_URL): run a worker and scheduler thread in the web process.
        "EMBEDDED_WORKER": not _truthy(env.get("EMBEDDED_WORKER_DISABLED")),
        "RATELIMIT_STORAGE_URI": env.get("REDIS_URL") or "memory://",
        # Messages, inbound SMS and receipts are anonymised after this many days.
        "RETENTION_DAYS": _positive_int(env.get("RETENTION_DAYS"), 183, "RETENTION_DAYS"),
        "CANCEL_LINK_RATE_LIMIT": env.get("CANCEL_LINK_RATE_LIMIT") or "30 per minute;300 per day",
        # How many waiting usagers one freed slot is offered to at once (docs/waitlist.md).
        "WAITLIST_OFFERS_PER_SLOT": _positive_int(
            env.get("WAITLIST_OFFERS_PER_SLOT"), 3, "WAITLIST_OFFERS_PER_SLOT"
        ),
        # Online booking (docs/online-booking.md): codes asked and codes tried per client
        # address, and the live online rdvs one usager (mobile or email) may hold.
        "ONLINE_CODE_RATE_LIMIT": env.get("ONLINE_CODE_RATE_LIMIT") or "10 per hour;30 per day",
        "ONLINE_CHECK_RATE_LIMIT": env.get("ONLINE_CHECK_RATE_LIMIT") or "30 per hour",
        "ONLINE_MAX_LIVE_RDVS": _positive_int(
            env.get("ONLINE_MAX_LIVE_RDVS"), 3, "ONLINE_MAX_LIVE_RDVS"
        ),
        "PROVIDER_SETTINGS": {k: env[k] for k in PROVIDER_KEYS if env.get(k)},
        # Bearer token of /metrics; unset: /metrics answers 404.
        "METRICS_TOKEN": (env.get("METRICS_TOKEN") or "").strip() or None,
        # Outbound webhooks may reach loopback and private addresses (tests, make run).
        "WEBHOOK_ALLOW_PRIVATE": _truthy(env.get("WEBHOOK_ALLOW_PRIVATE")),
        # Unsigned Vonage webhooks (no VONAGE_SIGNATURE_SECRET): refused unless "accept".
        "VONAGE_UNSIGNED_WEBHOOKS": _unsigned_vonage(env, production),
        # Proxies in front of the app whose X-Forwarded-For is trusted (Werkzeug's ProxyFix).
        "PROXY_FIX_X_FOR": _non_negative_int(env.get("PROXY_FIX_X_FOR"), "PROXY_FIX_X_FOR"),
        # prometheus_client's multiprocess mode (gunicorn, workers); read by the library too.
        "PROMETHEUS_MULTIPROC_DIR": env.get("PROMETHEUS_MULTIPROC_DIR") or None,
        # The pages' identity (docs/configuration.md, "Look"): DSFR either way.
        "BRAND": _brand(env.get("BRAND")),
    }
    config.update(_pipeline_settings(env))
    return config


def engine_options(database_url: str, connect_timeout: int) -> dict:
    """SQLAlchemy engine options: survive a database restart or a network cut.

    ``pool_pre_ping`` tests each pooled connection before use, so connections the
    server or the network dropped are replaced instead of failing a request once
    the database is back; ``connect_timeout`` (PostgreSQL) bounds how long a
    request waits for an unreachable server before it answers 503.
    """
    if database_url.startswith("sqlite"):
        return {}
    options: dict = {"pool_pre_ping": True}
    if database_url.startswith("postgresql"):
        options["connect_args"] = {"connect_timeout": connect_timeout}
    return options


def _pipeline_settings(env: Mapping[str, str]) -> dict:
    """The sending pipeline's knobs (docs/pipeline.md, "Tuning"); 0 rate = unlimited."""

    def number(key: str, default: float, kind: type = int):
        value = (env.get(key) or "").strip()
        if not value:
            return default
        try:
            return kind(value)
        except ValueError:
            raise RuntimeError(f"{key} must be a number, got {value!r}") from None

    settings = {
        "SEND_BATCH_SIZE": number("SEND_BATCH_SIZE", 1000),
        "DISPATCH_LIMIT": number("DISPATCH_LIMIT", 5000),
        "DISPATCH_INTERVAL": number("DISPATCH_INTERVAL", 2.0, float),
        "RECONCILE_INTERVAL": number("RECONCILE_INTERVAL", 60.0, float),
        "DISPATCH_MAX_PENDING_JOBS": number("DISPATCH_MAX_PENDING_JOBS", 500),
        "SMS_CONCURRENCY": number("SMS_CONCURRENCY", 128),
        # Outcomes are written back every this many sends (0: SMS_CONCURRENCY); see jobs._send_all.
        "WRITE_BACK_EVERY": number("WRITE_BACK_EVERY", 0),
        "EMAIL_CONCURRENCY": number("EMAIL_CONCURRENCY", 8),
        "MAX_ATTEMPTS_PER_PROVIDER": number("MAX_ATTEMPTS_PER_PROVIDER", 3),
        "RETRY_BASE_SECONDS": number("RETRY_BASE_SECONDS", 30.0, float),
        "RETRY_MAX_SECONDS": number("RETRY_MAX_SECONDS", 1800.0, float),
        "SENDING_TIMEOUT": number("SENDING_TIMEOUT", 600.0, float),
        "QUEUED_TIMEOUT": number("QUEUED_TIMEOUT", 300.0, float),
        "SEND_JOB_TIMEOUT": number("SEND_JOB_TIMEOUT", 300),
        # Outbound webhooks (docs/webhooks.md): seconds to wait for a receiver, parallel
        # requests per worker, rows per delivery job and per dispatch round, seconds
        # before a row claimed by a dead job is due again.
        "WEBHOOK_TIMEOUT": number("WEBHOOK_TIMEOUT", 10.0, float),
        "WEBHOOK_CONCURRENCY": number("WEBHOOK_CONCURRENCY", 100),
        "WEBHOOK_BATCH_SIZE": number("WEBHOOK_BATCH_SIZE", 200),
        "WEBHOOK_DISPATCH_LIMIT": number("WEBHOOK_DISPATCH_LIMIT", 5000),
        "WEBHOOK_SENDING_TIMEOUT": number("WEBHOOK_SENDING_TIMEOUT", 300.0, float),
        "SIMULATOR_RECEIPTS": (env.get("SIMULATOR_RECEIPTS") or "true").strip().lower()
        not in {"0", "false", "no", "off"},
    }
    for provider in ("TWILIO", "VONAGE", "SIMULATOR", "SMTP"):
        key = f"{provider}_RATE_PER_SECOND"
        settings[key] = number(key, 0.0, float)
    return settings


BRANDS = ("etat", "neutral")


def _brand(value: str | None) -> str:
    """``etat``: the State identity (Marianne font, "République Française" block), reserved
    to State services; ``neutral`` (default): the same design system without them."""
    brand = (value or "neutral").strip().lower()
    if brand not in BRANDS:
        raise RuntimeError(f"BRAND must be one of {', '.join(BRANDS)}, not {value!r}")
    return brand


def _unsigned_vonage(env: Mapping[str, str], production: bool) -> bool:
    """``VONAGE_UNSIGNED_WEBHOOKS``: True for ``accept``; refused in production.

    Any value but ``accept``, ``refuse`` or nothing is a typo, and a typo must not
    open the webhooks: it stops the start instead.
    """
    value = (env.get("VONAGE_UNSIGNED_WEBHOOKS") or "refuse").strip().lower()
    if value not in {"accept", "refuse"}:
        raise RuntimeError(f"VONAGE_UNSIGNED_WEBHOOKS must be accept or refuse, not {value!r}")
    if value == "accept" and production:
        raise RuntimeError(
            "VONAGE_UNSIGNED_WEBHOOKS=accept is refused when GATEWAY_ENV=production: "
            "set VONAGE_SIGNATURE_SECRET instead"
        )
    return value == "accept"


def _non_negative_int(value: str | None, name: str) -> int:
    if value is None or not value.strip():
        return 0
    try:
        number = int(value)
    except ValueError:
        raise RuntimeError(f"{name} must be a whole number, not {value!r}") from None
    if number < 0:
        raise RuntimeError(f"{name} must be 0 or more, not {number}")
    return number


def _positive_int(value: str | None, default: int, name: str) -> int:
    if value is None or not value.strip():
        return default
    try:
        number = int(value)
    except ValueError:
        raise RuntimeError(f"{name} must be a whole number, not {value!r}") from None
    if number <= 0:
        raise RuntimeError(f"{name} must be positive, not {number}")
    return number


def _list(value: str) -> list[str]:
    return [item.strip().lower() for item in value.split(",") if item.strip()]


def _instance_secret(instance_path: str) -> str:
    path = Path(instance_path) / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        path.write_text(key)
        path.chmod(0o600)
        return key
