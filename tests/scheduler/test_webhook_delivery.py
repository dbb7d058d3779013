"""Outbound webhooks end to end: outbox, delivery jobs, signatures, retries, order, disabling.

A receiver in the test process (tests/fakes/webhook_receiver.py) verifies each
request with the ``standardwebhooks`` library, as a business tool would.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import func, select

from gateway import events
from gateway.booking import cancel, move, record_outcome
from gateway.extensions import db
from gateway.models import Message, Rdv, WebhookDelivery, WebhookEndpoint, WebhookEvent
from gateway.models import WebhookOutbox as Outbox
from gateway.schemas import RdvEvent, rdv_json
from gateway.timeutil import utcnow
from gateway.webhook_endpoints import create_endpoint, enable_endpoint, replay
from providers import status as S
from providers.base import InboundSms, Receipt
from scheduler.dispatch import dispatch_due
from scheduler.queue import run_pending
from scheduler.webhook_delivery import RETRY_DELAYS, dispatch_webhooks
from webhooks.inbound import receive
from webhooks.receipts import apply_receipt

from ..fakes.webhook_receiver import WebhookReceiver
from .conftest import book_for, sms_usager

BACKENDS = pytest.mark.parametrize("backend", ["embedded", "redis"], indirect=True)


@pytest.fixture
def receiver():
    r = WebhookReceiver()
    yield r
    r.close()


def subscribe(world, receiver, event_types=None) -> WebhookEndpoint:
    endpoint, secret = create_endpoint(world.org, receiver.url, event_types)
    receiver.secret = secret
    return endpoint


def deliver_all(app, rounds: int = 50) -> int:
    """Dispatch and run delivery jobs until nothing is due now."""
    total = 0
    for _ in range(rounds):
        claimed = dispatch_webhooks()
        if not claimed:
            return total
        total += claimed
        run_pending(app)
    raise AssertionError("deliveries never settled")


@BACKENDS
def test_an_rdv_life_arrives_signed_in_order_with_the_api_json(
    backend, app, world, clock, receiver
):
    subscribe(world, receiver, ["rdv.created", "rdv.moved", "rdv.cancelled"])
    rdv = book_for(world, sms_usager(world), days=3)
    move(rdv, starts_at=rdv.starts_at + timedelta(days=1))
    cancel(rdv, via="api")
    assert deliver_all(app) == 3
    got = receiver.events()
    assert receiver.rejected == []
    assert [e.type for e in got] == ["rdv.created", "rdv.moved", "rdv.cancelled"]
    assert len({e.webhook_id for e in got}) == 3 and all(
        e.webhook_id.startswith("msg_") for e in got
    )
    db.session.expire_all()
    rdv = db.session.get(Rdv, rdv.id)
    assert got[-1].data == rdv_json(rdv)  # the API's JSON, as it was at the change
    assert got[0].data["status"] == "unknown" and got[-1].data["cancelled_via"] == "api"
    for e in got:  # the payload matches the document's schema
        RdvEvent.model_validate({"type": e.type, "timestamp": e.timestamp, "data": e.data})
    # Each attempt is stored: event, attempt number, answer, time.
    attempts = db.session.scalars(select(WebhookDelivery)).all()
    assert sorted((a.attempt, a.status_code) for a in attempts) == [(1, 204)] * 3


@BACKENDS
def test_endpoint_down_then_up_every_event_once_in_order_per_rdv(
    backend, app, world, clock, receiver
):
    subscribe(world, receiver)
    receiver.mode = "down"
    first = book_for(world, sms_usager(world), days=3)
    second = book_for(world, sms_usager(world, phone="+33622222222"), days=4)
    move(first, starts_at=first.starts_at + timedelta(hours=1))
    move(first, starts_at=first.starts_at + timedelta(days=1))
    cancel(second, via="api")
    written = db.session.execute(
        select(WebhookEvent.webhook_id, WebhookEvent.rdv_id, WebhookEvent.type).order_by(
            WebhookEvent.id
        )
    ).all()
    # rdv events and the status changes of the messages they cancelled, all ordered per rdv
    assert len(written) > 5 and {r for _, r, _ in written} == {first.id, second.id}

    # Down: one attempt per rdv (the head of its line), each refused with 503.
    assert deliver_all(app) == 2
    assert receiver.events() == [] and receiver.calls == 2
    clock.shift(RETRY_DELAYS[0])
    assert deliver_all(app) == 2 and receiver.calls == 4
    # Back up: at the next retry everything goes, each rdv's events in their order.
    receiver.mode = "up"
    clock.shift(RETRY_DELAYS[1])
    assert deliver_all(app) == len(written)
    got = receiver.events()
    ids = [e.webhook_id for e in got]
    assert sorted(ids) == sorted(w for w, _, _ in written) and len(set(ids)) == len(ids)
    rdv_of = {w: r for w, r, _ in written}
    for rdv_id in (first.id, second.id):
        expected = [w for w, r, _ in written if r == rdv_id]
        assert [i for i in ids if rdv_of[i] == rdv_id] == expected
    attempts = db.session.execute(
        select(
            WebhookDelivery.outbox_id, WebhookDelivery.attempt, WebhookDelivery.status_code
        ).order_by(WebhookDelivery.outbox_id, WebhookDelivery.attempt)
    ).all()
    heads = {a.outbox_id for a in attempts if a.status_code == 503}
    assert len(heads) == 2
    for outbox_id in heads:
        assert [(a.attempt, a.status_code) for a in attempts if a.outbox_id == outbox_id] == [
            (1, 503),
            (2, 503),
            (3, 204),
        ]
    assert db.session.scalar(select(func.count()).where(Outbox.status != "delivered")) == 0
    assert deliver_all(app) == 0  # nothing twice


def test_retry_schedule_then_failed_and_the_endpoint_disabled_after_a_day(
    app, world, clock, receiver
):
    world.agent.is_admin = True
    db.session.commit()
    endpoint = subscribe(world, receiver, ["rdv.created"])
    receiver.mode = "down"
    book_for(world, sms_usager(world), days=3)
    outbox = db.session.scalar(select(Outbox))
    started = utcnow()
    waits = []
    for attempt in range(1, 9):
        assert deliver_all(app) == 1, attempt
        db.session.expire_all()
        outbox = db.session.get(Outbox, outbox.id)
        assert outbox.attempts == attempt
        if attempt < 8:
            assert outbox.status == "pending"
            last = db.session.scalar(
                select(func.max(WebhookDelivery.at)).where(WebhookDelivery.outbox_id == outbox.id)
            )
            waits.append(outbox.next_attempt_at - last)
            clock.move_to(outbox.next_attempt_at)
    assert waits == list(RETRY_DELAYS)
    assert outbox.status == "failed" and outbox.last_status_code == 503
    endpoint = db.session.get(WebhookEndpoint, endpoint.id)
    assert not endpoint.enabled and endpoint.disabled_at - started >= timedelta(days=1)
    alert = db.session.scalar(select(Message).where(Message.kind == "agent_alert"))
    assert alert.recipient == world.agent.email and receiver.url in alert.body
    # A disabled endpoint gets nothing; re-enabled, replay sends the failed event again.
    book_for(world, sms_usager(world, phone="+33633333333"), days=5)
    assert db.session.scalar(select(func.count()).select_from(Outbox)) == 1
    receiver.mode = "up"
    enable_endpoint(world.org, endpoint.id)
    event = db.session.scalar(select(WebhookEvent))
    assert replay(webhook_id=event.webhook_id) == 1
    assert deliver_all(app) == 1
    assert [e.webhook_id for e in receiver.events()] == [event.webhook_id]


def test_a_timeout_is_retried(app_config, app, world, clock, receiver):
    app.config["WEBHOOK_TIMEOUT"] = 0.2
    subscribe(world, receiver, ["rdv.created"])
    receiver.mode = "slow"
    book_for(world, sms_usager(world), days=3)
    assert deliver_all(app) == 1
    attempt = db.session.scalar(select(WebhookDelivery))
    assert attempt.status_code is None and attempt.error == "timeout"
    outbox = db.session.scalar(select(Outbox))
    assert outbox.status == "pending" and outbox.next_attempt_at - attempt.at == RETRY_DELAYS[0]


def test_a_rolled_back_change_produces_no_event(app, world, clock, receiver):
    subscribe(world, receiver)
    rdv = book_for(world, sms_usager(world), days=3)
    deliver_all(app)
    before = db.session.scalar(select(func.count(WebhookEvent.id)))

    def database_gone(session):
        raise RuntimeError("the database went away before COMMIT")

    session = db.session()
    sa_event.listen(session, "before_commit", database_gone)
    try:
        with pytest.raises(RuntimeError):
            cancel(rdv, via="api")
    finally:
        sa_event.remove(session, "before_commit", database_gone)
    db.session.rollback()
    assert db.session.scalar(select(func.count(WebhookEvent.id))) == before
    assert db.session.scalar(select(func.count()).select_from(Outbox)) == before
    assert db.session.get(Rdv, rdv.id).status == "unknown"
    assert deliver_all(app) == 0
    assert [e.type for e in receiver.events()] == ["rdv.created"]


@BACKENDS
def test_message_statuses_from_the_bulk_paths_and_receipts(backend, app, world, clock, receiver):
    subscribe(world, receiver, ["message.status_changed"])
    rdv = book_for(world, sms_usager(world), days=3)
    confirmation = next(m for m in rdv.messages if m.kind == "confirmation")
    assert dispatch_due() >= 1
    run_pending(app)  # the send job: sent, through bulk_transition
    apply_receipt(  # from the simulator, which sent it
        Receipt("simulator", "SIM1", str(confirmation.id), "delivered", S.DELIVERED, None, None)
    )
    deliver_all(app)
    got = [e for e in receiver.events() if e.data["id"] == confirmation.id]
    assert [e.data["status"] for e in got] == [S.SENT, S.DELIVERED]
    assert got[0].data["provider"] == "simulator"
    assert db.session.get(Message, confirmation.id).status == S.DELIVERED


def test_organisations_that_do_not_listen_store_no_event(app, world, clock, receiver):
    rdv = book_for(world, sms_usager(world), days=3)
    confirmation = next(m for m in rdv.messages if m.kind == "confirmation")
    dispatch_due()
    run_pending(app)
    apply_receipt(  # from the simulator, which sent it
        Receipt("simulator", "SIM1", str(confirmation.id), "delivered", S.DELIVERED, None, None)
    )
    cancel(rdv, via="api")
    assert db.session.get(Message, confirmation.id).status == S.DELIVERED
    assert db.session.scalar(select(func.count(WebhookEvent.id))) == 0


def test_every_event_type(app, world, clock, receiver):
    subscribe(world, receiver)
    usager = sms_usager(world)
    rdv = book_for(world, usager, days=3)
    clock.shift(timedelta(days=3, hours=1))
    record_outcome(rdv, "seen")
    other = book_for(world, usager, days=2)
    assert other.id
    receive(InboundSms("simulator", "in-1", usager.phone, "+33700000000", "STOP"))
    run_pending(app)
    cancel(other, via="api")
    deliver_all(app)
    types = [e.type for e in receiver.events()]
    for expected in (
        "rdv.created",
        "rdv.status_changed",
        "message.status_changed",
        "inbound_sms.received",
        "usager.sms_opted_out",
    ):
        assert expected in types, (expected, types)
    opted = next(e for e in receiver.events() if e.type == "usager.sms_opted_out")
    assert opted.data["id"] == usager.id and opted.data["sms_opted_out"] is True
    inbound = next(e for e in receiver.events() if e.type == "inbound_sms.received")
    assert inbound.data["action"] == "opted_out" and inbound.data["body"] == "STOP"
    assert events.REPORTED_STATUSES >= {"cancelled", "skipped"}


def test_only_subscribed_types_and_endpoints_of_the_organisation(app, world, clock, receiver):
    from ..factories import make_org

    other_org = make_org(name="Autre")
    db.session.commit()
    create_endpoint(other_org, receiver.url)
    subscribe(world, receiver, ["rdv.cancelled"])
    rdv = book_for(world, sms_usager(world), days=3)
    cancel(rdv, via="agent", agent=world.agent)
    deliver_all(app)
    assert [e.type for e in receiver.events()] == ["rdv.cancelled"]


def test_retention_deletes_old_events_once_delivered(app, world, clock, receiver):
    from scheduler.retention import anonymise_old

    subscribe(world, receiver, ["rdv.created"])
    book_for(world, sms_usager(world), days=3)
    deliver_all(app)
    receiver.mode = "down"
    book_for(world, sms_usager(world, phone="+33622222222"), days=3, hour=11)
    deliver_all(app)  # this one waits for its retry
    report = anonymise_old(utcnow() + timedelta(days=200), dry_run=True)
    assert report.webhook_events == 1
    assert anonymise_old(utcnow() + timedelta(days=200)).webhook_events == 1
    left = db.session.scalars(select(Outbox.status)).all()
    assert left == ["pending"] and db.session.scalar(select(func.count(WebhookDelivery.id))) == 1
