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
from datetime import datetime

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
            self._thread = threading.Thread(
                target=self._loop, name="lapin-embedded-worker", daemon=True
            )
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
    enqueue_on(current_app._get_current_object(), func_path, *args, **kwargs)


def enqueue_on(app: Flask, func_path: str, *args, **kwargs) -> None:
    """:func:`enqueue` for code running outside an app context (e.g. sending threads)."""
    if app.config.get("REDIS_URL"):
        rq_queue(app).enqueue(func_path, *args, **kwargs)
    else:
        embedded_queue(app).put(func_path, args, kwargs)


def enqueue_many(
    func_path: str, args_list: list[tuple], job_timeout: int | None = None, retries: int = 0
) -> int:
    """Queue one job per argument tuple, in one Redis round trip; returns how many.

    ``job_timeout`` (seconds) and ``retries`` only matter on RQ: a job running
    longer is stopped; a job that fails, or whose worker died under it (see
    :func:`requeue_abandoned`), is queued again up to ``retries`` times. The
    embedded worker has neither (its jobs die with the process that runs them).
    """
    app = current_app._get_current_object()
    if not args_list:
        return 0
    if app.config.get("REDIS_URL"):
        from rq import Queue, Retry

        q = rq_queue(app)
        retry = Retry(max=retries) if retries else None
        q.enqueue_many(
            [
                Queue.prepare_data(func_path, args=tuple(args), timeout=job_timeout, retry=retry)
                for args in args_list
            ]
        )
    else:
        q = embedded_queue(app)
        for args in args_list:
            q.put(func_path, tuple(args), {})
    return len(args_list)


def pending_jobs(app: Flask) -> int:
    """How many jobs wait in the queue (the dispatcher's back-pressure signal)."""
    if app.config.get("REDIS_URL"):
        return rq_queue(app).count
    return embedded_queue(app).jobs.qsize()


# A running job's lease in RQ's registry of started jobs: renewed every
# HEARTBEAT_SECONDS while its worker lives, so that LEASE_SECONDS after a worker
# dies (SIGKILL, lost machine) its job counts as abandoned (requeue_abandoned).
HEARTBEAT_SECONDS = 10
LEASE_SECONDS = 30


def worker_class():
    """The RQ worker class of ``gateway worker`` (imported lazily: RQ is optional in tests)."""
    from rq import SimpleWorker
    from rq.worker import WorkerStatus

    class LapinWorker(SimpleWorker):
        """An RQ ``SimpleWorker`` that runs each job in a fresh app context.

        Why not the default forking worker: PROVIDERS.md measured ~18 ms of
        fork overhead per job against ~4-5 ms here, and a forked child starts
        with no warm connections, so every batch would reconnect to the
        database and redo the provider's TLS handshake. In one long-lived
        process the SQLAlchemy pool and the providers' HTTP keep-alive pools
        are reused across jobs, and there is no inherited database connection
        to dispose after a fork. The cost: a job that crashes the interpreter
        takes the worker down (the process manager restarts it, and
        :func:`scheduler.dispatch.reconcile_stale` recovers its rows); a job
        over its timeout is interrupted in the main thread by RQ's alarm.

        Liveness: RQ's ``SimpleWorker`` registers a running job for its whole
        timeout plus a minute and never renews it, so a killed worker's job
        would look alive for ``SEND_JOB_TIMEOUT`` + 60 s. Here a thread renews
        the job's lease (RQ's own execution heartbeat) every
        ``HEARTBEAT_SECONDS`` for ``LEASE_SECONDS``: a job whose lease ran out
        has lost its worker.
        """

        flask_app: Flask | None = None
        heartbeat_seconds: float = HEARTBEAT_SECONDS
        lease_seconds: int = LEASE_SECONDS

        def get_heartbeat_ttl(self, job, working_time: float = 0.0) -> int:
            return self.lease_seconds

        def execute_job(self, job, queue):
            assert self.flask_app is not None, "LapinWorker.flask_app must be set"
            # A fresh context per job: a new session, removed at teardown.
            with self.flask_app.app_context():
                execution = self.prepare_execution(job)
                stop = threading.Event()
                beat = threading.Thread(
                    target=self._renew_lease,
                    args=(job, execution, stop),
                    name="lapin-job-lease",
                    daemon=True,
                )
                beat.start()
                try:
                    self.perform_job(job, queue, execution)
                finally:
                    stop.set()
                    beat.join()
                self.set_state(WorkerStatus.IDLE)

        def _renew_lease(self, job, execution, stop: threading.Event) -> None:
            while not stop.wait(self.heartbeat_seconds):
                try:
                    self.maintain_heartbeats(job, execution)
                except Exception:  # Redis away for a moment: the next beat retries
                    log.warning("job %s: lease not renewed", job.id, exc_info=True)

    return LapinWorker


def make_worker(app: Flask, **kwargs):
    """An RQ worker on the ``lapin`` queue, bound to ``app``."""
    cls = worker_class()
    q = rq_queue(app)
    worker = cls([q], connection=q.connection, **kwargs)
    worker.flask_app = app
    return worker


def requeue_abandoned(app: Flask, now: datetime | None = None) -> int:
    """Queue again the jobs whose worker died under them; returns how many were abandoned.

    RQ only: a running job whose lease (:data:`LEASE_SECONDS`) has run out at
    ``now`` lost its worker. RQ's own clean-up of its registry of started jobs
    then queues it again while it has retries left (the send jobs have
    ``SEND_JOB_RETRIES``), else records it failed. Run by the scheduler on
    every tick, so a dead worker's jobs go again within ``LEASE_SECONDS`` plus
    one tick. A send job run again claims only the rows still ``queued``
    (:mod:`scheduler.jobs`), so it never sends what its first run handed over.

    The embedded queue has no equivalent to do: its worker is a thread of the
    process that holds the queue, and they die together (a lost job, see
    :func:`scheduler.dispatch.reconcile_stale`).
    """
    if not app.config.get("REDIS_URL"):
        return 0
    registry = rq_queue(app).started_job_registry
    at = now.timestamp() if now is not None else None
    abandoned = registry.get_expired_job_ids(at)
    if abandoned:
        registry.cleanup(at)
        log.warning(
            "%d job(s) abandoned by a dead worker queued again: %s", len(abandoned), abandoned
        )
    return len(abandoned)


def run_pending(app: Flask, limit: int = 10_000) -> int:
    """Run queued jobs until none is left (jobs may queue more); returns how many ran.

    For the embedded queue this runs them in this thread; with Redis it runs an
    RQ ``SimpleWorker`` in burst mode. Used by tests and ``dispatch-due``.
    """
    if app.config.get("REDIS_URL"):
        q = rq_queue(app)

        def done() -> int:
            return q.finished_job_registry.count + q.failed_job_registry.count

        before = done()
        make_worker(app).work(burst=True, logging_level="WARNING")
        return done() - before
    ran = 0
    q = embedded_queue(app)
    while ran < limit and q.run_one():
        ran += 1
    return ran


def queue_health(app: Flask) -> dict:
    """Queue status for ``/health``: Redis answers a PING, or the embedded queue is in use."""
    if not app.config.get("REDIS_URL"):
        return {"status": "ok", "backend": "embedded", "pending": embedded_queue(app).jobs.qsize()}
    from redis.exceptions import RedisError

    try:
        conn = redis_connection(app)
        conn.ping()
        pending = rq_queue(app).count
    except RedisError as exc:
        return {"status": "error", "backend": "redis", "error": exc.__class__.__name__}
    return {"status": "ok", "backend": "redis", "pending": pending}
