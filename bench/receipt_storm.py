"""Receipt storm: signed Twilio status callbacks, each for a real message, to gunicorn.

The messages table holds that many SMS reminders as a send leaves them
(``sent``, provider ``twilio``, a ``SM…`` sid). For each one a ``delivered``
status callback is built exactly as Twilio sends it: form fields
``MessageSid``, ``MessageStatus``, ``SmsSid``, ``SmsStatus``, ``AccountSid``,
``From``, ``To``, ``ApiVersion``, ``RawDlrDoneDate``, posted to
``/webhooks/twilio/status?ref=<message id>`` (the callback URL the adapter
gives Twilio) with ``X-Twilio-Signature`` computed by the SDK's
``RequestValidator`` against ``PUBLIC_BASE_URL``. ``gateway:create_app()``
runs under gunicorn with the Procfile's settings, with PostgreSQL, Redis and
one ``gateway worker`` (in case receipts are applied by a job). The load
generator posts them all over keep-alive connections; then the benchmark
waits until every message is ``delivered`` in the database. Receipts/s
counts from the first request to the last message applied.
"""

from __future__ import annotations

import contextlib
import time
from datetime import timedelta

from sqlalchemy import create_engine, text

from . import loadgen, seed
from .common import (
    GUNICORN_THREADS,
    GUNICORN_WORKERS,
    LATENCY_HEADERS,
    TWILIO_ACCOUNT_SID,
    TWILIO_AUTH_TOKEN,
    TWILIO_FROM,
    Context,
    NotAvailable,
    Section,
    Table,
    bin_path,
    free_port,
    gateway_env,
    gunicorn,
    has_cli_command,
    has_route,
    latency_row,
    make_app,
    process,
    reset_schema,
)

NAME = "receipts"
TITLE = "Receipt storm: signed Twilio status callbacks"
PATH = "/webhooks/twilio/status"
CONCURRENCY = 16
APPLY_TIMEOUT = 120


def callback_requests(
    items: list[tuple[int, str, str]], public_base_url: str, status: str = "delivered"
) -> list[bytes]:
    """Raw signed status callbacks for (message id, sid, recipient) items."""
    from twilio.request_validator import RequestValidator

    validator = RequestValidator(TWILIO_AUTH_TOKEN)
    out = []
    for message_id, sid, to in items:
        form = {
            "SmsSid": sid,
            "SmsStatus": status,
            "MessageStatus": status,
            "To": to,
            "MessageSid": sid,
            "AccountSid": TWILIO_ACCOUNT_SID,
            "From": TWILIO_FROM,
            "ApiVersion": "2010-04-01",
            "RawDlrDoneDate": "2611221000",
        }
        path = f"{PATH}?ref={message_id}"
        signature = validator.compute_signature(public_base_url + path, form)
        out.append(
            loadgen.post_form(
                path, form, {"X-Twilio-Signature": signature, "User-Agent": "TwilioProxy/1.1"}
            )
        )
    return out


def _applied(engine, first: int, last: int) -> int:
    with engine.connect() as conn:
        return conn.scalar(
            text(
                "SELECT count(*) FROM messages WHERE id BETWEEN :a AND :b AND status = 'delivered'"
            ),
            {"a": first, "b": last},
        )


def run(ctx: Context) -> Section:
    app = make_app(ctx)
    if not has_route(app, PATH, "POST"):
        raise NotAvailable(f"no POST {PATH} route in gateway:create_app() (webhooks not merged)")
    n = ctx.scale(10_000, 2000)
    warm = 300
    reset_schema(ctx)
    engine = create_engine(ctx.database_url)
    with engine.begin() as conn:
        now_row = conn.scalar(text("SELECT now()"))
        org = seed.org(conn, agents=100)
        first, last = seed.reminders(
            conn,
            org,
            warm + n,
            status="sent",
            send_at=now_row - timedelta(minutes=5),
            rdv_start=now_row + timedelta(days=2),
            provider="twilio",
        )
        rows = conn.execute(
            text(
                "SELECT id, provider_message_id, recipient FROM messages "
                "WHERE id BETWEEN :a AND :b ORDER BY id"
            ),
            {"a": first, "b": last},
        ).all()
    items = [tuple(r) for r in rows]
    warm_items, storm_items = items[:warm], items[warm:]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = gateway_env(ctx, PUBLIC_BASE_URL=base)
    section = Section(NAME, TITLE, method=__doc__.split("\n\n", 1)[1].replace("\n", " "))
    worker_args = [bin_path("gateway"), "worker"] if has_cli_command(app, "worker") else None
    with gunicorn(
        ctx, "gateway:create_app()", env, "gunicorn-gateway", ready_path="/health", port=port
    ):
        worker = process(worker_args, env, "receipts-worker", ctx) if worker_args else None
        with worker if worker else contextlib.nullcontext():
            loadgen.run(port, callback_requests(warm_items, base), concurrency=CONCURRENCY)
            requests = callback_requests(storm_items, base)
            started = time.perf_counter()
            result = loadgen.run(port, requests, concurrency=CONCURRENCY)
            s_first, s_last = storm_items[0][0], storm_items[-1][0]
            deadline = time.monotonic() + APPLY_TIMEOUT
            applied = _applied(engine, s_first, s_last)
            while applied < n and time.monotonic() < deadline:
                time.sleep(0.05)
                applied = _applied(engine, s_first, s_last)
            end_to_end = time.perf_counter() - started
            events = None
            with engine.connect() as conn:
                events = conn.scalar(text("SELECT count(*) FROM delivery_events"))
    engine.dispose()
    ok = sum(c for s, c in result.statuses.items() if 200 <= s < 300)
    rate = applied / end_to_end if end_to_end else 0.0
    if applied == n:
        ctx.metrics["receipts.per_s"] = rate
    statuses = ", ".join(f"{s}: {c}" for s, c in sorted(result.statuses.items()))
    section.tables.append(
        Table(
            LATENCY_HEADERS + ["HTTP req/s", "applied", "receipts/s"],
            [
                latency_row(
                    f"gateway, {CONCURRENCY} connections",
                    result.latencies,
                    [result.rate, applied, rate],
                ),
            ],
        )
    )
    section.notes.append(
        f"HTTP statuses: {statuses}; connection errors: {result.errors}; "
        f"{ok} answered 2xx; delivery events recorded: {events} "
        f"(including {warm} warm-up receipts)."
    )
    section.notes.append(
        f"gunicorn --workers {GUNICORN_WORKERS} --threads {GUNICORN_THREADS}"
        + ("; one `gateway worker` running" if worker_args else "; no `gateway worker` command yet")
    )
    if applied < n:
        section.notes.append(
            f"Only {applied} of {n} messages were `delivered` {APPLY_TIMEOUT} s "
            "after the storm: receipts are not (all) applied."
        )
    return section
