"""A move racing a cancel, in a forced order, on the suite's database (SQLite or PostgreSQL).

Two threads, two sessions. Each has loaded the rdv before the other acts.
One of them is stopped just before its first write statement (the moment it
has decided from what it read, and before it holds any lock), the other runs
to its commit, then the first goes on. Whatever the order, the usager must be
told the truth: the rdv ends cancelled and one ``cancelled`` notice per
channel goes, naming the rdv's real date; no ``moved`` notice goes.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import event, select

from gateway.booking import cancel, move
from gateway.errors import Conflict
from gateway.extensions import db
from gateway.models import Message, Rdv
from providers import status as S
from scheduler.dispatch import dispatch_all_due
from scheduler.queue import run_pending

from ..factories import book_rdv

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 6, 1, 10, 0, tzinfo=PARIS)
BOOKED = datetime(2026, 6, 5, 10, 0, tzinfo=PARIS)
MOVED_TO = datetime(2026, 6, 8, 14, 0, tzinfo=PARIS)
WAIT = 60  # seconds: a safety net against a hung test, never reached when it passes
WRITES = ("UPDATE", "INSERT", "DELETE")


class StopBeforeFirstWrite:
    """Holds one thread at its first write statement until told to go on."""

    def __init__(self, engine):
        self.engine = engine
        self.thread_id: int | None = None
        self.reached = threading.Event()
        self.go_on = threading.Event()
        event.listen(engine, "before_cursor_execute", self._check)

    def _check(self, conn, cursor, statement, parameters, context, executemany):
        if threading.get_ident() != self.thread_id or self.reached.is_set():
            return
        sql = statement.lstrip().upper()
        if sql.startswith(WRITES) or " FOR UPDATE" in sql or "FOR NO KEY UPDATE" in sql:
            self.reached.set()
            assert self.go_on.wait(WAIT), "the other thread never finished"

    def remove(self):
        event.remove(self.engine, "before_cursor_execute", self._check)


def _thread(app, rdv_id, loaded, start, action, results, name):
    def run():
        with app.app_context():
            try:
                rdv = db.session.get(Rdv, rdv_id)
                _ = (rdv.starts_at, rdv.status, rdv.lieu, rdv.participations)
                loaded.release()
                assert start.wait(WAIT)
                results[name] = action(rdv)
            except Conflict as exc:
                db.session.rollback()
                results[name] = exc
            except Exception as exc:  # noqa: BLE001 - reported by the test
                results[name] = exc
            finally:
                db.session.remove()

    return threading.Thread(target=run, name=name)


@pytest.mark.parametrize("first", ["cancel", "move"])
def test_a_move_racing_a_cancel_never_leaves_the_usager_uninformed(app, world, first):
    """Issue 11, defect 4. Failed before the fix: cancel first, the move went on
    from what it had read, cancelled the ``cancelled`` notice as "rdv déplacé"
    and its ``moved`` notice was then cancelled as "rdv annulé": silence.
    Move first, the cancel notice named the date the rdv had before the move."""
    with time_machine.travel(NOW, tick=False):
        rdv = book_rdv(world, BOOKED, now=NOW)
        rdv_id = rdv.id
        db.session.commit()
        stopper = StopBeforeFirstWrite(db.engine)
        loaded = threading.Semaphore(0)
        go = {"move": threading.Event(), "cancel": threading.Event()}
        results: dict = {}
        actions = {
            "move": lambda r: move(r, starts_at=MOVED_TO, now=NOW),
            "cancel": lambda r: cancel(r, via="api", now=NOW),
        }
        threads = {
            name: _thread(app, rdv_id, loaded, go[name], actions[name], results, name)
            for name in actions
        }
        second = "move" if first == "cancel" else "cancel"
        try:
            for t in threads.values():
                t.start()
            for _ in threads:
                assert loaded.acquire(timeout=WAIT)
            # The second actor decides first, then is held before writing anything.
            stopper.thread_id = threads[second].ident
            go[second].set()
            assert stopper.reached.wait(WAIT)
            go[first].set()
            threads[first].join(WAIT)
            assert not threads[first].is_alive()
            stopper.go_on.set()
            threads[second].join(WAIT)
            assert not threads[second].is_alive()
        finally:
            stopper.go_on.set()
            stopper.remove()

        for name, result in results.items():
            assert not isinstance(result, Exception) or isinstance(result, Conflict), (
                name,
                repr(result),
            )
        if first == "cancel":
            assert isinstance(results["move"], Conflict) and results["move"].status == 409
        db.session.expire_all()
        rdv = db.session.get(Rdv, rdv_id)
        assert rdv.status == "revoked"
        expected_start = BOOKED if first == "cancel" else MOVED_TO
        assert rdv.starts_at == expected_start

    # Time passes until the rdv: everything due goes.
    with time_machine.travel(expected_start - timedelta(hours=1), tick=False):
        dispatch_all_due()
        run_pending(app)
    db.session.expire_all()
    rows = db.session.scalars(select(Message).where(Message.rdv_id == rdv_id)).all()
    went = sorted((m.channel, m.kind) for m in rows if m.sent_at is not None)
    assert went == [("email", "cancelled"), ("sms", "cancelled")], [
        (m.channel, m.kind, m.status, m.status_changes[-1].detail) for m in rows
    ]
    named = {"sms": expected_start.strftime("%d/%m"), "email": f" {expected_start.day} juin "}
    for m in rows:
        if m.kind == "cancelled":
            assert named[m.channel] in m.body, m.body
        else:
            assert m.status == S.CANCELLED
