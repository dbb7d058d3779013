"""Prometheus metrics, and ``GET /metrics`` in the text format.

Two kinds of figures:

* **Counters and histograms** kept by the processes that do the work
  (``prometheus_client``): messages reaching each status by channel and
  provider (:mod:`scheduler.transitions` and the receipt fast path), send
  latency per provider (timed by the adapters, :attr:`providers.base._TimedProvider.observe`),
  receipts, inbound SMS, webhook deliveries by outcome. Under gunicorn and
  with separate workers, set ``PROMETHEUS_MULTIPROC_DIR`` (the same directory
  for every process of the machine, emptied at start): each process writes
  its values there and ``/metrics`` adds them up (``prometheus_client``'s
  multiprocess mode). Without it, one process reports its own values.
* **Gauges read from the database and the queue** at scrape time, by the
  process that answers: jobs waiting in the queue, messages due and the age of
  the oldest due one (the alert that says "reminders are late"), webhook
  deliveries due and the age of the oldest. The database is the truth, so
  these are right whichever process died.

``/metrics`` needs ``Authorization: Bearer <METRICS_TOKEN>``; when the token
is unset the route answers 404, as if it did not exist (fail closed).
"""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, abort, current_app, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select

from providers import status as S

from .extensions import db
from .timeutil import utcnow

MESSAGES = Counter(
    "lapin_messages",
    "Messages that reached a status (created as scheduled, then each forward move).",
    ["status", "channel", "provider"],
)
SEND_SECONDS = Histogram(
    "lapin_send_duration_seconds",
    "Time a provider took to accept or refuse one message.",
    ["provider", "channel", "result"],
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
RECEIPTS = Counter(
    "lapin_receipts", "Delivery receipts received, by our status.", ["provider", "status"]
)
INBOUND_SMS = Counter("lapin_inbound_sms", "Inbound SMS received (first delivery).", ["provider"])
WEBHOOK_DELIVERIES = Counter(
    "lapin_webhook_deliveries",
    "Outbound webhook attempts by outcome (success, http_error, timeout, network_error, refused).",
    ["outcome"],
)
WEBHOOK_SECONDS = Histogram(
    "lapin_webhook_delivery_duration_seconds",
    "Time a webhook receiver took to answer.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0),
)


# --- what the working code calls ---


def message_status(status: str, channel: str | None, provider: str | None, n: int = 1) -> None:
    """``n`` messages reached ``status``."""
    MESSAGES.labels(status, channel or "", provider or "").inc(n)


def messages_status(status: str, rows) -> None:
    """Messages moved together: ``rows`` carry ``channel`` and ``provider``."""
    groups: dict[tuple, int] = {}
    for row in rows:
        key = (row.channel or "", row.provider or "")
        groups[key] = groups.get(key, 0) + 1
    for (channel, provider), n in groups.items():
        MESSAGES.labels(status, channel, provider).inc(n)


def observe_send(provider: str, channel: str, seconds: float, accepted: bool) -> None:
    """One provider call (the adapters' ``observe`` hook)."""
    SEND_SECONDS.labels(provider, channel, "accepted" if accepted else "error").observe(seconds)


def receipt(provider: str, status: str | None) -> None:
    RECEIPTS.labels(provider, status or "none").inc()


def inbound_sms(provider: str) -> None:
    INBOUND_SMS.labels(provider).inc()


def webhook_delivered(outcome: str, seconds: float) -> None:
    WEBHOOK_DELIVERIES.labels(outcome).inc()
    if outcome in ("success", "http_error"):
        WEBHOOK_SECONDS.observe(seconds)


# --- read at scrape time ---


class DatabaseCollector:
    """Gauges from the database and the queue, computed when scraped."""

    def __init__(self, app):
        self.app = app

    def collect(self):
        from gateway.models import Message, WebhookOutbox
        from scheduler.queue import pending_jobs

        now = utcnow()
        queue = GaugeMetricFamily("lapin_queue_jobs", "Jobs waiting in the queue.")
        queue.add_metric([], pending_jobs(self.app))
        yield queue
        due, oldest = db.session.execute(
            select(func.count(Message.id), func.min(Message.send_at)).where(
                Message.status == S.SCHEDULED, Message.send_at <= now
            )
        ).one()
        yield _gauge("lapin_messages_due", "Messages due and not yet queued.", due)
        yield _gauge(
            "lapin_oldest_due_message_age_seconds",
            "How late the oldest due message is (0 when none is due).",
            _age(now, oldest),
        )
        outbox = WebhookOutbox.__table__
        due, oldest = db.session.execute(
            select(func.count(), func.min(outbox.c.next_attempt_at)).where(
                outbox.c.status == "pending", outbox.c.next_attempt_at <= now
            )
        ).one()
        yield _gauge("lapin_webhooks_due", "Webhook deliveries due and not yet sent.", due)
        yield _gauge(
            "lapin_oldest_due_webhook_age_seconds",
            "How late the oldest due webhook delivery is (0 when none is due).",
            _age(now, oldest),
        )
        db.session.rollback()


def _gauge(name: str, documentation: str, value) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(name, documentation)
    gauge.add_metric([], float(value or 0))
    return gauge


def _age(now, oldest) -> float:
    if oldest is None:
        return 0.0
    if oldest.tzinfo is None:  # SQLite's min() comes back as text or naive
        from datetime import UTC, datetime

        oldest = (datetime.fromisoformat(oldest) if isinstance(oldest, str) else oldest).replace(
            tzinfo=UTC
        )
    return max(0.0, (now - oldest).total_seconds())


def exposition(app) -> bytes:
    """The text of ``/metrics``: the processes' counters and the database gauges."""
    scrape = CollectorRegistry()
    scrape.register(DatabaseCollector(app))
    if app.config.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        workers = CollectorRegistry()
        multiprocess.MultiProcessCollector(workers)
        return generate_latest(workers) + generate_latest(scrape)
    return generate_latest(REGISTRY) + generate_latest(scrape)


bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics_route():
    token = current_app.config.get("METRICS_TOKEN")
    if not token:
        abort(404)
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), token.encode()
    ):
        return Response(
            "Jeton manquant ou invalide.\n",
            401,
            {"WWW-Authenticate": 'Bearer realm="metrics"', "Content-Type": "text/plain"},
        )
    return Response(exposition(current_app._get_current_object()), content_type=CONTENT_TYPE_LATEST)
