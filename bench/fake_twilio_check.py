"""Capacity of the fake Twilio API: it must not be the bottleneck of the reminder burst.

Posts sends over many keep-alive connections (more than the workers will
ever open) to the fake (``tests/fakes/twilio_server.py`` in its own process,
as the burst runs it) and checks it answers over 1 000 requests/s while
holding each one 100 ms, as the burst configures it.
"""

from __future__ import annotations

import base64

from . import loadgen
from .common import (
    TWILIO_ACCOUNT_SID,
    TWILIO_AUTH_TOKEN,
    TWILIO_FROM,
    Context,
    Section,
    Table,
    cpu_seconds,
    fake_twilio,
    fake_twilio_stats,
    fmt,
)

NAME = "fake-twilio"
DELAY = 0.1
CONCURRENCY = 300


def run(ctx: Context) -> Section:
    n = ctx.scale(6000, 1500)
    auth = base64.b64encode(f"{TWILIO_ACCOUNT_SID}:{TWILIO_AUTH_TOKEN}".encode()).decode()
    path = f"/2010-04-01/Accounts/{TWILIO_ACCOUNT_SID}/Messages.json"
    requests = [
        loadgen.post_form(
            path,
            {
                "To": f"+336{i:08d}",
                "From": TWILIO_FROM,
                "Body": "RDV PMI mar. 24/11 14h30, MDS Calais. Annuler: https://h/c/x",
                "StatusCallback": f"http://127.0.0.1/webhooks/twilio/status?ref={i}",
            },
            {"Authorization": f"Basic {auth}"},
        )
        for i in range(n)
    ]
    with fake_twilio(ctx, delay=DELAY) as (base_url, fake):
        port = int(base_url.rsplit(":", 1)[1])
        cpu_before = cpu_seconds(fake.pid)
        result = loadgen.run(port, requests, concurrency=CONCURRENCY)
        cpu = cpu_seconds(fake.pid) - cpu_before
        received = fake_twilio_stats(base_url)
    ctx.metrics["fake_twilio.rate"] = result.rate
    ms = sorted(x * 1000 for x in result.latencies)
    section = Section(
        NAME,
        "Fake Twilio API capacity",
        method=(
            f"{n} sends posted by the asyncio load generator over {CONCURRENCY} keep-alive "
            "connections to `tests/fakes/twilio_server.py` (one asyncio process, "
            f"{DELAY * 1000:.0f} ms artificial delay per send). Ceiling with this concurrency: "
            f"{CONCURRENCY / DELAY:,.0f} req/s."
        ),
    )
    section.tables.append(
        Table(
            [
                "requests",
                "201",
                "req/s",
                "p50 ms",
                "p99 ms",
                "received",
                "distinct",
                "fake CPU µs/req",
            ],
            [
                [
                    result.count,
                    result.statuses.get(201, 0),
                    result.rate,
                    ms[len(ms) // 2],
                    ms[int(len(ms) * 0.99) - 1],
                    received["messages"],
                    received["distinct"],
                    cpu * 1e6 / max(result.count, 1),
                ]
            ],
        )
    )
    ok = result.rate > 1000 and result.statuses.get(201, 0) == n
    section.notes.append(
        ("Holds" if ok else "MISSES") + f" the > 1 000 req/s requirement: {fmt(result.rate)} req/s."
    )
    return section
