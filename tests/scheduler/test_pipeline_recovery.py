"""Nothing lost: stale ``sending`` rows, lost jobs; embedded mode end to end; SMTP; throttling."""

from __future__ import annotations

import threading
from datetime import timedelta
from email import message_from_bytes

import pytest

from gateway import create_app
from gateway.extensions import db
from gateway.timeutil import utcnow
from providers import status as S
from scheduler.dispatch import dispatch_due, reconcile_stale
from scheduler.queue import embedded_queue, run_pending
from scheduler.throttle import _TOKEN_BUCKET, LocalBucket, rate_limiter
from scheduler.transitions import bulk_transition

from ..fakes.smtp_server import FakeSmtp
from .conftest import book_for, book_many, messages, simulator_outbox, sms_usager

BACKENDS = pytest.mark.parametrize("backend", ["embedded", "redis"], indirect=True)


def _lose_queued_jobs(app, backend):
    """What a Redis flush (or a restart of the embedded process) does to queued jobs."""
    if backend == "redis":
        from redis import Redis

        Redis.from_url(app.config["REDIS_URL"]).flushdb()
    else:
        embedded_queue(app).jobs.queue.clear()


@BACKENDS
def test_lost_jobs_are_queued_again_and_sent_once(backend, app, world, clock):
    book_for(world, sms_usager(world), days=3)
    assert dispatch_due(utcnow()) == 1
    _lose_queued_jobs(app, backend)
    assert run_pending(app) == 0
    (sms,) = messages(kind="confirmation")
    assert sms.status == S.QUEUED

    assert reconcile_stale(utcnow() + timedelta(minutes=1)) == {
        "rescheduled": 0,
        "requeued": 0,
        "inbound_requeued": 0,
    }
    assert reconcile_stale(utcnow() + timedelta(minutes=6)) == {
        "rescheduled": 0,
        "requeued": 1,
        "inbound_requeued": 0,
    }
    # Queued again once: the next reconcile does not pile up jobs for the same row.
    assert reconcile_stale(utcnow() + timedelta(minutes=7)) == {
        "rescheduled": 0,
        "requeued": 0,
        "inbound_requeued": 0,
    }
    run_pending(app)
    assert messages(id=sms.id)[0].status == S.SENT
    assert len(simulator_outbox(app)) == 1


@BACKENDS
def test_stale_sending_rows_are_retried_after_the_timeout(backend, app, world, clock):
    book_for(world, sms_usager(world), days=3)
    assert dispatch_due(utcnow()) == 1
    (sms,) = messages(kind="confirmation")
    # A worker claimed the row, then was killed before sending anything.
    bulk_transition(
        [sms.id], S.SENDING, at=utcnow(), from_statuses=(S.QUEUED,), attempts=sms.attempts + 1
    )
    db.session.commit()
    _lose_queued_jobs(app, backend)

    assert reconcile_stale(utcnow() + timedelta(minutes=9))["rescheduled"] == 0
    assert reconcile_stale(utcnow() + timedelta(minutes=11))["rescheduled"] == 1
    sms = messages(id=sms.id)[0]
    assert (sms.status, sms.attempts) == (S.SCHEDULED, 1)
    assert dispatch_due(utcnow() + timedelta(minutes=11)) == 1
    run_pending(app)
    sms = messages(id=sms.id)[0]
    assert (sms.status, sms.attempts) == (S.SENT, 2)
    assert len(simulator_outbox(app)) == 1


def test_a_sending_row_with_a_receipt_is_left_alone(backend, app, world, clock):
    from scheduler.transitions import transition

    book_for(world, sms_usager(world), days=3)
    dispatch_due(utcnow())
    (sms,) = messages(kind="confirmation")
    bulk_transition([sms.id], S.SENDING, at=utcnow())
    db.session.commit()
    sms = messages(id=sms.id)[0]
    transition(sms, S.DELIVERED)  # the receipt came although the worker died
    db.session.commit()
    assert reconcile_stale(utcnow() + timedelta(hours=1))["rescheduled"] == 0


@BACKENDS
def test_booking_through_the_api_reaches_the_simulator(backend, app, client, world, clock):
    usager = sms_usager(world)
    starts_at = (utcnow() + timedelta(days=3)).astimezone(world.org.tz).replace(hour=10, minute=0)
    r = client.post(
        "/api/v1/rdvs",
        json={
            "motif_id": world.motif.id,
            "lieu_id": world.lieu.id,
            "agent_id": world.agent.id,
            "usager_id": usager.id,
            "starts_at": starts_at.isoformat(),
        },
        headers={"Authorization": f"Bearer {world.token}"},
    )
    assert r.status_code == 201, r.json
    assert dispatch_due(utcnow()) == 1
    run_pending(app)
    (sent,) = simulator_outbox(app)
    assert sent.to == usager.phone and "Annuler" in sent.body
    rdv = client.get(
        f"/api/v1/rdvs/{r.json['id']}", headers={"Authorization": f"Bearer {world.token}"}
    )
    confirmation = next(m for m in rdv.json["messages"] if m["kind"] == "confirmation")
    assert (confirmation["status"], confirmation["provider"]) == ("sent", "simulator")


def test_embedded_threads_start_on_the_first_request_and_send(app_config, _migrated, clock):
    app_config.update(EMBEDDED_WORKER=True, SIMULATOR_RECEIPTS=False, DISPATCH_INTERVAL=0.05)
    embedded = create_app(app_config)
    assert "lapin_embedded_scheduler" not in embedded.extensions  # not at creation
    with embedded.app_context():
        from tests.conftest import _empty_tables
        from tests.factories import make_world

        _empty_tables()
        world = make_world()
        book_for(world, sms_usager(world), days=3)
        outbox = []
        sent = threading.Event()

        from scheduler.jobs import provider_for

        simulator = provider_for(embedded, "sms", "simulator")
        original = simulator._accept

        def accept(message):
            # Observe the fake provider (an event to wait on), its behaviour unchanged.
            outbox.append(message)
            sent.set()
            return original(message)

        simulator._accept = accept
        thread = None
        try:
            assert embedded.test_client().get("/health").status_code == 200
            thread = embedded.extensions["lapin_embedded_scheduler"]
            assert thread.is_alive()
            assert sent.wait(timeout=30), "the embedded pipeline sent nothing"
            assert outbox[0].to == "+33611111111"
        finally:
            embedded.extensions["lapin_embedded_stop"].set()
            if thread is not None:
                thread.join(timeout=10)
            embedded_queue(embedded).jobs.join()
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def smtp_server(app_config):
    with FakeSmtp() as relay:
        app_config["EMAIL_PROVIDER"] = "smtp"
        app_config["PROVIDER_SETTINGS"] = relay.settings
        yield relay


@BACKENDS
def test_email_goes_through_smtp_with_its_calendar_invitation(
    backend, smtp_server, app, world, clock
):
    world.usager.phone = None
    db.session.commit()
    book_for(world, world.usager, days=3)
    assert dispatch_due(utcnow()) == 1
    run_pending(app)
    (email,) = messages(kind="confirmation")
    assert (email.status, email.provider) == (S.SENT, "smtp")
    (envelope,) = smtp_server.envelopes
    assert envelope.rcpt_tos == ["lea@example.org"]
    parsed = message_from_bytes(envelope.content)
    assert parsed["Message-ID"] == email.provider_message_id
    assert parsed["X-Lapin-Ref"] == str(email.id)
    names = [part.get_filename() for part in parsed.walk()]
    assert "rdv.ics" in names


def test_local_bucket_gives_the_configured_burst_then_waits():
    bucket = LocalBucket(rate=3)
    for _ in range(3):
        bucket.acquire()
    assert bucket.tokens < 1  # a fourth would have to wait


@BACKENDS
def test_rate_limiter_is_shared_through_redis(backend, app_config, request):
    app_config["TWILIO_RATE_PER_SECOND"] = 2
    app_config["PROVIDER_SETTINGS"] = {"TWILIO_ACCOUNT_SID": "ACrate"}
    app = request.getfixturevalue("app")
    limiter = rate_limiter(app, "twilio")
    assert rate_limiter(app, "simulator").__class__.__name__ == "Unlimited"
    if backend == "embedded":
        assert isinstance(limiter, LocalBucket)
        return
    from redis import Redis

    conn = Redis.from_url(app.config["REDIS_URL"])
    script = conn.register_script(_TOKEN_BUCKET)
    key = limiter.key
    assert key == "lapin:rate:twilio:ACrate"
    waits = [int(script(keys=[key], args=[2, 2])) for _ in range(3)]
    assert waits[:2] == [0, 0] and waits[2] > 0  # the bucket is shared: the third must wait


def test_migrations_create_the_in_flight_index(backend, app):
    from sqlalchemy import inspect

    names = {index["name"] for index in inspect(db.engine).get_indexes("messages")}
    assert {"ix_messages_due", "ix_messages_in_flight"} <= names


@BACKENDS
def test_scheduler_tick_dispatches_and_reconciles(backend, app, world, clock):
    from scheduler.periodic import tick

    book_for(world, sms_usager(world), days=3)
    assert tick(app, reconcile=True) == {
        "queued": 1,
        "rescheduled": 0,
        "requeued": 0,
        "inbound_requeued": 0,
    }
    assert tick(app) == {"queued": 0}
    run_pending(app)
    assert len(simulator_outbox(app)) == 1


@BACKENDS
def test_worker_command_runs_the_send_jobs(backend, app, world, clock, runner):
    book_for(world, sms_usager(world), days=3)
    assert dispatch_due(utcnow()) == 1
    result = runner.invoke(args=["worker", "--burst"])
    if backend == "embedded":
        assert result.exit_code != 0 and "REDIS_URL" in result.output
        return
    assert result.exit_code == 0, result.output
    assert [m.status for m in messages(kind="confirmation")] == [S.SENT]


class _FailsOnce:
    """The real limiter, except that its ``n``-th ``acquire`` raises what a Redis outage
    raises (not a ``ProviderError``): the fault of issue 11, defect 6."""

    def __init__(self, real, n: int):
        self.real, self.n, self.calls = real, n, 0
        self.lock = threading.Lock()

    def acquire(self) -> None:
        from redis.exceptions import ConnectionError as RedisConnectionError

        with self.lock:
            self.calls += 1
            call = self.calls
        if call == self.n:
            raise RedisConnectionError("Connection reset by peer")
        self.real.acquire()


@BACKENDS
def test_an_error_that_is_not_a_provider_error_costs_one_send_not_the_batch(
    backend, app_config, request
):
    """Ten SMS in one job; the rate limiter raises a Redis error for one of them while
    the provider accepts the nine others. The nine are recorded ``sent`` by this job,
    the tenth goes back to ``scheduled`` with its attempt counted; after the
    reconciler (past ``SENDING_TIMEOUT``) and its retry, the provider received each of
    the ten exactly once. Before the fix, the exception aborted the job with the
    accepted sends unrecorded, and the reconciler sent them again."""
    app_config["SIMULATOR_RATE_PER_SECOND"] = 1000  # a real limiter in the path
    app = request.getfixturevalue("app")
    world = request.getfixturevalue("world")
    request.getfixturevalue("clock")
    book_many(world, 10, series=400)
    limiters = app.extensions.setdefault("lapin_rate_limiters", {})
    limiters["simulator"] = _FailsOnce(rate_limiter(app, "simulator"), n=4)
    assert dispatch_due(utcnow()) == 10
    ids = sorted(m.id for m in messages(kind="confirmation"))
    run_pending(app)

    outbox = [int(m.reference) for m in simulator_outbox(app)]
    assert len(outbox) == len(set(outbox)) == 9
    (failed,) = set(ids) - set(outbox)
    rows = {m.id: m for m in messages(kind="confirmation")}
    assert {(rows[i].status, rows[i].attempts) for i in outbox} == {(S.SENT, 1)}
    assert (rows[failed].status, rows[failed].attempts) == (S.SCHEDULED, 1)
    assert "ConnectionError" in rows[failed].last_error

    # Whatever a dead worker may have left is taken back; nothing is left here.
    later = utcnow() + timedelta(seconds=app.config["SENDING_TIMEOUT"] + 60)
    assert reconcile_stale(later)["rescheduled"] == 0
    assert dispatch_due(later) == 1
    run_pending(app)
    outbox = [int(m.reference) for m in simulator_outbox(app)]
    assert sorted(outbox) == ids  # each exactly once, the failed one retried once
    sent = messages(id=failed)[0]
    assert (sent.status, sent.attempts) == (S.SENT, 2)


def test_an_embedded_restart_sends_what_the_dead_process_left_queued(app, world, clock):
    """The embedded queue dies with its process: at start, the scheduler queues again
    at once what an earlier process left ``queued`` (not after ``QUEUED_TIMEOUT``),
    and leaves a ``sending`` row (it may have reached the provider) to the timeout."""
    from scheduler.periodic import recover_embedded

    book_many(world, 3, series=500)
    assert dispatch_due(utcnow()) == 3
    first, *others = messages(kind="confirmation")
    bulk_transition([first.id], S.SENDING, at=utcnow(), from_statuses=(S.QUEUED,), attempts=1)
    db.session.commit()
    _lose_queued_jobs(app, "embedded")  # the process died with its queue

    assert recover_embedded(app) == 2
    run_pending(app)
    assert sorted(int(m.reference) for m in simulator_outbox(app)) == [m.id for m in others]
    assert messages(id=first.id)[0].status == S.SENDING
    assert recover_embedded(app) == 0  # nothing is queued twice
