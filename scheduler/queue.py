"""The job queue: RQ on Redis when ``REDIS_URL`` is set, else embedded in-process.

Jobs are plain importable functions named by dotted path, with plain
arguments (ids, dicts), run inside an app context. Both back ends run the same
job functions; only the transport differs:

* **Redis** (``REDIS_URL``): ``enqueue`` puts an RQ job on the ``lapin`` queue;
  ``gateway worker`` runs it.
* **Embedded** (no ``REDIS_URL``, ``make run``): an in-process FIFO. When the
  app's ``EMBEDDED_WORKER`` is on, a daemon thread runs the jobs as they come;
  when it is off (tests), jobs wait until :func:`run_pending` runs them, so a
  test decides exactly when work happens.

The database stays the source of truth: a job lost with Redis or with the
process is re-created by the scheduler from the message rows.
"""

from __future__ import annotations

import importlib
import logging
import queue as _queue
import threading
from collections.abc import Callable

from flask import Flask, current_app

log = logging.getLogger(__name__)

QUEUE_NAME = "lapin"


def resolve(func_path: str) -> Callable:
    """Import ``package.module.function`` and return the function."""
    module_name, _, name = func_path.rpartition(".")
    return getattr(importlib.import_module(module_name), name)


class EmbeddedQueue:
    """A FIFO of (func_path, args, kwargs) run in the process that owns the app."""

    def __init__(self, app: Flask):
        self.app = app
        self.jobs: _queue.Queue = _queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def put(self, func_path: str, args: tuple, kwargs: dict) -> None:
        self.jobs.put((func_path, args, kwargs))

    def run_one(self, block: bool = False, timeout: float | None = None) -> bool:
        """Run the next job; False when there was none."""
        try:
            func_path, args, kwargs = self.jobs.get(block=block, timeout=timeout)
        except _queue.Empty:
            return False
        try:
            with self.app.app_context():
                resolve(func_path)(*args, **kwargs)
        except Exception:  # a failed job must not kill the embedded worker
            log.exception("embedded job %s failed", func_path)
        finally:
            self.jobs.task_done()
        return True

    def start_worker(self) -> None:
        """Start the daemon thread that runs jobs as they arrive (once)."""
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._loop, name="lapin-embedded-worker", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while True:
            self.run_one(block=True, timeout=1.0)


def embedded_queue(app: Flask) -> EmbeddedQueue:
    """The app's embedded queue (one per app object)."""
    ext = app.extensions.get("lapin_embedded_queue")
    if ext is None:
        ext = app.extensions["lapin_embedded_queue"] = EmbeddedQueue(app)
    return ext


def redis_connection(app: Flask):
    from redis import Redis

    conn = app.extensions.get("lapin_redis")
    if conn is None:
        conn = app.extensions["lapin_redis"] = Redis.from_url(app.config["REDIS_URL"])
    return conn


def rq_queue(app: Flask):
    from rq import Queue

    return Queue(QUEUE_NAME, connection=redis_connection(app))


def enqueue(func_path: str, *args, **kwargs) -> None:
    """Queue ``func_path(*args, **kwargs)`` on the configured back end."""
    app = current_app._get_current_object()
    if app.config.get("REDIS_URL"):
        rq_queue(app).enqueue(func_path, *args, **kwargs)
    else:
        embedded_queue(app).put(func_path, args, kwargs)


def run_pending(app: Flask, limit: int = 10_000) -> int:
    """Run queued jobs until none is left (jobs may queue more); returns how many ran.

    For the embedded queue this runs them in this thread; with Redis it runs an
    RQ ``SimpleWorker`` in burst mode. Used by tests and ``dispatch-due``.
    """
    if app.config.get("REDIS_URL"):
        from rq import SimpleWorker

        q = rq_queue(app)

        def done() -> int:
            return q.finished_job_registry.count + q.failed_job_registry.count

        before = done()
        with app.app_context():
            SimpleWorker([q], connection=q.connection).work(burst=True, logging_level="WARNING")
        return done() - before
    ran = 0
    q = embedded_queue(app)
    while ran < limit and q.run_one():
        ran += 1
    return ran


def queue_health(app: Flask) -> dict:
    """Queue status for ``/health``: Redis answers a PING, or the embedded queue is in use."""
    if not app.config.get("REDIS_URL"):
        return {"status": "ok", "backend": "embedded",
                "pending": embedded_queue(app).jobs.qsize()}
    from redis.exceptions import RedisError

    try:
        conn = redis_connection(app)
        conn.ping()
        pending = rq_queue(app).count
    except RedisError as exc:
        return {"status": "error", "backend": "redis", "error": exc.__class__.__name__}
    return {"status": "ok", "backend": "redis", "pending": pending}
