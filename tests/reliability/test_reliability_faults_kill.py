"""Workers killed with SIGKILL during a 5 000-SMS burst.

None lost; duplicates counted and bounded.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from gateway.timeutil import utcnow
from providers import status as S
from scheduler.dispatch import dispatch_due, reconcile_stale
from scheduler.queue import pending_jobs

from ..fakes.twilio_server import FakeTwilio
from .faults import (
    PIPELINE,
    configure,
    insert_due_sms,
    message_rows,
    needs_postgresql_and_redis,
    pump,
    status_counts,
    stop_all,
    wait_for,
    worker_pool,
)

pytestmark = needs_postgresql_and_redis

BURST = 5_000
WORKERS = 2
# SIGKILL a worker when the fake has received this many POSTs: 4 kills, some at a
# multiple of SEND_BATCH_SIZE (a batch's last sends), the others mid-batch.
KILL_AT = (800, 1_850, 2_930, 3_770)
# A worker never holds more than this many sends submitted but not yet written
# back (scheduler.jobs._send_all): what one kill can leave sent but unrecorded.
WINDOW = PIPELINE["SMS_CONCURRENCY"] + (
    PIPELINE.get("WRITE_BACK_EVERY") or PIPELINE["SMS_CONCURRENCY"]
)


@pytest.fixture
def fake():
    with FakeTwilio() as fake:
        yield fake


@pytest.fixture
def env(app_config, redis_url, fake):
    return configure(app_config, redis_url, fake, ["twilio"])


def test_sigkill_during_a_burst_loses_nothing_and_duplicates_stay_bounded(
    env, app, world, fake, tmp_path
):
    """5 000 due SMS through the real Twilio adapter and two ``gateway worker``
    processes; a worker is SIGKILLed (process group: no cleanup runs) four times
    mid-batch and restarted at once.

    Then, as a scheduler would after ``SENDING_TIMEOUT``: the workers are stopped
    (warm shutdown, so that only killed workers' rows are left ``sending``),
    ``reconcile_stale`` runs with the clock past both timeouts, the workers come
    back and send what reconcile gave back.

    Counted: every message ends ``sent`` with one of the sids the fake issued for
    it; the fake received every message id; a message POSTed twice (a duplicate)
    can only be one the killed worker had sent but not yet recorded, so
    duplicates <= kills x (SMS_CONCURRENCY + write-back chunk), the window of
    sends a worker may have submitted but not written back, and rows
    rescheduled <= kills x SEND_BATCH_SIZE (what a worker had claimed).
    """
    ids = insert_due_sms(world, BURST, utcnow())
    kills = list(KILL_AT)
    with worker_pool(app, env, WORKERS, tmp_path) as pool:
        pool.wait_ready()

        def step() -> None:
            pump(app)
            if kills and len(fake.requests) >= kills[0]:
                kills.pop(0)
                pool.restart(pool.kills % WORKERS)  # SIGKILL, then start again

        def drained() -> bool:
            counts = status_counts()
            return not kills and not counts.get(S.SCHEDULED) and pending_jobs(app) == 0

        wait_for(drained, lambda: f"{status_counts()} kills left {kills}", pool, step=step)
        assert pool.kills == len(KILL_AT)
        killed = pool.kills
        stop_all(pool)

        # Nothing runs now: whatever is not sent belongs to a killed worker.
        before = status_counts()
        orphans = BURST - before.get(S.SENT, 0)
        assert set(before) <= {S.SENT, S.SENDING, S.QUEUED}, before
        later = utcnow() + timedelta(
            seconds=max(PIPELINE["SENDING_TIMEOUT"], PIPELINE["QUEUED_TIMEOUT"]) + 1
        )
        recovered = reconcile_stale(now=later)
        assert recovered == {
            "rescheduled": before.get(S.SENDING, 0),
            "requeued": before.get(S.QUEUED, 0),
            "inbound_requeued": 0,
        }
        assert recovered["rescheduled"] <= len(KILL_AT) * PIPELINE["SEND_BATCH_SIZE"]
        assert dispatch_due(now=later) == recovered["rescheduled"]

        for index in range(WORKERS):
            pool.workers[index].start()
        wait_for(lambda: status_counts() == {S.SENT: BURST}, lambda: str(status_counts()), pool)

    rows = message_rows(ids)
    posts = fake.posts_by_ref()
    sids = fake.sids_by_ref()
    duplicates = sorted(int(ref) for ref, n in posts.items() if n > 1)
    # Every message went, to the right place, and its row names a sid the fake issued for it.
    assert set(posts) == {str(i) for i in ids}
    assert all(rows[i]["status"] == S.SENT and rows[i]["provider"] == "twilio" for i in ids)
    assert all(rows[i]["provider_message_id"] in sids[str(i)] for i in ids)
    # Sent twice at most, and only rows a killed worker held while sending.
    assert max(posts.values()) <= 2
    assert len(fake.requests) == BURST + len(duplicates)
    rescheduled = {i for i in ids if rows[i]["attempts"] == 2}
    assert len(rescheduled) == recovered["rescheduled"]
    assert set(duplicates) <= rescheduled
    assert len(duplicates) <= len(KILL_AT) * WINDOW
    assert sum(1 for i in ids if rows[i]["attempts"] == 1) == BURST - len(rescheduled)
    print(
        f"\n{BURST} SMS, {killed} SIGKILLs, {orphans} orphaned rows "
        f"({recovered['rescheduled']} sending, {recovered['requeued']} queued), "
        f"{len(duplicates)} duplicates"
    )
