"""Outbound webhooks: what subscribing costs a booking, and how fast the workers deliver.

Booking: the same in-process API booking as the booking benchmark (20
agents, usagers with a mobile and an email, 4 messages planned per rdv),
in alternating blocks of 10 bookings without any endpoint and with three
enabled endpoints subscribed to every event type (each booking then also
writes its ``rdv.created`` event and three outbox rows in its transaction).
Alternating blocks share the same database growth and machine noise; the
figure is the ratio of the p95 latencies.

Delivery: the outbox holds N events (an rdv's JSON, about 1 KB each, one
event per rdv) for one endpoint, a local receiver
(``tests/fakes/webhook_receiver.py`` in its own process, asyncio) verifies
each signature with ``standardwebhooks`` and answers 204 after 100 ms.
``gateway worker`` processes (1, then 2; default ``WEBHOOK_CONCURRENCY`` and
``WEBHOOK_BATCH_SIZE``) deliver what
``scheduler.webhook_delivery.dispatch_webhooks`` claims, called every 0.2 s
in the benchmark process as the scheduler would; the clock stops when every
outbox row is ``delivered`` in the database.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import ExitStack, contextmanager
from datetime import timedelta

from sqlalchemy import text

from .booking import _world, create_usagers
from .common import (
    Context,
    Section,
    Table,
    bin_path,
    flush_redis,
    free_port,
    gateway_env,
    latency_row,
    log_tail,
    make_app,
    percentile,
    port_open,
    process,
    reset_schema,
    wait_for,
)

NAME = "webhooks"
TITLE = "Outbound webhooks: booking with three endpoints, delivery throughput"
BLOCK = 10
WORKER_COUNTS = (1, 2)
DELAY = 0.1


def _booking(ctx: Context) -> list:
    bookings = ctx.scale(400, 80)
    reset_schema(ctx)
    app = make_app(ctx, REMINDER_OFFSETS="48h", RATELIMIT_ENABLED=False, WEBHOOK_ALLOW_PRIVATE=True)
    with app.app_context():
        from gateway.extensions import db
        from gateway.models import WebhookEndpoint, WebhookEvent
        from gateway.slots import free_slots
        from gateway.timeutil import utcnow
        from gateway.webhook_endpoints import create_endpoint

        org, lieu, motif, token = _world(db)
        for i in range(3):
            create_endpoint(org, f"http://127.0.0.1:9/hook{i}")
        client = app.test_client()
        headers = {"Authorization": f"Bearer {token}"}
        usager_ids = create_usagers(client, headers, bookings)
        now = utcnow()
        slots = free_slots(
            org, motif, now + timedelta(days=3), now + timedelta(days=31), lieu_id=lieu.id
        )
        step = len(slots) // bookings
        chosen = [slots[i * step] for i in range(bookings)]
        db.session.remove()
        times: dict[bool, list[float]] = {False: [], True: []}
        for start in range(0, bookings, BLOCK):
            subscribed = (start // BLOCK) % 2 == 1
            db.session.execute(
                text("UPDATE webhook_endpoints SET enabled = :on"), {"on": subscribed}
            )
            db.session.commit()
            db.session.remove()
            for usager_id, slot in zip(
                usager_ids[start : start + BLOCK], chosen[start : start + BLOCK], strict=True
            ):
                payload = {
                    "motif_id": motif.id,
                    "lieu_id": lieu.id,
                    "agent_id": slot.agent_id,
                    "usager_id": usager_id,
                    "starts_at": slot.starts_at.isoformat(),
                }
                started = time.perf_counter()
                response = client.post("/api/v1/rdvs", headers=headers, json=payload)
                times[subscribed].append(time.perf_counter() - started)
                assert response.status_code == 201, response.get_data(as_text=True)
        events = db.session.query(WebhookEvent).count()
        endpoints = db.session.query(WebhookEndpoint).count()
        db.session.remove()
        db.engine.dispose()
    without, with_ = percentile(times[False], 95), percentile(times[True], 95)
    ctx.metrics["webhooks.booking_p95_ratio"] = with_ / without
    return [
        latency_row("POST /api/v1/rdvs, no endpoint", times[False], ["—"]),
        latency_row(
            f"POST /api/v1/rdvs, {endpoints} endpoints",
            times[True],
            [f"{events} events, {events * endpoints} outbox rows written"],
        ),
    ]


def _sample_rdv(i: int) -> dict:
    at = "2030-03-08T10:00:00+01:00"
    message = {
        "id": i * 4,
        "channel": "sms",
        "kind": "confirmation",
        "status": "scheduled",
        "send_at": at,
        "sent_at": None,
        "delivered_at": None,
        "provider": None,
        "provider_message_id": None,
        "segments": 1,
        "recipient": "+33612345678",
        "attempts": 0,
        "last_error": None,
    }
    return {
        "id": i,
        "status": "unknown",
        "starts_at": at,
        "ends_at": at,
        "duration_minutes": 30,
        "motif_id": 1,
        "lieu_id": 1,
        "agent_id": 1,
        "usager_ids": [i],
        "cancelled_via": None,
        "cancelled_at": None,
        "confirmed_at": None,
        "messages": [message, {**message, "id": i * 4 + 1, "kind": "reminder"}] * 2,
    }


@contextmanager
def _receiver(ctx: Context, secret: str, delay: float):
    """The fake receiver in its own process for the block; yields its base URL."""
    port = free_port()
    args = [sys.executable, "-m", "tests.fakes.webhook_receiver", "--port", str(port)]
    args += ["--delay", str(delay), "--secret", secret]
    with process(args, dict(os.environ), "fake-webhook-receiver", ctx) as proc:
        wait_for(lambda: proc.poll() is None and port_open(port), 20, what="the fake receiver")
        yield f"http://127.0.0.1:{port}"


def _delivery(ctx: Context, workers: int, n: int, time_limit: float) -> list:
    from tests.fakes.webhook_receiver import stats

    reset_schema(ctx)
    app = make_app(ctx, WEBHOOK_ALLOW_PRIVATE=True)
    with app.app_context():
        from sqlalchemy import insert

        from gateway.events import new_webhook_id
        from gateway.extensions import db
        from gateway.models import Organisation, WebhookEvent, WebhookOutbox
        from gateway.timeutil import utcnow
        from gateway.webhook_endpoints import create_endpoint
        from scheduler.webhook_delivery import dispatch_webhooks

        org = Organisation(name="Bench", timezone="Europe/Paris")
        db.session.add(org)
        db.session.commit()
        endpoint, secret = create_endpoint(org, "http://127.0.0.1:9/placeholder")
        endpoint_id = endpoint.id
        now = utcnow()
        for start in range(0, n, 1000):
            rows = [
                {
                    "webhook_id": new_webhook_id(),
                    "organisation_id": org.id,
                    "type": "rdv.created",
                    "occurred_at": now,
                    "rdv_id": i + 1,
                    "data": _sample_rdv(i + 1),
                }
                for i in range(start, min(n, start + 1000))
            ]
            ids = db.session.scalars(
                insert(WebhookEvent.__table__).returning(WebhookEvent.__table__.c.id), rows
            ).all()
            db.session.execute(
                insert(WebhookOutbox.__table__),
                [
                    {
                        "event_id": event_id,
                        "endpoint_id": endpoint_id,
                        "rdv_id": row["rdv_id"],
                        "status": "pending",
                        "attempts": 0,
                        "next_attempt_at": now,
                        "created_at": now,
                    }
                    for event_id, row in zip(ids, rows, strict=True)
                ],
            )
        db.session.commit()
        with ExitStack() as stack:
            base_url = stack.enter_context(_receiver(ctx, secret, DELAY))
            db.session.execute(
                text("UPDATE webhook_endpoints SET url = :url"), {"url": base_url + "/hook"}
            )
            db.session.commit()
            env = gateway_env(ctx, WEBHOOK_ALLOW_PRIVATE="1")
            procs = [
                stack.enter_context(
                    process([bin_path("gateway"), "worker"], env, f"webhook-worker-{i}", ctx)
                )
                for i in range(workers)
            ]

            def ready() -> bool:
                from redis import Redis
                from rq import Worker

                for i, proc in enumerate(procs):
                    if proc.poll() is not None:
                        raise RuntimeError(
                            "gateway worker exited:\n" + log_tail(ctx, f"webhook-worker-{i}")
                        )
                conn = Redis.from_url(ctx.redis_url)
                try:
                    return len(Worker.all(connection=conn)) >= workers
                finally:
                    conn.close()

            wait_for(ready, 60, interval=0.2, what=f"{workers} RQ workers to register")
            started = time.perf_counter()
            delivered = 0
            while delivered < n and time.perf_counter() - started < time_limit:
                dispatch_webhooks()
                time.sleep(0.2)
                delivered = db.session.scalar(
                    text("SELECT count(*) FROM webhook_outbox WHERE status = 'delivered'")
                )
                db.session.commit()
            elapsed = time.perf_counter() - started
            received = stats(base_url)
        db.session.remove()
        db.engine.dispose()
    flush_redis(ctx)
    rate = delivered / elapsed if elapsed else 0.0
    if delivered == n:
        ctx.metrics[f"webhooks.events_per_s.{workers}"] = rate
    return [
        workers,
        n,
        elapsed if delivered == n else None,
        delivered,
        rate,
        received["received"],
        received["received"] - received["distinct"],
        received["bad_signatures"],
    ]


def run(ctx: Context) -> Section:
    section = Section(NAME, TITLE, method=__doc__.split("\n\n", 1)[1].replace("\n", " "))
    from .common import LATENCY_HEADERS

    section.tables.append(Table(LATENCY_HEADERS + ["detail"], _booking(ctx)))
    n = ctx.scale(10_000, 2000)
    time_limit = ctx.scale(90, 45)
    rows = [_delivery(ctx, k, n, time_limit) for k in WORKER_COUNTS]
    section.tables.append(
        Table(
            [
                "workers",
                "events",
                "to all delivered s",
                "delivered",
                "events/s",
                "receiver got",
                "duplicates",
                "bad signatures",
            ],
            rows,
        )
    )
    for row in rows:
        if row[3] < n:
            section.notes.append(
                f"{row[0]} worker(s): {row[3]} of {n} delivered within {time_limit} s."
            )
    return section
