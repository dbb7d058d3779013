"""Redis flushed mid-run: the jobs are lost, the messages are not."""

from __future__ import annotations

from datetime import timedelta

import pytest
from redis import Redis

from gateway.timeutil import utcnow
from providers import status as S
from scheduler.dispatch import dispatch_all_due, dispatch_due, reconcile_stale
from scheduler.queue import pending_jobs

from ..fakes.twilio_server import FakeTwilio
from .faults import (
    PIPELINE,
    configure,
    insert_due_sms,
    message_rows,
    needs_postgresql_and_redis,
    status_counts,
    stop_all,
    wait_for,
    worker_pool,
)

pytestmark = needs_postgresql_and_redis

DUE_NOW = 1_000
DUE_LATER = 300
FLUSH_AT = 300  # POSTs received by the fake when Redis is flushed


@pytest.fixture
def fake():
    with FakeTwilio() as fake:
        yield fake


@pytest.fixture
def env(app_config, redis_url, fake):
    return configure(app_config, redis_url, fake, ["twilio"])


def test_redis_flushed_mid_run_loses_no_message_and_sends_none_twice(
    env, app, world, fake, tmp_path
):
    """1 000 SMS due now are all queued at once (10 send jobs waiting in Redis),
    300 more are due in a minute. Once the fake has received 300 POSTs, Redis
    is emptied with FLUSHDB: the waiting jobs, RQ's registries and the workers'
    registrations are gone.

    "Redis restarted": the suite shares one Redis server and cannot restart
    it, so FLUSHDB on the test's own db (what a restart without persistence
    leaves) plus a restart of every worker (warm: SIGTERM finishes the batch in
    hand, as a worker whose Redis went away would) is the equivalent here. The
    SIGKILL case is test_reliability_faults_kill.

    Then the scheduler's two recoveries, with the clock driven forward: reconcile
    re-queues exactly the rows left ``queued`` (their jobs were lost), and
    dispatch queues the 300 that became due. Counted: all 1 300 end ``sent``,
    the fake received each message id exactly once (0 duplicates).
    """
    now = utcnow()
    ids = insert_due_sms(world, DUE_NOW, now) + insert_due_sms(
        world, DUE_LATER, now + timedelta(minutes=1)
    )
    assert dispatch_all_due(now=now) == DUE_NOW
    assert pending_jobs(app) == DUE_NOW // PIPELINE["SEND_BATCH_SIZE"]
    redis = Redis.from_url(app.config["REDIS_URL"])
    with worker_pool(app, env, 2, tmp_path) as pool:
        pool.wait_ready()
        wait_for(
            lambda: len(fake.requests) >= FLUSH_AT, lambda: f"{len(fake.requests)} POSTs", pool
        )
        redis.flushdb()
        assert pending_jobs(app) == 0
        stop_all(pool)

        # Nothing runs: rows still queued lost their job; none is left sending.
        before = status_counts()
        lost = before.get(S.QUEUED, 0)
        assert before == {S.SENT: DUE_NOW - lost, S.QUEUED: lost, S.SCHEDULED: DUE_LATER}, before
        assert lost > 0  # the flush did lose jobs

        for worker in pool.workers:
            worker.start()
        later = utcnow() + timedelta(seconds=max(PIPELINE["QUEUED_TIMEOUT"], 60) + 1)
        assert reconcile_stale(now=later) == {
            "rescheduled": 0,
            "requeued": lost,
            "inbound_requeued": 0,
        }
        assert dispatch_due(now=later) == DUE_LATER
        wait_for(
            lambda: status_counts() == {S.SENT: DUE_NOW + DUE_LATER},
            lambda: str(status_counts()),
            pool,
        )

    posts = fake.posts_by_ref()
    rows = message_rows(ids)
    assert posts == {str(i): 1 for i in ids}
    assert len(fake.requests) == DUE_NOW + DUE_LATER
    assert all(rows[i]["attempts"] == 1 for i in ids)
    sids = fake.sids_by_ref()
    assert all(rows[i]["provider_message_id"] in sids[str(i)] for i in ids)
    print(
        f"\n{DUE_NOW + DUE_LATER} SMS, Redis flushed after {FLUSH_AT}+ POSTs, "
        f"{lost} rows re-queued by reconcile, 0 duplicates"
    )
