"""Dispatch of due messages: due vs not due, quiet hours, the CLI, several dispatchers."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest

from gateway.extensions import db
from gateway.timeutil import utcnow
from providers import status as S
from scheduler.dispatch import dispatch_due
from scheduler.queue import embedded_queue, run_pending

from .conftest import PARIS, book_for, book_many, messages, simulator_outbox, sms_usager

pytestmark = pytest.mark.parametrize("backend", ["embedded", "redis"], indirect=True)


def test_only_due_messages_are_queued(backend, app, world, clock):
    usager = sms_usager(world)
    book_for(world, usager, days=3)
    confirmation, reminder = messages()
    assert (confirmation.kind, reminder.kind) == ("confirmation", "reminder")

    assert dispatch_due(utcnow()) == 1
    confirmation, reminder = messages()
    assert confirmation.status == S.QUEUED and confirmation.queued_at is not None
    assert reminder.status == S.SCHEDULED
    assert [c.status for c in confirmation.status_changes] == [S.SCHEDULED, S.QUEUED]
    assert dispatch_due(utcnow()) == 0  # queued once, not twice

    assert dispatch_due(reminder.send_at + timedelta(seconds=1)) == 1
    assert messages(id=reminder.id)[0].status == S.QUEUED
    assert run_pending(app) == 2
    assert [m.status for m in messages()] == [S.SENT, S.SENT]
    assert len(simulator_outbox(app)) == 2


def test_sms_due_in_quiet_hours_waits_for_the_morning(backend, app, world, clock):
    usager = sms_usager(world, email="ana@example.org")
    usager.notify_email = True
    db.session.commit()
    book_for(world, usager, days=3)
    night = datetime(2030, 3, 5, 22, 30, tzinfo=PARIS)
    # Both confirmations are due; at 22:30 only the email may go.
    assert dispatch_due(night) == 1
    by_channel = {m.channel: m for m in messages(kind="confirmation")}
    assert by_channel["email"].status == S.QUEUED
    sms = by_channel["sms"]
    assert sms.status == S.SCHEDULED
    assert sms.send_at == datetime(2030, 3, 6, 8, 0, tzinfo=PARIS)
    assert dispatch_due(night + timedelta(hours=1)) == 0
    assert dispatch_due(datetime(2030, 3, 6, 8, 0, tzinfo=PARIS)) == 1


def test_cli_dispatch_due_at_queues_and_sends(backend, app, world, clock, runner):
    usager = sms_usager(world)
    book_for(world, usager, days=3)
    result = runner.invoke(args=["dispatch-due"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "1"
    later = (utcnow() + timedelta(days=2)).isoformat()
    result = runner.invoke(args=["dispatch-due", "--at", later])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "1"
    run_pending(app)  # no-op when embedded: the command already ran the jobs
    assert [m.status for m in messages()] == [S.SENT, S.SENT]
    assert len(simulator_outbox(app)) == 2


def test_cli_dispatch_due_refuses_a_bad_date(backend, app, runner):
    result = runner.invoke(args=["dispatch-due", "--at", "demain"])
    assert result.exit_code != 0
    assert "--at" in result.output


def test_two_dispatchers_never_queue_a_row_twice(backend, app, world, clock):
    book_many(world, 30, series=200)
    due = len(messages(kind="confirmation"))
    assert due == 30
    counts = []
    barrier = threading.Barrier(2)

    def dispatcher():
        with app.app_context():
            barrier.wait()
            total = 0
            while True:
                count = dispatch_due(utcnow(), limit=7)
                total += count
                if count == 0:
                    break
            counts.append(total)
            db.session.remove()

    threads = [threading.Thread(target=dispatcher) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(counts) == due
    if backend == "embedded":
        queued_ids = [i for _, args, _ in list(embedded_queue(app).jobs.queue) for i in args[0]]
        assert sorted(queued_ids) == sorted(set(queued_ids)) and len(queued_ids) == due
    run_pending(app)
    assert len(simulator_outbox(app)) == due
    assert {m.status for m in messages(kind="confirmation")} == {S.SENT}
