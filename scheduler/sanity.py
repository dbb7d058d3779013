"""Reminder-burst throughput check: due -> accepted by a fake Twilio, end to end.

    python -m scheduler.sanity --messages 10000 --workers 1,2

With ``--database-url`` and ``--redis-url`` (default: ``TEST_DATABASE_URL`` and
``TEST_REDIS_URL``; both are WIPED, as the test suite does) it measures what
production runs:

1. starts a fast fake Twilio API (:mod:`tests.fakes.async_twilio`, asyncio,
   answering 201 after ``--latency`` seconds) in its own process;
2. baseline: RQ no-op jobs per second, one ``SimpleWorker`` in burst mode on
   the same Redis (the "one RQ job per message" ceiling);
3. for each worker count: ``--messages`` SMS rows due at the same instant,
   that many ``gateway worker`` processes (SMS_PROVIDERS=twilio, the real
   adapter), then times ``dispatch_all_due()`` + the workers until every row
   is ``sent``; prints SMS/s, the CPU each part used, and the load average
   (the machine may be shared: read figures next to it).

Without a PostgreSQL/Redis pair it falls back to SQLite and the embedded
queue in one process (a quick smoke run, not the production figure).
Knobs: ``--concurrency`` (SMS_CONCURRENCY), ``--batch`` (SEND_BATCH_SIZE).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def noop() -> None:
    """The baseline job: does nothing."""


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _load() -> str:
    try:
        one, five, fifteen = os.getloadavg()
        return f"load {one:.2f} {five:.2f} {fifteen:.2f}"
    except OSError:
        return "load ?"


def _start_fake(latency: float) -> tuple[subprocess.Popen, int]:
    fake = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.async_twilio", "--latency", str(latency)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    port = int(fake.stdout.readline())
    return fake, port


def _settings(args, port: int) -> dict:
    return {
        "TWILIO_ACCOUNT_SID": "ACsanity",
        "TWILIO_AUTH_TOKEN": "token",
        "TWILIO_FROM": "+33700000000",
        "TWILIO_API_BASE_URL": f"http://127.0.0.1:{port}",
    }


def _app(args, port: int, database_url: str, redis_url: str | None):
    from gateway import create_app

    return create_app(
        {
            "SQLALCHEMY_DATABASE_URI": database_url,
            "REDIS_URL": redis_url,
            "EMBEDDED_WORKER": False,
            "SMS_PROVIDERS": ["twilio"],
            "SMS_CONCURRENCY": args.concurrency,
            "SEND_BATCH_SIZE": args.batch,
            "PROVIDER_SETTINGS": _settings(args, port),
        }
    )


def _reset_database(database_url: str) -> None:
    from sqlalchemy import create_engine, text

    if database_url.startswith("postgresql"):
        engine = create_engine(database_url)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()


def _insert_due(count: int) -> None:
    """``count`` SMS reminders due now, for one organisation without quiet hours."""
    from gateway.extensions import db
    from gateway.models import Message, MessageStatusChange, Organisation
    from gateway.timeutil import utcnow

    db.session.execute(MessageStatusChange.__table__.delete())
    db.session.execute(Message.__table__.delete())
    org = db.session.scalar(db.select(Organisation).where(Organisation.name == "Sanity"))
    if org is None:
        org = Organisation(name="Sanity", timezone="Europe/Paris", quiet_hours="none")
        db.session.add(org)
        db.session.flush()
    now = utcnow()
    rows = [
        {
            "organisation_id": org.id,
            "channel": "sms",
            "kind": "reminder",
            "status": "scheduled",
            "send_at": now,
            "recipient": f"+336{i:08d}",
            "body": "RDV PMI mar. 24/11 14h30, MDS Calais, 12 rue X. Annuler: https://h/c/Ab3dE9xQ2k",
            "attempts": 0,
            "created_at": now,
            "status_changed_at": now,
        }
        for i in range(count)
    ]
    for start in range(0, count, 5000):
        db.session.execute(Message.__table__.insert(), rows[start : start + 5000])
    db.session.commit()


def _count_sent() -> int:
    from gateway.extensions import db
    from gateway.models import Message

    db.session.rollback()  # a fresh snapshot
    return db.session.scalar(
        db.select(db.func.count()).select_from(Message).where(Message.status == "sent")
    )


def _baseline(app, jobs: int) -> float:
    """RQ no-op jobs per second: one SimpleWorker, burst mode, same Redis."""
    from rq import Queue, SimpleWorker

    from scheduler.queue import redis_connection

    conn = redis_connection(app)
    q = Queue("lapin-baseline", connection=conn)
    q.empty()
    q.enqueue_many([Queue.prepare_data("scheduler.sanity.noop") for _ in range(jobs)])
    worker = SimpleWorker([q], connection=conn)
    started = time.monotonic()
    worker.work(burst=True, logging_level="WARNING")
    return jobs / (time.monotonic() - started)


def _profile(args, pid: int, name: str) -> subprocess.Popen | None:
    """Attach ``py-spy record`` (collapsed stacks) to ``pid`` when ``--py-spy DIR`` is given."""
    if not args.py_spy:
        return None
    Path(args.py_spy).mkdir(parents=True, exist_ok=True)
    out = Path(args.py_spy) / f"{name}.txt"
    # --nonblocking: never pause the worker (it runs dozens of threads).
    return subprocess.Popen(
        [
            "py-spy",
            "record",
            "--nonblocking",
            "--gil",
            "--format",
            "raw",
            "--rate",
            "100",
            "--pid",
            str(pid),
            "-o",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _run_workers(args, app, port: int, database_url: str, redis_url: str, workers: int) -> None:
    from rq import Worker

    from scheduler.dispatch import dispatch_all_due
    from scheduler.queue import rq_queue

    _insert_due(args.messages)
    env = {
        **os.environ,
        **_settings(args, port),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SMS_PROVIDERS": "twilio",
        "SECRET_KEY": "sanity",
        "SMS_CONCURRENCY": str(args.concurrency),
        "SEND_BATCH_SIZE": str(args.batch),
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
    }
    gateway = str(Path(sys.executable).with_name("gateway"))
    log = open(Path(tempfile.gettempdir()) / "lapin-sanity-workers.log", "a")  # noqa: SIM115
    procs = [
        subprocess.Popen([gateway, "worker"], env=env, stdout=log, stderr=log)
        for _ in range(workers)
    ]
    spies: list = []
    try:
        q = rq_queue(app)
        while Worker.count(queue=q) < workers:
            time.sleep(0.1)
        spies = [_profile(args, p.pid, f"worker{workers}-{i}") for i, p in enumerate(procs)]
        cpu_before = {p.pid: _cpu_seconds(p.pid) for p in procs}
        started = time.monotonic()
        cpu_self = time.process_time()
        queued = dispatch_all_due()
        dispatched = time.monotonic() - started
        cpu_dispatch = time.process_time() - cpu_self
        sent = 0
        deadline = started + args.timeout
        while sent < queued and time.monotonic() < deadline:
            time.sleep(0.05)
            sent = _count_sent()
        elapsed = time.monotonic() - started
        cpu_workers = sum(_cpu_seconds(p.pid) - cpu_before[p.pid] for p in procs)
    finally:
        for spy in filter(None, spies):
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        log.close()
    print(
        f"{workers} worker(s): {sent}/{queued} sent in {elapsed:.2f} s = {sent / elapsed:.0f} SMS/s"
        f" (dispatch {dispatched:.2f} s, {cpu_dispatch * 1000 / max(queued, 1):.2f} ms CPU/msg;"
        f" workers {cpu_workers * 1000 / max(sent, 1):.2f} ms CPU/msg) {_load()}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10000)
    parser.add_argument("--workers", default="1,2", help="worker process counts to try, e.g. 1,2")
    parser.add_argument("--latency", type=float, default=0.1, help="fake provider answer time (s)")
    parser.add_argument("--concurrency", type=int, default=None, help="SMS_CONCURRENCY")
    parser.add_argument("--batch", type=int, default=None, help="SEND_BATCH_SIZE")
    parser.add_argument("--baseline-jobs", type=int, default=5000)
    parser.add_argument(
        "--py-spy",
        metavar="DIR",
        default=None,
        help="profile each worker with py-spy into DIR (collapsed stacks)",
    )
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--database-url", default=os.environ.get("TEST_DATABASE_URL"))
    parser.add_argument("--redis-url", default=os.environ.get("TEST_REDIS_URL"))
    args = parser.parse_args()

    from gateway.config import _pipeline_settings

    defaults = _pipeline_settings(os.environ)
    args.concurrency = args.concurrency or defaults["SMS_CONCURRENCY"]
    args.batch = args.batch or defaults["SEND_BATCH_SIZE"]

    fake, port = _start_fake(args.latency)
    try:
        if args.database_url and args.redis_url:
            _redis_run(args, port)
        else:
            _embedded_run(args, port)
        print(
            f"fake Twilio: {_cpu_seconds(fake.pid):.1f} s CPU in all "
            f"(concurrency {args.concurrency}, batch {args.batch}, "
            f"latency {args.latency * 1000:.0f} ms)"
        )
    finally:
        fake.terminate()
        fake.wait(10)


def _redis_run(args, port: int) -> None:
    from gateway.cli import migrate_to_head
    from scheduler.queue import redis_connection

    database_url = args.database_url.replace("postgresql://", "postgresql+psycopg://", 1)
    _reset_database(database_url)
    app = _app(args, port, database_url, args.redis_url)
    with app.app_context():
        migrate_to_head()
        redis_connection(app).flushdb()
        rate = _baseline(app, args.baseline_jobs)
        print(f"baseline: {rate:.0f} RQ no-op jobs/s (one SimpleWorker) {_load()}", flush=True)
        for workers in [int(w) for w in args.workers.split(",") if w.strip()]:
            _run_workers(args, app, port, database_url, args.redis_url, workers)


def _embedded_run(args, port: int) -> None:
    from gateway.cli import migrate_to_head
    from scheduler.dispatch import dispatch_all_due
    from scheduler.queue import run_pending

    folder = tempfile.mkdtemp(prefix="lapin-sanity-")
    app = _app(args, port, f"sqlite:///{folder}/sanity.sqlite3", None)
    with app.app_context():
        migrate_to_head()
        _insert_due(args.messages)
        started = time.monotonic()
        queued = dispatch_all_due()
        run_pending(app)
        elapsed = time.monotonic() - started
        sent = _count_sent()
    print(
        f"embedded (SQLite, one process): {sent}/{queued} sent in {elapsed:.2f} s = "
        f"{sent / elapsed:.0f} SMS/s {_load()}"
    )


if __name__ == "__main__":
    main()
