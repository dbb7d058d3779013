"""Reminder burst: 20 000 SMS reminders due at the same minute, through the real Twilio adapter.

The messages table holds 20 000 ``scheduled`` SMS reminders (one per usager
and rdv, rdvs three days ahead, no quiet hours) all due at the start of the
current minute. ``gateway worker`` processes (1, then 2) run with
``SMS_PROVIDERS=twilio`` and ``TWILIO_API_BASE_URL`` pointing at
``bench/fake_twilio.py``, which answers every send after 100 ms like
Twilio's API. The clock starts when ``scheduler.dispatch.dispatch_due(now,
limit)`` is called in-process and stops when every reminder is ``sent`` in
the database (polled every 0.1 s). The fake counts what it received, so a
message sent twice shows up as a duplicate.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from datetime import timedelta

from sqlalchemy import text

from . import fake_twilio, seed
from .common import (
    Context,
    NotAvailable,
    Section,
    Table,
    bin_path,
    flush_redis,
    gateway_env,
    has_cli_command,
    log_tail,
    make_app,
    process,
    reset_schema,
    wait_for,
)
from .growth import dispatch_function

NAME = "burst"
TITLE = "Reminder burst: 20 000 SMS due at once, real Twilio adapter, fake API"
WORKER_COUNTS = (1, 2)
DELAY = 0.1
STALL_TIMEOUT = 30  # give up when nothing more is sent for this long


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


def _one_run(ctx: Context, app, dispatch_due, workers: int, n: int, time_limit: float) -> list:
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
        base_url = stack.enter_context(fake_twilio.running(ctx, delay=DELAY))
        env = gateway_env(ctx, TWILIO_API_BASE_URL=base_url, PUBLIC_BASE_URL="http://127.0.0.1:9")
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
        with app.app_context():
            started = time.perf_counter()
            dispatched = 0
            while dispatched < n:
                count = dispatch_due(utcnow(), n - dispatched)
                if not count:
                    break
                dispatched += count
            dispatch_s = time.perf_counter() - started
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
        received = fake_twilio.stats(base_url)
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
    ]


def run(ctx: Context) -> Section:
    dispatch_due = dispatch_function()
    if dispatch_due is None:
        raise NotAvailable("scheduler.dispatch.dispatch_due does not exist (pipeline not merged)")
    app = make_app(ctx)
    if not has_cli_command(app, "worker"):
        raise NotAvailable("no `gateway worker` command (pipeline not merged)")
    n = ctx.scale(20_000, 2000)
    time_limit = ctx.scale(100, 45)
    section = Section(
        NAME,
        TITLE if not ctx.quick else TITLE.replace("20 000", f"{n:,}"),
        method=__doc__.split("\n\n", 1)[1].replace("\n", " "),
    )
    rows = [_one_run(ctx, app, dispatch_due, k, n, time_limit) for k in WORKER_COUNTS]
    section.tables.append(
        Table(
            [
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
            ],
            rows,
        )
    )
    for row in rows:
        if row[5] < n:
            section.notes.append(
                f"{row[0]} worker(s): only {row[5]} of {n} sent before the "
                f"{time_limit} s limit or a {STALL_TIMEOUT} s stall; SMS/s is "
                "what was sent over the time waited."
            )
    return section
