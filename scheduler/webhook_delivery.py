"""Delivering the webhook outbox: when each event goes to each endpoint, retries, disabling.

The outbox rows (:class:`~gateway.models.WebhookOutbox`) are written with the
change they report (:mod:`gateway.events`); this module reads them, like the
message pipeline reads message rows, and lives in ``scheduler/`` for the same
reason: it decides *when* things go, and a job carries them out.

* :func:`dispatch_webhooks` (every scheduler tick) claims the due rows
  (``pending`` -> ``sending``, one conditional UPDATE, committed) and queues
  delivery jobs of ``WEBHOOK_BATCH_SIZE`` rows. **Order per rdv**: a row is
  due only when no earlier row of the same rdv for the same endpoint is still
  ``pending`` or ``sending``, so an endpoint sees an rdv's events in the order
  they were written, even across retries (an event waiting for its retry
  holds back the later events of that rdv, and only those).
* :func:`deliver_job` signs and POSTs its rows concurrently
  (``WEBHOOK_CONCURRENCY`` threads; the threads touch no database) through
  :class:`providers.webhook.WebhookPoster`, then records every attempt
  (:class:`~gateway.models.WebhookDelivery`) and moves each row on.
* **Retries**: the Standard Webhooks schedule. A timeout, no answer, a refused
  address or a non-2xx answer is tried again after 5 s, 5 min, 30 min, 2 h,
  5 h, 10 h and 10 h; after the eighth attempt the row is ``failed`` (it can be
  replayed with ``gateway replay-webhooks``).
* **Disabling**: an endpoint whose attempts have all failed for a day
  (``failing_since``) is disabled, and the organisation's admins are emailed
  through the message pipeline. Its rows wait; re-enabling it (admin page)
  resumes them.
* **At least once**: a row whose job died stays ``sending`` until
  :func:`reconcile_webhooks` puts it back after ``WEBHOOK_SENDING_TIMEOUT``.
  A receiver may then see an event twice, always with the same
  ``webhook-id``, which is what the specification tells it to de-duplicate on.
"""

from __future__ import annotations

import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import UTC, datetime, timedelta

from flask import Flask, current_app, render_template
from sqlalchemy import and_, bindparam, exists, func, insert, select, update
from sqlalchemy.orm import aliased

from gateway.extensions import db
from gateway.models import (
    CHANNEL_EMAIL,
    Agent,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    WebhookOutbox,
)
from gateway.planning import new_message
from gateway.rendering import Rendered
from gateway.timeutil import utcnow
from providers.webhook import WebhookPoster, WebhookRequest, WebhookResult

from .queue import enqueue_many

log = logging.getLogger(__name__)

JOB = "scheduler.webhook_delivery.deliver_job"
# Delays after a failed attempt n (n = 1..7); the 8th failure is final (Standard Webhooks).
RETRY_DELAYS = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
DISABLE_AFTER = timedelta(days=1)
PENDING, SENDING, DELIVERED, FAILED = "pending", "sending", "delivered", "failed"

_outbox = WebhookOutbox.__table__
_endpoints = WebhookEndpoint.__table__
_events = WebhookEvent.__table__


def retry_delay(attempt: int) -> timedelta | None:
    """The wait after failed attempt ``attempt`` (1-based); None when it was the last."""
    return RETRY_DELAYS[attempt - 1] if 1 <= attempt <= len(RETRY_DELAYS) else None


def event_body(event_type: str, occurred_at: datetime, data: dict) -> str:
    """The JSON text POSTed (and signed): ``{"type", "timestamp", "data"}``."""
    timestamp = occurred_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return json.dumps(
        {"type": event_type, "timestamp": timestamp, "data": data},
        ensure_ascii=False,
        separators=(",", ":"),
    )


def dispatch_webhooks(now: datetime | None = None, limit: int | None = None) -> int:
    """Claim the due outbox rows (heads of their rdv's line) and queue delivery jobs."""
    config = current_app.config
    now = now or utcnow()
    limit = limit or config["WEBHOOK_DISPATCH_LIMIT"]
    earlier = aliased(_outbox)
    query = (
        select(_outbox.c.id)
        .join(_endpoints, _endpoints.c.id == _outbox.c.endpoint_id)
        .where(
            _outbox.c.status == PENDING,
            _outbox.c.next_attempt_at <= now,
            _endpoints.c.enabled.is_(True),
            ~exists().where(
                and_(
                    earlier.c.endpoint_id == _outbox.c.endpoint_id,
                    earlier.c.rdv_id == _outbox.c.rdv_id,
                    earlier.c.id < _outbox.c.id,
                    earlier.c.status.in_((PENDING, SENDING)),
                )
            ),
        )
        .order_by(_outbox.c.id)
        .limit(limit)
    )
    if db.engine.dialect.name == "postgresql":
        query = query.with_for_update(of=_outbox, skip_locked=True)
    ids = list(db.session.scalars(query))
    if not ids:
        db.session.rollback()
        return 0
    claimed = list(
        db.session.scalars(
            update(_outbox)
            .where(_outbox.c.id.in_(ids), _outbox.c.status == PENDING)
            .values(status=SENDING, claimed_at=now)
            .returning(_outbox.c.id)
        )
    )
    db.session.commit()
    size = max(1, int(config["WEBHOOK_BATCH_SIZE"]))
    claimed.sort()
    enqueue_many(JOB, [(claimed[i : i + size],) for i in range(0, len(claimed), size)])
    return len(claimed)


def reconcile_webhooks(now: datetime | None = None) -> int:
    """Rows ``sending`` for longer than ``WEBHOOK_SENDING_TIMEOUT`` (their job died): due again."""
    now = now or utcnow()
    cutoff = now - timedelta(seconds=float(current_app.config["WEBHOOK_SENDING_TIMEOUT"]))
    result = db.session.execute(
        update(_outbox)
        .where(_outbox.c.status == SENDING, _outbox.c.claimed_at < cutoff)
        .values(status=PENDING, next_attempt_at=now, claimed_at=None)
    )
    db.session.commit()
    return result.rowcount or 0


# One poster and one pool per process and setting: kept-alive connections are reused.
_posters: dict[tuple, WebhookPoster] = {}
_pools: dict[int, ThreadPoolExecutor] = {}
_lock = threading.Lock()


def poster_for(app: Flask) -> WebhookPoster:
    """The process's :class:`WebhookPoster` for the app's settings."""
    config = app.config
    key = (
        float(config["WEBHOOK_TIMEOUT"]),
        bool(config["WEBHOOK_ALLOW_PRIVATE"]),
        bool(config["PRODUCTION"]),
        int(config["WEBHOOK_CONCURRENCY"]),
    )
    with _lock:
        poster = _posters.get(key)
        if poster is None:
            poster = _posters[key] = WebhookPoster(
                timeout=key[0], allow_private=key[1], require_https=key[2], pool_size=key[3]
            )
        return poster


def _pool(size: int) -> ThreadPoolExecutor:
    with _lock:
        pool = _pools.get(size)
        if pool is None:
            pool = _pools[size] = ThreadPoolExecutor(size, thread_name_prefix="lapin-webhook")
        return pool


def deliver_job(outbox_ids: list[int]) -> dict[str, int]:
    """Job: POST the claimed rows among ``outbox_ids``; return counts by outcome."""
    app = current_app._get_current_object()
    rows = db.session.execute(
        select(
            _outbox.c.id,
            _outbox.c.attempts,
            _outbox.c.endpoint_id,
            _outbox.c.event_id,
            _endpoints.c.url,
            _endpoints.c.secret,
            _events.c.webhook_id,
            _events.c.type,
            _events.c.occurred_at,
            _events.c.data,
        )
        .join(_endpoints, _endpoints.c.id == _outbox.c.endpoint_id)
        .join(_events, _events.c.id == _outbox.c.event_id)
        .where(_outbox.c.id.in_(outbox_ids), _outbox.c.status == SENDING)
        .order_by(_outbox.c.id)
    ).all()
    db.session.commit()  # no transaction stays open while we wait for receivers
    if not rows:
        return {}
    poster = poster_for(app)
    requests = [
        WebhookRequest(r.url, r.secret, r.webhook_id, event_body(r.type, r.occurred_at, r.data))
        for r in rows
    ]
    concurrency = max(1, int(app.config["WEBHOOK_CONCURRENCY"]))
    counts: dict[str, int] = {}
    if concurrency == 1 or len(requests) == 1:
        pairs = [(row, poster.post(req)) for row, req in zip(rows, requests, strict=True)]
        _add(counts, record_results(pairs, utcnow()))
    else:
        # Written back as answers come, in chunks: a slow receiver does not hold back
        # the record of the others, and a killed worker leaves few rows to redo.
        pool = _pool(concurrency)
        futures = {
            pool.submit(poster.post, req): row for row, req in zip(rows, requests, strict=True)
        }
        done: list[tuple] = []
        for future in as_completed(futures):
            done.append((futures[future], future.result()))
            if len(done) >= concurrency:
                _add(counts, record_results(done, utcnow()))
                done = []
        if done:
            _add(counts, record_results(done, utcnow()))
    log.info("webhook deliveries: %s", counts)
    return counts


def _add(total: dict[str, int], more: dict[str, int]) -> None:
    for key, n in more.items():
        total[key] = total.get(key, 0) + n


def _outcome(result: WebhookResult) -> str:
    if result.ok:
        return "success"
    if result.refused:
        return "refused"
    if result.timed_out:
        return "timeout"
    return "http_error" if result.status_code is not None else "network_error"


def record_results(pairs: list[tuple], now: datetime) -> dict[str, int]:
    """Store each attempt, move each row on, update the endpoints' health; commit."""
    from gateway import metrics

    counts: dict[str, int] = {}
    attempts, updates = [], []
    health: dict[int, bool] = {}
    for row, result in pairs:
        attempt = row.attempts + 1
        outcome = _outcome(result)
        counts[outcome] = counts.get(outcome, 0) + 1
        metrics.webhook_delivered(outcome, result.duration)
        attempts.append(
            {
                "outbox_id": row.id,
                "event_id": row.event_id,
                "endpoint_id": row.endpoint_id,
                "attempt": attempt,
                "status_code": result.status_code,
                "error": (result.error or None) and result.error[:300],
                "duration_ms": int(result.duration * 1000),
                "at": now,
            }
        )
        error = (result.error or None) and result.error[:300]
        if result.ok:
            status, next_at, completed = DELIVERED, None, now
        elif retry_delay(attempt) is None:
            status, next_at, completed = FAILED, None, now
        else:
            status, next_at, completed = PENDING, now + retry_delay(attempt), None
        updates.append(
            {
                "b_id": row.id,
                "b_attempts": attempt,
                "b_code": result.status_code,
                "b_error": error,
                "b_status": status,
                "b_next": next_at,
                "b_completed": completed,
            }
        )
        health[row.endpoint_id] = health.get(row.endpoint_id, False) or result.ok
    db.session.execute(insert(WebhookDelivery.__table__), attempts)
    # One executemany: only rows still claimed change (a reconciled row is not overwritten).
    db.session.execute(
        update(_outbox)
        .where(_outbox.c.id == bindparam("b_id"), _outbox.c.status == SENDING)
        .values(
            attempts=bindparam("b_attempts"),
            last_status_code=bindparam("b_code"),
            last_error=bindparam("b_error"),
            status=bindparam("b_status"),
            claimed_at=None,
            next_attempt_at=func.coalesce(
                bindparam("b_next", type_=_outbox.c.next_attempt_at.type),
                _outbox.c.next_attempt_at,
            ),
            completed_at=bindparam("b_completed", type_=_outbox.c.completed_at.type),
        )
        .execution_options(synchronize_session=False),
        updates,
    )
    for endpoint_id, worked in health.items():
        _endpoint_health(endpoint_id, worked, now)
    db.session.commit()
    return counts


def _endpoint_health(endpoint_id: int, worked: bool, now: datetime) -> None:
    if worked:
        db.session.execute(
            update(_endpoints)
            .where(_endpoints.c.id == endpoint_id, _endpoints.c.failing_since.is_not(None))
            .values(failing_since=None)
        )
        return
    endpoint = db.session.get(WebhookEndpoint, endpoint_id, with_for_update=True)
    if endpoint is None or not endpoint.enabled:
        return
    if endpoint.failing_since is None:
        endpoint.failing_since = now
    elif now - endpoint.failing_since >= DISABLE_AFTER:
        disable_endpoint(endpoint, now)


def disable_endpoint(endpoint: WebhookEndpoint, now: datetime) -> None:
    """Disable a failing endpoint and email the organisation's admins (not committed)."""
    endpoint.enabled = False
    endpoint.disabled_at = now
    endpoint.disabled_reason = "échecs de livraison depuis plus de 24 heures"
    log.warning(
        "webhook endpoint %s disabled: failing since %s", endpoint.id, endpoint.failing_since
    )
    admins = db.session.scalars(
        select(Agent).where(
            Agent.organisation_id == endpoint.organisation_id,
            Agent.is_admin.is_(True),
            Agent.active.is_(True),
        )
    ).all()
    for admin in admins:
        context = {"endpoint": endpoint, "admin": admin, "organisation": endpoint.organisation}
        rendered = Rendered(
            subject="Lapin : point de réception de webhooks désactivé",
            body=render_template("messages/email/webhook_disabled.txt", **context).strip() + "\n",
        )
        new_message(
            organisation_id=endpoint.organisation_id,
            rdv=None,
            usager_id=None,
            channel=CHANNEL_EMAIL,
            kind="agent_alert",
            recipient=admin.email,
            send_at=now,
            now=now,
            rendered=rendered,
            agent_id=admin.id,
        )
