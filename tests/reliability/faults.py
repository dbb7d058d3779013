"""Shared pieces of the fault tests (``test_reliability_faults_*.py``): real ``gateway worker``
processes on real PostgreSQL and Redis, a fake Twilio API, counted outcomes.

The test process plays the scheduler: it calls :func:`scheduler.dispatch.dispatch_due`
and :func:`scheduler.dispatch.reconcile_stale` itself, with an explicit ``now``
where time must pass (a backoff, a reconcile timeout), instead of sleeping.
Waiting for the workers is polling the database with a deadline.

Clock rule, because the workers run on the real clock: ``reconcile_stale`` is
only fast-forwarded past ``SENDING_TIMEOUT`` when no live worker holds rows
(every worker stopped), so it can only pick up the rows of killed workers —
which is what ``SEND_JOB_TIMEOUT`` < ``SENDING_TIMEOUT`` guarantees in
production.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, insert, select

from gateway.extensions import db
from gateway.models import Message, Rdv
from gateway.timeutil import utcnow
from scheduler.dispatch import dispatch_due
from scheduler.queue import pending_jobs

from ..fakes.twilio_server import FakeTwilio
from .processes import WorkerPool, worker_env

needs_postgresql = pytest.mark.skipif(
    not os.environ.get("TEST_DATABASE_URL", "").startswith("postgresql"),
    reason="the database fault tests put a TCP proxy between the app and a PostgreSQL server: "
    "set TEST_DATABASE_URL (PostgreSQL)",
)
needs_postgresql_and_redis = pytest.mark.skipif(
    not (
        os.environ.get("TEST_DATABASE_URL", "").startswith("postgresql")
        and os.environ.get("TEST_REDIS_URL")
    ),
    reason=(
        "fault tests run real `gateway worker` processes that share the test's database "
        "and Redis: set TEST_DATABASE_URL (PostgreSQL) and TEST_REDIS_URL"
    ),
)

# Pipeline settings shared by the test process (dispatch, reconcile) and the workers.
# SENDING_TIMEOUT and QUEUED_TIMEOUT are never waited for (see the clock rule above);
# they keep production's order: SEND_JOB_TIMEOUT < QUEUED_TIMEOUT < SENDING_TIMEOUT.
PIPELINE = {
    "SEND_BATCH_SIZE": 100,
    "SMS_CONCURRENCY": 32,
    "SEND_JOB_TIMEOUT": 30,
    "QUEUED_TIMEOUT": 40,
    "SENDING_TIMEOUT": 60,
    "MAX_ATTEMPTS_PER_PROVIDER": 3,
    "RETRY_BASE_SECONDS": 60,
    "RETRY_MAX_SECONDS": 600,
}
WAIT = 120.0  # seconds: the most any single wait for the workers may take before the test fails


def configure(app_config: dict, redis_url: str, fake: FakeTwilio, sms_providers: list[str]) -> dict:
    """Point the test's app at Redis and the fake; return the workers' environment additions."""
    from redis import Redis

    Redis.from_url(redis_url).flushdb()  # this run's own Redis db: no job of an earlier run
    app_config.update(PIPELINE)
    app_config.update(
        {
            "REDIS_URL": redis_url,
            "SMS_PROVIDERS": sms_providers,
            "SIMULATOR_RECEIPTS": False,
            "PROVIDER_SETTINGS": dict(fake.settings),
        }
    )
    return {
        **{key: str(value) for key, value in PIPELINE.items()},
        **fake.settings,
        "SMS_PROVIDERS": ",".join(sms_providers),
        "SIMULATOR_RECEIPTS": "false",
    }


def worker_pool(app, extra_env: dict, size: int, log_dir) -> WorkerPool:
    env = worker_env(
        app.config["SQLALCHEMY_DATABASE_URI"], app.config["REDIS_URL"], log_dir, extra=extra_env
    )
    return WorkerPool(env, size=size, log_dir=log_dir, ready_text="Listening on")


def insert_due_sms(world, count: int, send_at: datetime) -> list[int]:
    """``count`` reminder SMS rows ``scheduled`` at ``send_at`` (one recipient each) for one
    upcoming rdv of ``world``; returns their ids. Numbers end in 5: none is one the
    simulator refuses (``...0000``) or reports undelivered (``...0001``).

    The organisation has no quiet hours, so that the run does not depend on the
    hour CI runs at; every check made at send time still applies (the rdv is
    live, the usager consents to SMS).
    """
    world.org.quiet_hours = "none"
    now = utcnow()
    rdv = db.session.scalar(select(Rdv).where(Rdv.organisation_id == world.org.id).limit(1))
    if rdv is None:
        starts = now + timedelta(days=30)
        rdv = Rdv(
            organisation_id=world.org.id,
            motif_id=world.motif.id,
            lieu_id=world.lieu.id,
            agent_id=world.agent.id,
            starts_at=starts,
            ends_at=starts + timedelta(minutes=30),
            duration_minutes=30,
        )
        db.session.add(rdv)
        db.session.flush()
    start = db.session.scalar(select(func.count()).select_from(Message))
    table = Message.__table__
    ids = db.session.scalars(
        insert(table).returning(table.c.id),
        [
            {
                "organisation_id": world.org.id,
                "rdv_id": rdv.id,
                "usager_id": world.usager.id,
                "channel": "sms",
                "kind": "reminder",
                "status": "scheduled",
                "send_at": send_at,
                "recipient": f"+3361{start + i:06d}5",
                "body": f"RDV PMI le 24/11 à 14h30 ({start + i})",
                "attempts": 0,
                "created_at": now,
                "status_changed_at": now,
            }
            for i in range(count)
        ],
    ).all()
    db.session.commit()
    return sorted(ids)


def status_counts() -> dict[str, int]:
    """Committed messages per status, read on a fresh connection."""
    with db.engine.connect() as connection:
        table = Message.__table__
        return dict(
            connection.execute(select(table.c.status, func.count()).group_by(table.c.status)).all()
        )


def message_rows(ids=None) -> dict[int, dict]:
    """Committed message rows (as dicts) by id."""
    table = Message.__table__
    query = select(table)
    if ids is not None:
        query = query.where(table.c.id.in_(list(ids)))
    with db.engine.connect() as connection:
        return {row.id: dict(row._mapping) for row in connection.execute(query)}


def wait_for(
    predicate: Callable[[], bool],
    describe: Callable[[], str],
    pool: WorkerPool | None = None,
    timeout: float = WAIT,
    step: Callable[[], None] | None = None,
) -> None:
    """Poll ``predicate`` (running ``step`` before each poll) until true; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        if step is not None:
            step()
        if predicate():
            return
        if time.monotonic() > deadline:
            logs = (
                "\n".join(
                    f"--- worker {i}\n{w.output()[-1500:]}" for i, w in enumerate(pool.workers)
                )
                if pool
                else ""
            )
            raise AssertionError(f"not reached within {timeout:.0f}s: {describe()}\n{logs}")
        time.sleep(0.1)


def pump(app, now: datetime | None = None, max_pending: int = 4, limit: int = 400) -> int:
    """One scheduler round with back-pressure: queue due rows while few jobs wait in Redis."""
    if pending_jobs(app) >= max_pending:
        return 0
    return dispatch_due(now=now, limit=limit)


def stop_all(pool: WorkerPool) -> None:
    """SIGTERM every worker (RQ's warm shutdown: the current batch is finished and written)."""
    for worker in pool.workers:
        worker.terminate(timeout=60)
