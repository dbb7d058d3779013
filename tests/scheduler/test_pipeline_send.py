"""The send job: claims, checks at send time, retries, failover, failure, fallback, opt-out."""

from __future__ import annotations

import threading
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from gateway.booking import cancel
from gateway.extensions import db
from gateway.models import RDV_REVOKED, Usager
from gateway.timeutil import utcnow
from providers import status as S
from scheduler.dispatch import dispatch_due
from scheduler.jobs import send_messages
from scheduler.queue import run_pending

from .conftest import (
    TWILIO_SETTINGS,
    TWILIO_URL,
    book_for,
    book_many,
    messages,
    simulator_outbox,
    sms_usager,
)

BACKENDS = pytest.mark.parametrize("backend", ["embedded", "redis"], indirect=True)


def twilio_ok(sid="SM1", segments="1"):
    return responses.Response(
        responses.POST,
        TWILIO_URL,
        status=201,
        json={"sid": sid, "status": "queued", "num_segments": segments, "error_code": None},
    )


def twilio_error(status, code, message="error"):
    return responses.Response(
        responses.POST,
        TWILIO_URL,
        status=status,
        json={"code": code, "message": message, "more_info": "", "status": status},
    )


@pytest.fixture
def twilio_first(app_config):
    """Twilio then the simulator; one attempt per provider unless a test says otherwise."""
    app_config["PROVIDER_SETTINGS"] = dict(TWILIO_SETTINGS)
    app_config["SMS_PROVIDERS"] = ["twilio", "simulator"]
    app_config["MAX_ATTEMPTS_PER_PROVIDER"] = 1
    return app_config


@pytest.fixture
def twilio_only(app_config):
    """Twilio alone, 3 attempts, backoff from 30 s."""
    app_config["PROVIDER_SETTINGS"] = dict(TWILIO_SETTINGS)
    app_config["SMS_PROVIDERS"] = ["twilio"]
    app_config["MAX_ATTEMPTS_PER_PROVIDER"] = 3
    app_config["RETRY_BASE_SECONDS"] = 30
    return app_config


@pytest.fixture
def twilio_once(twilio_only):
    twilio_only["MAX_ATTEMPTS_PER_PROVIDER"] = 1
    return twilio_only


def _confirmation(world, usager=None):
    usager = usager or sms_usager(world)
    book_for(world, usager, days=3)
    assert dispatch_due(utcnow()) == 1
    return messages(kind="confirmation", channel="sms")[0]


@BACKENDS
def test_the_same_ids_sent_by_two_racing_jobs_go_once(backend, app, world, clock):
    book_many(world, 12, series=300)
    assert dispatch_due(utcnow()) == 12
    ids = [m.id for m in messages(kind="confirmation")]
    barrier = threading.Barrier(2)

    def worker():
        with app.app_context():
            barrier.wait()
            send_messages(ids)
            db.session.remove()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    run_pending(app)  # the dispatcher's own jobs for the same ids: they claim nothing
    assert sorted(int(m.reference) for m in simulator_outbox(app)) == sorted(ids)
    assert {(m.status, m.attempts) for m in messages(kind="confirmation")} == {(S.SENT, 1)}


@responses.activate
def test_transient_error_is_retried_with_backoff_then_sent(backend, twilio_only, app, world, clock):
    responses.add(twilio_error(503, 20500, "Service unavailable"))
    responses.add(twilio_error(429, 20429, "Too many requests"))
    responses.add(twilio_ok("SMok", segments="2"))
    sms = _confirmation(world)
    run_pending(app)

    sms = messages(id=sms.id)[0]
    first_retry = sms.send_at
    assert sms.status == S.SCHEDULED and sms.attempts == 1
    assert timedelta(seconds=29) < first_retry - utcnow() <= timedelta(seconds=30)
    assert "Service unavailable" in sms.last_error

    assert dispatch_due(first_retry - timedelta(seconds=1)) == 0  # not before its time
    assert dispatch_due(first_retry) == 1
    run_pending(app)
    sms = messages(id=sms.id)[0]
    assert sms.status == S.SCHEDULED and sms.attempts == 2
    assert timedelta(seconds=59) < sms.send_at - utcnow() <= timedelta(seconds=60)  # doubled

    assert dispatch_due(sms.send_at) == 1
    run_pending(app)
    sms = messages(id=sms.id)[0]
    assert (sms.status, sms.attempts, sms.provider, sms.provider_message_id, sms.segments) == (
        S.SENT,
        3,
        "twilio",
        "SMok",
        2,
    )
    assert [c.status for c in sms.status_changes] == [
        S.SCHEDULED,
        S.QUEUED,
        S.SENDING,
        S.SCHEDULED,
        S.QUEUED,
        S.SENDING,
        S.SCHEDULED,
        S.QUEUED,
        S.SENDING,
        S.SENT,
    ]
    assert len(responses.calls) == 3


@responses.activate
def test_failover_to_the_next_provider_in_the_same_job(backend, twilio_first, app, world, clock):
    responses.add(twilio_error(500, 20500, "Internal error"))
    sms = _confirmation(world)
    run_pending(app)

    sms = messages(id=sms.id)[0]
    assert (sms.status, sms.provider, sms.attempts) == (S.SENT, "simulator", 2)
    assert [m.reference for m in simulator_outbox(app)] == [str(sms.id)]
    assert len(responses.calls) == 1
    # The Twilio attempt carried our message id in its status callback URL.
    form = parse_qs(responses.calls[0].request.body)
    callback = urlsplit(form["StatusCallback"][0])
    assert callback.path == "/webhooks/twilio/status"
    assert parse_qs(callback.query)["ref"] == [str(sms.id)]
    assert form["From"] == ["Lapin"]  # the organisation's sender


@responses.activate
def test_organisation_providers_override_the_environment(backend, twilio_first, app, world, clock):
    world.org.sms_providers = "simulator"
    db.session.commit()
    sms = _confirmation(world)
    run_pending(app)
    assert messages(id=sms.id)[0].provider == "simulator"
    assert len(responses.calls) == 0


@responses.activate
def test_all_providers_exhausted_fails_and_falls_back_to_email(
    backend, twilio_once, app, world, clock
):
    responses.add(twilio_error(500, 20500, "Internal error"))
    sms = _confirmation(world, sms_usager(world, email="ana@example.org"))
    run_pending(app)
    sms = messages(id=sms.id)[0]
    assert sms.status == S.FAILED and "Internal error" in sms.last_error
    fallback = messages(channel="email")
    assert [(m.kind, m.fallback_of_id, m.status) for m in fallback] == [
        ("confirmation", sms.id, S.SCHEDULED)
    ]


@BACKENDS
@responses.activate
def test_permanent_error_fails_at_once_with_email_fallback(
    backend, twilio_first, app, world, clock
):
    responses.add(twilio_error(400, 21211, "Invalid 'To' Phone Number"))
    sms = _confirmation(world, sms_usager(world, email="ana@example.org"))
    run_pending(app)
    sms = messages(id=sms.id)[0]
    assert (sms.status, sms.attempts, sms.error_code) == (S.FAILED, 1, "21211")
    assert simulator_outbox(app) == []  # no failover for the recipient's own problem
    fallback = messages(channel="email")[0]
    assert fallback.fallback_of_id == sms.id
    # The fallback email goes, although the usager had email notifications off.
    assert dispatch_due(utcnow()) == 1
    run_pending(app)
    assert messages(id=fallback.id)[0].status == S.SENT
    assert [e.to for e in simulator_outbox(app, "email")] == ["ana@example.org"]


@responses.activate
def test_twilio_21610_marks_the_usager_opted_out(backend, twilio_first, app, world, clock):
    responses.add(twilio_error(400, 21610, "Attempt to send to unsubscribed recipient"))
    usager = sms_usager(world)
    sms = _confirmation(world, usager)
    run_pending(app)
    assert messages(id=sms.id)[0].status == S.FAILED
    assert db.session.get(Usager, usager.id).sms_opted_out is True


@BACKENDS
def test_opted_out_usager_is_skipped(backend, app, world, clock):
    usager = sms_usager(world)
    sms = _confirmation(world, usager)
    usager.sms_opted_out = True
    db.session.commit()
    run_pending(app)
    sms = messages(id=sms.id)[0]
    assert (sms.status, sms.attempts) == (S.SKIPPED, 0)
    assert "STOP" in sms.last_error
    assert simulator_outbox(app) == []


def test_no_consent_is_skipped(backend, app, world, clock):
    usager = sms_usager(world)
    sms = _confirmation(world, usager)
    usager.notify_sms = False
    db.session.commit()
    run_pending(app)
    assert messages(id=sms.id)[0].status == S.SKIPPED
    assert simulator_outbox(app) == []


def test_started_rdv_is_skipped(backend, app, world, clock):
    usager = sms_usager(world)
    rdv = book_for(world, usager, days=3)
    reminder = messages(kind="reminder")[0]
    clock.move_to(rdv.starts_at + timedelta(minutes=5))
    assert dispatch_due(utcnow()) == 2  # the confirmation, late, and the reminder
    run_pending(app)
    assert {m.status for m in messages()} == {S.SKIPPED}
    assert "commencé" in messages(id=reminder.id)[0].last_error
    assert simulator_outbox(app) == []


def test_rdv_cancelled_after_queueing_is_cancelled_at_send_time(backend, app, world, clock):
    usager = sms_usager(world)
    sms = _confirmation(world, usager)
    # As if the cancellation had raced the dispatcher: the row is queued, the rdv revoked.
    sms.rdv.status = RDV_REVOKED
    db.session.commit()
    run_pending(app)
    sms = messages(id=sms.id)[0]
    assert (sms.status, sms.attempts) == (S.CANCELLED, 0)
    assert simulator_outbox(app) == []


def test_cancelled_rdv_still_gets_its_cancellation_message(backend, app, world, clock):
    usager = sms_usager(world)
    rdv = book_for(world, usager, days=3)
    cancel(rdv, via="agent", agent=world.agent, now=utcnow())
    assert dispatch_due(utcnow()) == 1
    run_pending(app)
    assert [(m.kind, m.status) for m in messages()] == [
        ("confirmation", S.CANCELLED),
        ("reminder", S.CANCELLED),
        ("cancelled", S.SENT),
    ]


def test_quiet_hours_at_send_time_put_the_sms_back_to_the_morning(backend, app, world, clock):
    sms = _confirmation(world)
    clock.move_to(utcnow().replace(hour=21))  # 22:00 in Paris (UTC+1 in March)
    run_pending(app)
    sms = messages(id=sms.id)[0]
    assert (sms.status, sms.attempts) == (S.SCHEDULED, 0)
    assert sms.send_at.astimezone(world.org.tz).hour == 8


def test_rdv_moved_after_queueing_sends_only_the_new_date(backend, app, world, clock):
    from gateway.booking import move

    usager = sms_usager(world)
    rdv = book_for(world, usager, days=3)
    assert dispatch_due(utcnow()) == 1  # the confirmation, with the old date, is queued
    move(rdv, starts_at=rdv.starts_at + timedelta(days=1), now=utcnow())
    assert dispatch_due(utcnow()) == 1  # the moved message
    run_pending(app)
    kinds = [(m.kind, m.status) for m in messages()]
    assert ("confirmation", S.CANCELLED) in kinds and ("moved", S.SENT) in kinds
    assert [m.reference for m in simulator_outbox(app)] == [
        str(m.id) for m in messages(kind="moved")
    ]


def test_a_job_claims_only_what_is_about_to_go(app_config, request):
    """30 SMS in one job, 4 threads written back every 4: whenever the provider is
    called, at most the window (4 in flight + 4 not yet written back) are ``sending``
    and the rest of the batch is still ``queued``, so a worker killed at any instant
    leaves no more than that to ``SENDING_TIMEOUT`` (before: the whole batch)."""
    from sqlalchemy import func, select

    from gateway.models import Message
    from scheduler.jobs import provider_for

    app_config.update(SMS_CONCURRENCY=4, WRITE_BACK_EVERY=4, SIMULATOR_RECEIPTS=False)
    app = request.getfixturevalue("app")
    world = request.getfixturevalue("world")
    request.getfixturevalue("clock")
    book_many(world, 30, series=600)
    assert dispatch_due(utcnow()) == 30
    simulator = provider_for(app, "sms", "simulator")
    original = simulator._accept
    seen: list[int] = []
    table = Message.__table__
    engine = db.engine  # the send threads have no app context

    def accept(message):
        # Observe the committed rows at each send, the provider's behaviour unchanged.
        with engine.connect() as connection:
            seen.append(connection.scalar(select(func.count()).where(table.c.status == S.SENDING)))
        return original(message)

    simulator._accept = accept
    ids = [m.id for m in messages(kind="confirmation")]
    assert send_messages(ids) == {"sent": 30}
    assert len(seen) == 30 and max(seen) <= 4 + 4
    assert {m.status for m in messages(kind="confirmation")} == {S.SENT}
