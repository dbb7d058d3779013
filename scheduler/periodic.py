"""The periodic jobs: dispatch what is due every ~2 s, reconcile every minute,
queue the retention job every hour.

One loop serves both deployments, on the same code path:

* ``gateway scheduler`` runs it in the foreground (production, with Redis);
* in embedded mode (``make run``: no ``REDIS_URL``) the web process runs it in
  a daemon thread, next to the embedded worker thread, both started on the
  first request (see :func:`start_embedded`).

Why a plain loop rather than RQ's ``CronScheduler``: cron would only *enqueue*
a dispatch job every 2 s, which then waits in the same FIFO as the send
batches (so dispatch slows down exactly when the backlog grows), and embedded
mode has no RQ at all. The loop dispatches itself (a few SQL statements),
and applies back-pressure: it stops queueing when ``DISPATCH_MAX_PENDING_JOBS``
jobs already wait, so a backlog stays in the database, where it is safe, rather
than in Redis. Several schedulers at once are safe (row claims, see
:mod:`scheduler.dispatch`), they only add database work.
"""

from __future__ import annotations

import logging
import threading
import time

from flask import Flask

from gateway.extensions import db
from gateway.waitlist import dispatch_freed_slots

from .dispatch import dispatch_due, reconcile_stale
from .queue import embedded_queue, enqueue, pending_jobs
from .webhook_delivery import dispatch_webhooks, reconcile_webhooks

log = logging.getLogger(__name__)


def tick(app: Flask, reconcile: bool = False) -> dict[str, int]:
    """One round: dispatch until the backlog is empty or the queue is full; maybe reconcile."""
    done = {"queued": 0}
    limit = app.config["DISPATCH_LIMIT"]
    max_pending = app.config["DISPATCH_MAX_PENDING_JOBS"]
    with app.app_context():
        try:
            if reconcile:
                done.update(reconcile_stale())
                reclaimed = reconcile_webhooks()
                if reclaimed:
                    done["webhooks_reclaimed"] = reclaimed
            while pending_jobs(app) < max_pending:
                count = dispatch_due(limit=limit)
                done["queued"] += count
                if count < limit:
                    break
            webhooks = dispatch_webhooks()  # outbound webhooks: the outbox rows due now
            if webhooks:
                done["webhooks"] = webhooks
            offers = dispatch_freed_slots()  # the waiting list: freed slots to offer now
            if offers:
                done["freed_slots"] = offers
        finally:
            db.session.remove()
    return done


def run_forever(app: Flask, stop: threading.Event | None = None) -> None:
    """Tick every ``DISPATCH_INTERVAL`` seconds, reconcile every ``RECONCILE_INTERVAL``.

    An error (database restarting, Redis down) is logged and the loop goes on:
    the next tick retries, and nothing is lost since the rows are the truth.
    """
    stop = stop or threading.Event()
    interval = float(app.config["DISPATCH_INTERVAL"])
    reconcile_every = float(app.config["RECONCILE_INTERVAL"])
    last_reconcile = 0.0
    # Retention is slow on big tables: it runs as a job, hourly, off the dispatch path.
    retention_every = float(app.config.get("RETENTION_INTERVAL", 3600.0))
    last_retention = time.monotonic()
    log.info("scheduler: dispatch every %.1f s, reconcile every %.0f s", interval, reconcile_every)
    while not stop.is_set():
        now = time.monotonic()
        reconcile = now - last_reconcile >= reconcile_every
        try:
            if now - last_retention >= retention_every:
                with app.app_context():
                    enqueue("scheduler.retention.retention_job")
                last_retention = now
            done = tick(app, reconcile=reconcile)
            if reconcile:
                last_reconcile = now
            if done.get("queued") or done.get("webhooks") or done.get("freed_slots"):
                log.info("scheduler: %s", done)
        except Exception:  # the scheduler must outlive a bad tick
            log.exception("scheduler tick failed")
        stop.wait(interval)


_embedded_lock = threading.Lock()


def start_embedded(app: Flask) -> bool:
    """Start the embedded worker and scheduler threads of ``app`` (once); True if started now.

    Embedded mode only: no ``REDIS_URL`` and ``EMBEDDED_WORKER`` on. Called on
    the first request, so CLI commands and tests never start threads.
    """
    if app.config.get("REDIS_URL") or not app.config.get("EMBEDDED_WORKER"):
        return False
    with _embedded_lock:
        if app.extensions.get("lapin_embedded_scheduler"):
            return False
        embedded_queue(app).start_worker()
        stop = app.extensions["lapin_embedded_stop"] = threading.Event()
        thread = threading.Thread(
            target=run_forever, args=(app, stop), name="lapin-embedded-scheduler", daemon=True
        )
        app.extensions["lapin_embedded_scheduler"] = thread
        thread.start()
    log.info("embedded worker and scheduler started")
    return True
