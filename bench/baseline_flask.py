"""Baseline: a bare Flask endpoint parsing the same Twilio status callbacks.

Same gunicorn settings (the Procfile's: 2 workers × 4 threads, gthread),
same load generator, same concurrency and the very same signed requests as
the receipt storm; only the application differs (``bench/bare_app.py``).
"""

from __future__ import annotations

from . import loadgen
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


def run(ctx: Context) -> Section:
    n = ctx.scale(10_000, 2000)
    items = [(i, f"SM{i:032x}", f"+336{i:08d}") for i in range(1, n + 1)]
    section = Section(NAME, TITLE, method=__doc__.split("\n\n", 1)[1].replace("\n", " "))
    env = gateway_env(ctx)
    with gunicorn(ctx, "bench.bare_app:create_app()", env, "gunicorn-bare") as port:
        base = f"http://127.0.0.1:{port}"
        loadgen.run(port, callback_requests(items[:300], base), concurrency=CONCURRENCY)  # warm-up
        result = loadgen.run(port, callback_requests(items, base), concurrency=CONCURRENCY)
    ok = result.statuses.get(204, 0)
    ctx.metrics["flask.per_s"] = result.rate
    section.tables.append(Table(LATENCY_HEADERS + ["req/s", "2xx", "other"], [
        latency_row(f"bare endpoint, {CONCURRENCY} connections", result.latencies,
                    [result.rate, ok, result.count - ok + result.errors]),
    ]))
    section.notes.append(f"gunicorn --workers {GUNICORN_WORKERS} --threads {GUNICORN_THREADS}; "
                         "load generator: bench/loadgen.py (asyncio, keep-alive, pre-built requests).")
    return section
