"""Growth: the dispatch cost per due message must not grow with the messages table.

The table is filled to 10 000, 100 000 and 1 000 000 rows (most sent,
delivered or cancelled, some scheduled for later) around a constant number
of due reminders. At each size the due reminders are reset to ``scheduled``
and ``scheduler.dispatch.dispatch_due(now, limit)`` is timed in-process
(PostgreSQL and Redis as in production); the median of the repeats divided
by the number dispatched is the cost per due message. Until
``scheduler.dispatch`` exists, the equivalent SELECT of the due rows (through
the partial index ``ix_messages_due``) is timed instead, so the harness is
proven. The plan of the due query, with ``EXPLAIN (ANALYZE, BUFFERS)``, goes
into BENCHMARKS.md.
"""

from __future__ import annotations

import importlib
import statistics
import time
from datetime import timedelta

from sqlalchemy import event, text

from . import seed
from .common import Context, Section, Table, flush_redis, fmt, make_app, reset_schema

NAME = "growth"
DUE_SQL = (
    "SELECT id FROM messages WHERE status = 'scheduled' AND send_at <= :now "
    "ORDER BY send_at, id LIMIT :limit FOR UPDATE SKIP LOCKED"
)
REPEATS = 5


def dispatch_function():
    """``scheduler.dispatch.dispatch_due`` or None when the pipeline has not landed yet."""
    try:
        module = importlib.import_module("scheduler.dispatch")
    except ImportError:
        return None
    return getattr(module, "dispatch_due", None)


def _reset_due(db, first: int, last: int) -> None:
    db.session.execute(
        text(
            "UPDATE messages SET status = 'scheduled', queued_at = NULL, attempts = 0 "
            "WHERE id BETWEEN :a AND :b"
        ),
        {"a": first, "b": last},
    )
    db.session.commit()


def _time_dispatch(ctx, db, dispatch_due, now, due: int, first: int, last: int):
    """(seconds per due message, rows dispatched, captured SQL statements of one call)."""
    timings, dispatched, captured = [], 0, []

    def capture(conn, cursor, statement, parameters, context, executemany):
        captured.append((statement, parameters))

    for repeat in range(REPEATS):
        _reset_due(db, first, last)
        flush_redis(ctx)
        if repeat == REPEATS - 1:
            event.listen(db.engine, "before_cursor_execute", capture)
        started = time.perf_counter()
        total = 0
        while total < due:
            count = dispatch_due(now, due - total)
            if not count:
                break
            total += count
        elapsed = time.perf_counter() - started
        if repeat == REPEATS - 1:
            event.remove(db.engine, "before_cursor_execute", capture)
        db.session.remove()
        timings.append(elapsed / max(total, 1))
        dispatched = total
    return statistics.median(timings), dispatched, captured


def _time_select(db, now, due: int):
    timings, found = [], 0
    for _ in range(REPEATS):
        started = time.perf_counter()
        ids = db.session.execute(text(DUE_SQL), {"now": now, "limit": due}).scalars().all()
        elapsed = time.perf_counter() - started
        db.session.rollback()
        found = len(ids)
        timings.append(elapsed / max(found, 1))
    return statistics.median(timings), found


def _due_statement(captured):
    """The statement of a dispatch that reads the due rows (first one on ``messages``)."""
    for statement, parameters in captured:
        lowered = statement.lower()
        if (
            "messages" in lowered
            and "send_at" in lowered
            and lowered.lstrip().startswith(("select", "update", "with"))
        ):
            return statement, parameters
    return None


def _explain(db, now, due: int, captured) -> tuple[str, str]:
    """(the plan text, the SQL explained); run in a transaction that is rolled back."""
    found = _due_statement(captured) if captured else None
    conn = db.session.connection()
    if found:
        statement, parameters = found
        rows = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters).all()
        sql = statement
    else:
        rows = conn.execute(
            text("EXPLAIN (ANALYZE, BUFFERS) " + DUE_SQL), {"now": now, "limit": due}
        ).all()
        sql = DUE_SQL
    db.session.rollback()
    return "\n".join(r[0] for r in rows), sql


def run(ctx: Context) -> Section:
    sizes = [10_000, 100_000, 1_000_000] if not ctx.quick else [10_000, 100_000]
    due = ctx.scale(1000, 300)
    reset_schema(ctx)
    app = make_app(ctx)
    dispatch_due = dispatch_function()
    section = Section(
        NAME,
        "Growth: dispatch cost per due message vs table size",
        method=__doc__.split("\n\n", 1)[1].replace("\n", " "),
    )
    rows, plans = [], {}
    with app.app_context():
        from gateway.extensions import db
        from gateway.timeutil import utcnow

        now = utcnow()
        with db.engine.begin() as conn:
            org = seed.org(conn, agents=20)
            first, last = seed.reminders(
                conn,
                org,
                due,
                status="scheduled",
                send_at=now - timedelta(minutes=5),
                rdv_start=now + timedelta(days=3),
            )
        for size in sizes:
            started = time.perf_counter()
            with db.engine.begin() as conn:
                current = conn.scalar(text("SELECT count(*) FROM messages"))
                if size > current:
                    seed.filler_messages(conn, org, size - current, now)
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE messages"))
            fill = time.perf_counter() - started
            if dispatch_due is not None:
                per, count, captured = _time_dispatch(ctx, db, dispatch_due, now, due, first, last)
            else:
                per, count = _time_select(db, now, due)
                captured = []
            _reset_due(db, first, last)
            plan, sql = _explain(db, now, due, captured)
            plans[size] = (plan, sql)
            exec_ms = next(
                (
                    line.split(":")[1].strip()
                    for line in plan.splitlines()
                    if line.strip().startswith("Execution Time")
                ),
                "?",
            )
            rows.append(
                [
                    size,
                    count,
                    "dispatch_due" if dispatch_due else "due SELECT",
                    per * 1e6,
                    "yes" if "ix_messages_due" in plan else "NO",
                    exec_ms,
                    fill,
                ]
            )
        flush_redis(ctx)
        db.engine.dispose()
    section.tables.append(
        Table(
            [
                "messages in table",
                "due",
                "timed",
                "µs per due message",
                "uses ix_messages_due",
                "EXPLAIN execution",
                "fill s",
            ],
            rows,
        )
    )
    base, top = rows[0][3], rows[-1][3]
    ctx.metrics["growth.ratio"] = top / base if base else float("nan")
    ctx.metrics["growth.available"] = 1.0 if dispatch_due else 0.0
    largest = sizes[-1]
    plan, sql = plans[largest]
    section.blocks.append((f"The due query at {fmt(largest)} messages", sql))
    section.blocks.append((f"EXPLAIN (ANALYZE, BUFFERS) at {fmt(largest)} messages", plan))
    if not dispatch_due:
        section.available = False
        section.notes.append(
            "`scheduler.dispatch.dispatch_due` not available yet: the figures are "
            "those of the due SELECT alone."
        )
    return section
