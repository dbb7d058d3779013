"""Baselines: bare Flask endpoints parsing the same Twilio status callbacks.

Same gunicorn settings (the Procfile's: 2 workers × 4 threads, gthread),
same load generator, same concurrency and the very same signed requests as
the receipt storm; only the application differs (``bench/bare_app.py``):
first the bare endpoint (the goal's baseline), then the same endpoint with
one durable ``INSERT`` per request, the floor of any endpoint that stores
what it is told before answering.
"""

from __future__ import annotations

from sqlalchemy import create_engine, text

from . import loadgen
from .bare_app import TABLE
from .common import (
    GUNICORN_THREADS,
    GUNICORN_WORKERS,
    LATENCY_HEADERS,
    Context,
    Section,
    Table,
    gateway_env,
    gunicorn,
    latency_row,
)
from .receipt_storm import CONCURRENCY, callback_requests

NAME = "flask-baseline"
TITLE = "Baseline: bare Flask endpoint, same form, same gunicorn"


def _libpq_dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def run(ctx: Context) -> Section:
    n = ctx.scale(10_000, 2000)
    items = [(i, f"SM{i:032x}", f"+336{i:08d}") for i in range(1, n + 1)]
    section = Section(NAME, TITLE, method=__doc__.split("\n\n", 1)[1].replace("\n", " "))
    engine = create_engine(ctx.database_url)
    with engine.begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {TABLE}"))
        conn.execute(
            text(
                f"CREATE TABLE {TABLE} (id bigserial PRIMARY KEY, sid text NOT NULL, "
                "status text NOT NULL, received_at timestamptz NOT NULL DEFAULT now())"
            )
        )
    env = gateway_env(ctx, BENCH_BARE_DSN=_libpq_dsn(ctx.database_url))
    rows = []
    for spec, label, metric in (
        ("bench.bare_app:create_app()", "bare endpoint", "flask.per_s"),
        (
            "bench.bare_app:create_app(insert=True)",
            "bare endpoint + one INSERT",
            "flask.insert_per_s",
        ),
    ):
        with gunicorn(ctx, spec, env, "gunicorn-" + metric.replace(".", "-")) as port:
            base = f"http://127.0.0.1:{port}"
            loadgen.run(
                port, callback_requests(items[:300], base), concurrency=CONCURRENCY
            )  # warm-up
            result = loadgen.run(port, callback_requests(items, base), concurrency=CONCURRENCY)
        ok = result.statuses.get(204, 0)
        ctx.metrics[metric] = result.rate
        rows.append(
            latency_row(
                f"{label}, {CONCURRENCY} connections",
                result.latencies,
                [result.rate, ok, result.count - ok + result.errors],
            )
        )
    with engine.begin() as conn:
        stored = conn.scalar(text(f"SELECT count(*) FROM {TABLE}"))
        conn.execute(text(f"DROP TABLE {TABLE}"))
    engine.dispose()
    section.tables.append(Table(LATENCY_HEADERS + ["req/s", "2xx", "other"], rows))
    section.notes.append(
        f"gunicorn --workers {GUNICORN_WORKERS} --threads {GUNICORN_THREADS}; "
        "load generator: bench/loadgen.py (asyncio, keep-alive, pre-built requests)."
    )
    section.notes.append(f"Rows stored by the INSERT endpoint: {stored} (warm-up included).")
    return section
