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

Dead workers, the rule (:mod:`scheduler.jobs`): what a dead worker never
handed to a provider goes again within about a minute; what it may have
handed over waits for a receipt or ``SENDING_TIMEOUT``. Every tick asks RQ
for the jobs whose lease ran out (their worker stopped renewing it
``LEASE_SECONDS`` ago) and has them run again
(:func:`scheduler.queue.requeue_abandoned`); a run again claims only the rows
still ``queued``. In embedded mode the worker dies with this loop's process,
so the loop starts by queueing again what an earlier process left ``queued``
(:func:`recover_embedded`). The reconcile, every minute, stays the backstop
for everything else: ``sending`` rows past ``SENDING_TIMEOUT``, jobs lost with
Redis (``queued`` past ``QUEUED_TIMEOUT``), jobs out of retries.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime

from flask import Flask

from gateway.extensions import db
from gateway.timeutil import utcnow
from gateway.waitlist import dispatch_freed_slots

from .dispatch import dispatch_due, reconcile_stale, requeue_queued
from .queue import embedded_queue, enqueue, pending_jobs, requeue_abandoned
from .webhook_delivery import dispatch_webhooks, reconcile_webhooks

log = logging.getLogger(__name__)


def tick(app: Flask, reconcile: bool = False, now: datetime | None = None) -> dict[str, int]:
    """One round: maybe reconcile, queue again the jobs of dead workers, then dispatch
    until the backlog is empty or the queue is full.

    ``now`` (default: the clock) is for tests that play the scheduler at a
    later time; production passes nothing.
    """
    done = {"queued": 0}
    limit = app.config["DISPATCH_LIMIT"]
    max_pending = app.config["DISPATCH_MAX_PENDING_JOBS"]
    with app.app_context():
        try:
            if reconcile:
                done.update(reconcile_stale(now))
                reclaimed = reconcile_webhooks()
                if reclaimed:
                    done["webhooks_reclaimed"] = reclaimed
            abandoned = requeue_abandoned(app, now)
            if abandoned:
                done["abandoned"] = abandoned
            while pending_jobs(app) < max_pending:
                count = dispatch_due(now, limit=limit)
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


def recover_embedded(app: Flask) -> int:
    """Embedded mode, at start: queue again every row an earlier process left ``queued``.

    The embedded queue lives and dies with its process, worker thread included:
    a row ``queued`` before this process queued anything has no job any more
    (the embedded equivalent of a dead RQ worker's job), so it goes now instead
    of after ``QUEUED_TIMEOUT``. Rows left ``sending`` wait for
    ``SENDING_TIMEOUT`` as on RQ: they may have reached the provider. Returns
    how many rows were queued again.
    """
    if app.config.get("REDIS_URL"):
        return 0
    with app.app_context():
        try:
            count = requeue_queued(utcnow())
        finally:
            db.session.remove()
    if count:
        log.warning("embedded: %d message(s) left queued by an earlier process queued again", count)
    return count


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
    try:
        recover_embedded(app)
    except Exception:  # the database may be starting: the reconcile will catch up
        log.exception("embedded recovery failed")
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
