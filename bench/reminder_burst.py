"""Reminder burst: 20 000 SMS reminders due at the same minute, through the real Twilio adapter.

The messages table holds 20 000 ``scheduled`` SMS reminders (one per usager
and rdv, rdvs three days ahead, no quiet hours) all due at the start of the
current minute. ``gateway worker`` processes (1, then 2) run with
``SMS_PROVIDERS=twilio`` and ``TWILIO_API_BASE_URL`` pointing at the fake
Twilio API (``tests/fakes/twilio_server.py`` in its own process), which
answers every send after 100 ms like Twilio's API. The clock starts when
``scheduler.dispatch.dispatch_due(now, limit)`` is called in-process and
stops when every reminder is ``sent`` in the database (polled every 0.1 s).
The fake counts what it received, so a message sent twice shows up as a
duplicate. CPU per message is read from ``/proc`` for the workers, the
dispatching process and the fake; the load average says how busy the
machine was (the figures follow the free cores).

For tuning, the same run with other knobs, and py-spy profiles of the workers
(``--py-spy DIR``, collapsed stacks), without touching BENCHMARKS.md::

    python -m bench.reminder_burst --messages 10000 --workers 1,2 \
        --concurrency 128 --batch 1000 --latency 0.1
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path

from sqlalchemy import text

from . import seed
from .common import (
    Context,
    NotAvailable,
    Section,
    Table,
    bin_path,
    check_throwaway,
    cpu_seconds,
    database_url,
    ensure_database,
    fake_twilio,
    fake_twilio_stats,
    flush_redis,
    gateway_env,
    has_cli_command,
    load_average,
    log_tail,
    make_app,
    process,
    redis_url,
    reset_schema,
    tempdir,
    wait_for,
)
from .growth import dispatch_function

NAME = "burst"
TITLE = "Reminder burst: 20 000 SMS due at once, real Twilio adapter, fake API"
WORKER_COUNTS = (1, 2)
DELAY = 0.1
STALL_TIMEOUT = 30  # give up when nothing more is sent for this long
HEADERS = [
    "workers",
    "reminders",
    "dispatched",
    "dispatch s",
    "to all sent s",
    "sent",
    "SMS/s",
    "fake received",
    "duplicates",
    "other statuses",
    "dispatch CPU ms/msg",
    "workers CPU ms/SMS",
    "fake CPU ms/SMS",
    "load (1 min)",
]


def _py_spy(directory: str | None, pid: int, name: str) -> subprocess.Popen | None:
    """Attach ``py-spy record`` (collapsed stacks) to ``pid`` when a directory is given."""
    if not directory:
        return None
    Path(directory).mkdir(parents=True, exist_ok=True)
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
            str(Path(directory) / f"{name}.txt"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _counts(db, first: int, last: int) -> dict[str, int]:
    rows = db.session.execute(
        text("SELECT status, count(*) FROM messages WHERE id BETWEEN :a AND :b GROUP BY status"),
        {"a": first, "b": last},
    ).all()
    db.session.rollback()
    return {status: count for status, count in rows}


def _rq_workers(ctx: Context) -> int:
    from redis import Redis
    from rq import Worker

    conn = Redis.from_url(ctx.redis_url)
    try:
        return len(Worker.all(connection=conn))
    finally:
        conn.close()


def _one_run(
    ctx: Context,
    app,
    dispatch_due,
    workers: int,
    n: int,
    time_limit: float,
    delay: float = DELAY,
    worker_env: dict[str, str] | None = None,
    py_spy: str | None = None,
) -> list:
    from gateway.extensions import db
    from gateway.timeutil import utcnow

    reset_schema(ctx)
    now = utcnow()
    with app.app_context():
        with db.engine.begin() as conn:
            org = seed.org(conn, agents=100)
            first, last = seed.reminders(
                conn,
                org,
                n,
                status="scheduled",
                send_at=seed.at_minute(now),
                rdv_start=now + timedelta(days=3),
            )
        db.engine.dispose()
    with ExitStack() as stack:
        base_url, fake = stack.enter_context(fake_twilio(ctx, delay=delay))
        env = gateway_env(
            ctx,
            TWILIO_API_BASE_URL=base_url,
            PUBLIC_BASE_URL="http://127.0.0.1:9",
            **worker_env or {},
        )
        procs = [
            stack.enter_context(
                process([bin_path("gateway"), "worker"], env, f"burst-worker-{workers}-{i}", ctx)
            )
            for i in range(workers)
        ]

        def ready() -> bool:
            for i, proc in enumerate(procs):
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"gateway worker exited ({proc.returncode}):\n"
                        + log_tail(ctx, f"burst-worker-{workers}-{i}")
                    )
            return _rq_workers(ctx) >= workers

        wait_for(ready, 60, interval=0.2, what=f"{workers} RQ workers to register")
        spies = [_py_spy(py_spy, p.pid, f"worker{workers}-{i}") for i, p in enumerate(procs)]
        cpu_before = {p.pid: cpu_seconds(p.pid) for p in procs}
        fake_before = cpu_seconds(fake.pid)
        with app.app_context():
            started = time.perf_counter()
            cpu_self = time.process_time()
            dispatched = 0
            while dispatched < n:
                count = dispatch_due(utcnow(), n - dispatched)
                if not count:
                    break
                dispatched += count
            dispatch_s = time.perf_counter() - started
            dispatch_cpu = time.process_time() - cpu_self
            db.session.remove()
            sent, last_progress, counts = 0, time.monotonic(), {}
            while sent < n:
                time.sleep(0.1)
                counts = _counts(db, first, last)
                now_sent = counts.get("sent", 0) + counts.get("delivered", 0)
                if now_sent > sent:
                    last_progress = time.monotonic()
                sent = now_sent
                if time.monotonic() - last_progress > STALL_TIMEOUT:
                    break
                if time.perf_counter() - started > time_limit:
                    break
            elapsed = time.perf_counter() - started
            db.engine.dispose()
        workers_cpu = sum(cpu_seconds(p.pid) - cpu_before[p.pid] for p in procs)
        fake_cpu = cpu_seconds(fake.pid) - fake_before
        load = load_average()
        for spy in filter(None, spies):
            spy.terminate()  # py-spy writes its profile on SIGTERM/SIGINT
            spy.wait(60)
        received = fake_twilio_stats(base_url)
    flush_redis(ctx)
    other = {k: v for k, v in counts.items() if k not in ("sent", "delivered")}
    rate = sent / elapsed if elapsed else 0.0
    if sent == n:
        ctx.metrics[f"burst.sms_per_s.{workers}"] = rate
    return [
        workers,
        n,
        dispatched,
        dispatch_s,
        elapsed if sent == n else None,
        sent,
        rate,
        received["messages"],
        received["messages"] - received["distinct"],
        ", ".join(f"{k}: {v}" for k, v in sorted(other.items())) or "—",
        dispatch_cpu * 1000 / max(dispatched, 1),
        workers_cpu * 1000 / max(sent, 1),
        fake_cpu * 1000 / max(received["requests"], 1),
        load,
    ]


def _available(ctx: Context):
    dispatch_due = dispatch_function()
    if dispatch_due is None:
        raise NotAvailable("scheduler.dispatch.dispatch_due does not exist (pipeline not merged)")
    app = make_app(ctx)
    if not has_cli_command(app, "worker"):
        raise NotAvailable("no `gateway worker` command (pipeline not merged)")
    return app, dispatch_due


def _section(title: str, rows: list, n: int, time_limit: float) -> Section:
    section = Section(NAME, title, method=__doc__.split("\n\n", 1)[1].split("\n\n")[0])
    section.method = section.method.replace("\n", " ")
    section.tables.append(Table(HEADERS, rows))
    for row in rows:
        if row[5] < n:
            section.notes.append(
                f"{row[0]} worker(s): only {row[5]} of {n} sent before the "
                f"{time_limit} s limit or a {STALL_TIMEOUT} s stall; SMS/s is "
                "what was sent over the time waited."
            )
    return section


def run(ctx: Context) -> Section:
    app, dispatch_due = _available(ctx)
    n = ctx.scale(20_000, 2000)
    time_limit = ctx.scale(100, 45)
    rows = [_one_run(ctx, app, dispatch_due, k, n, time_limit) for k in WORKER_COUNTS]
    title = TITLE if not ctx.quick else TITLE.replace("20 000", f"{n:,}")
    return _section(title, rows, n, time_limit)


def main(argv: list[str] | None = None) -> None:
    """The burst with other knobs (``--help``); prints the table, writes nothing."""
    from .report import print_section

    parser = argparse.ArgumentParser(prog="python -m bench.reminder_burst", description=TITLE)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--workers", default="1,2", help="worker process counts, e.g. 1,2")
    parser.add_argument("--latency", type=float, default=DELAY, help="fake Twilio answer time (s)")
    parser.add_argument("--concurrency", type=int, help="SMS_CONCURRENCY of the workers")
    parser.add_argument("--batch", type=int, help="SEND_BATCH_SIZE of the workers")
    parser.add_argument("--timeout", type=float, default=300.0, help="give up after (s)")
    parser.add_argument("--py-spy", metavar="DIR", help="profile each worker with py-spy into DIR")
    args = parser.parse_args(argv)
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    ctx = Context(database_url(), redis_url(), False, tempdir())
    check_throwaway(ctx.database_url)
    ensure_database(ctx.database_url)
    knobs = {}
    if args.concurrency:
        knobs["SMS_CONCURRENCY"] = str(args.concurrency)
    if args.batch:
        knobs["SEND_BATCH_SIZE"] = str(args.batch)
    app, dispatch_due = _available(ctx)
    rows = [
        _one_run(
            ctx,
            app,
            dispatch_due,
            int(k),
            args.messages,
            args.timeout,
            delay=args.latency,
            worker_env=knobs,
            py_spy=args.py_spy,
        )
        for k in args.workers.split(",")
        if k.strip()
    ]
    knob_text = ", ".join(f"{k}={v}" for k, v in knobs.items()) or "default knobs"
    title = f"Reminder burst: {args.messages} SMS, {args.latency * 1000:.0f} ms fake, {knob_text}"
    print_section(_section(title, rows, args.messages, args.timeout))
    print(f"logs in {ctx.workdir}")


if __name__ == "__main__":
    main()
