"""Provider outage: Twilio answers 500, then 429, then times out for a while; messages back off,
fail over to the next provider, none is lost, and Twilio is used again once it recovers."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gateway.timeutil import utcnow
from providers import status as S
from scheduler.dispatch import dispatch_due

from ..fakes.twilio_server import FakeTwilio
from .faults import (
    PIPELINE,
    configure,
    insert_due_sms,
    message_rows,
    needs_postgresql_and_redis,
    status_counts,
    wait_for,
    worker_pool,
)

pytestmark = needs_postgresql_and_redis

OUTAGE = 60  # messages due when the outage starts
TIMEOUTS = 20  # requests of the third round that hang until the client's own timeout (10 s)
AFTER = 40  # messages due after the recovery
BASE = timedelta(seconds=PIPELINE["RETRY_BASE_SECONDS"])


@pytest.fixture
def fake():
    # The client gives up after 10 s (the adapter's timeout); the fake holds on longer.
    with FakeTwilio(hang_seconds=20) as fake:
        yield fake


@pytest.fixture
def env(app_config, redis_url, fake):
    return configure(app_config, redis_url, fake, ["twilio", "simulator"])


def _all(ids, **expected):
    rows = message_rows(ids)
    return all(all(rows[i][k] == v for k, v in expected.items()) for i in ids)


def test_outage_backs_off_fails_over_and_comes_back(env, app, world, fake, tmp_path):
    """Chain ``twilio,simulator``, 3 attempts per provider, backoff 60 s x 2^(k-1).

    Round 1 (Twilio 500): every message back to ``scheduled``, attempts 1, due 60 s later.
    Round 2 (429), dispatched with the clock 61 s on: attempts 2, due 120 s later.
    Round 3, clock 121 s on: the first 20 requests hang until the client times out,
    then Twilio answers again. A timed-out message has used Twilio's 3 attempts and
    goes to the simulator at once (attempt 4); the other 40 go through Twilio at
    attempt 3. Round 4: 40 new messages, all through Twilio at the first attempt.
    Counted per message: its provider, its attempts, the fake's answer to it.
    """
    ids = insert_due_sms(world, OUTAGE, utcnow())
    with worker_pool(app, env, 1, tmp_path) as pool:
        pool.wait_ready()

        fake.mode = "500"
        assert dispatch_due() == OUTAGE
        wait_for(
            lambda: _all(ids, status=S.SCHEDULED, attempts=1), lambda: str(status_counts()), pool
        )
        rows = message_rows(ids)
        assert all(r["send_at"] - r["status_changed_at"] == BASE for r in rows.values())
        assert all((r["provider"], r["error_code"]) == ("twilio", "20500") for r in rows.values())
        assert dispatch_due() == 0  # backing off: nothing is due yet

        fake.mode = "429"
        assert dispatch_due(now=utcnow() + BASE + timedelta(seconds=1)) == OUTAGE
        wait_for(
            lambda: _all(ids, status=S.SCHEDULED, attempts=2), lambda: str(status_counts()), pool
        )
        rows = message_rows(ids)
        assert all(r["send_at"] - r["status_changed_at"] == 2 * BASE for r in rows.values())
        assert all(r["error_code"] == "20429" for r in rows.values())
        assert (
            dispatch_due(now=utcnow() + BASE + timedelta(seconds=1)) == 0
        )  # 60 s is not enough now

        fake.mode = "ok"
        fake.script(["timeout"] * TIMEOUTS)
        assert dispatch_due(now=utcnow() + 2 * BASE + timedelta(seconds=1)) == OUTAGE
        wait_for(lambda: _all(ids, status=S.SENT), lambda: str(status_counts()), pool)

        later = insert_due_sms(world, AFTER, utcnow())
        assert dispatch_due() == AFTER
        wait_for(lambda: _all(later, status=S.SENT), lambda: str(status_counts()), pool)

    rows = message_rows()
    assert status_counts() == {S.SENT: OUTAGE + AFTER}
    timed_out = {int(ref) for ref in fake.posts_by_ref(modes=("timeout",))}
    assert len(timed_out) == TIMEOUTS and timed_out <= set(ids)
    # Per message: who sent it, after how many attempts.
    for i in ids:
        expected = ("simulator", 4) if i in timed_out else ("twilio", 3)
        assert (rows[i]["provider"], rows[i]["attempts"]) == expected, rows[i]
    assert all((rows[i]["provider"], rows[i]["attempts"]) == ("twilio", 1) for i in later)
    # What Twilio saw: 3 rounds of the 60, then the 40 new ones; each accepted message once.
    assert fake.counts == {
        "500": OUTAGE,
        "429": OUTAGE,
        "timeout": TIMEOUTS,
        "ok": OUTAGE - TIMEOUTS + AFTER,
    }
    posts = fake.posts_by_ref()
    assert posts == {**{str(i): 3 for i in ids}, **{str(i): 1 for i in later}}
    sids = fake.sids_by_ref()
    assert set(sids) == {str(i) for i in ids if i not in timed_out} | {str(i) for i in later}
    assert all(rows[int(ref)]["provider_message_id"] in found for ref, found in sids.items())
