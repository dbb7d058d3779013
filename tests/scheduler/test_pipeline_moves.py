"""Moving an rdv: what was planned before goes stale, what is planned after goes.

The rule under test (scheduler/jobs.py): a dated message (confirmation,
reminder, moved) goes only if it belongs to the rdv's current plan
generation; every move or cancel starts a new generation.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta

import time_machine
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from gateway.booking import move
from gateway.extensions import db
from gateway.models import Message
from gateway.planning import quiet_hours
from gateway.timeutil import utcnow
from providers import status as S
from scheduler import policy
from scheduler.dispatch import dispatch_due
from scheduler.queue import run_pending

from ..conftest import _empty_tables
from ..factories import make_usager, make_world
from .conftest import PARIS, book_for, messages, simulator_outbox, sms_usager

WENT = (S.SENT, S.DELIVERED)  # the simulator's receipts may already have come


def _patch(client, world, rdv_id, starts_at):
    return client.patch(
        f"/api/v1/rdvs/{rdv_id}",
        json={"starts_at": starts_at.isoformat()},
        headers={"Authorization": f"Bearer {world.token}"},
    )


def test_a_rdv_moved_through_the_api_keeps_its_sms_and_emails(app, world, client, runner, clock):
    """Issue 11, defect 1: with a mobile and an email, the SMS of the move ended cancelled.

    Failed before the fix: the SMS ``moved`` and the new SMS reminder were
    cancelled "rdv déplacé" because the email ``moved`` row had a higher id.
    """
    rdv = book_for(world, world.usager, days=3, hour=10)
    before = {m.id for m in messages()}
    new_start = rdv.starts_at.astimezone(PARIS) + timedelta(days=1, hours=1)
    answer = _patch(client, world, rdv.id, new_start)
    assert answer.status_code == 200, answer.json
    reminder_at = new_start - timedelta(hours=48)
    clock.move_to(reminder_at + timedelta(minutes=1))
    result = runner.invoke(
        args=["dispatch-due", "--at", (reminder_at + timedelta(minutes=1)).isoformat()]
    )
    assert result.exit_code == 0, result.output

    after = messages()
    old = [m for m in after if m.id in before]
    new = [m for m in after if m.id not in before]
    assert {m.status for m in old} == {S.CANCELLED}
    assert sorted((m.channel, m.kind, m.status in WENT) for m in new) == [
        ("email", "moved", True),
        ("email", "reminder", True),
        ("sms", "moved", True),
        ("sms", "reminder", True),
    ], [(m.channel, m.kind, m.status) for m in new]
    sms_sent = sorted(int(m.reference) for m in simulator_outbox(app, "sms"))
    assert sms_sent == sorted(m.id for m in new if m.channel == "sms")
    named = new_start.strftime("%d/%m 11h")
    assert all(named in m.body for m in new if m.channel == "sms"), [m.body for m in new]


# --- the rule across channel mixes, reminder offsets and successive moves ---

MIXES = {
    "sms": {"phone": "+33622222222", "email": None},
    "email": {"phone": None, "email": "mix@example.org"},
    "both": {"phone": "+33622222222", "email": "mix@example.org"},
}
GRID = [(h, m) for h in (9, 10, 11, 14, 15, 16) for m in (0, 30)]
T0 = datetime(2030, 3, 4, 10, 0, tzinfo=PARIS)  # a Monday morning


def _fresh_world(app, offsets: str):
    _empty_tables()
    app.extensions.pop("lapin_providers", None)  # a new simulator, an empty outbox
    app.config["REMINDER_OFFSETS"] = offsets
    return make_world(opening=((time(9), time(12)), (time(14), time(17))))


def _run_until_quiet(app, horizon: datetime, traveller) -> None:
    """Let time pass up to ``horizon``, sending everything due on the way."""
    while True:
        db.session.expire_all()
        due = db.session.scalar(
            select(func.min(Message.send_at)).where(Message.status == S.SCHEDULED)
        )
        if due is None or due >= horizon:
            return
        traveller.move_to(max(due, utcnow()) + timedelta(seconds=1))
        dispatch_due(utcnow())
        run_pending(app)


@settings(
    max_examples=20,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    mix=st.sampled_from(sorted(MIXES)),
    offsets=st.sampled_from(["48h", "48h,2h", "72h,24h,1h", "24h"]),
    moves=st.lists(
        st.tuples(st.integers(1, 9), st.sampled_from(GRID), st.integers(0, 60)),
        min_size=1,
        max_size=3,
    ),
)
def test_after_any_moves_every_channel_gets_the_new_plan_and_nothing_stale(
    backend, app, mix, offsets, moves
):
    """After each move: nothing naming a replaced date leaves, and the last plan goes whole.

    ``moves`` are (days after the first rdv's day, grid time, hours that pass
    before the move, sending what falls due meanwhile).
    """
    with time_machine.travel(T0, tick=False) as traveller:
        world = _fresh_world(app, offsets)
        usager = make_usager(world.org, first="Mix", **MIXES[mix])
        db.session.commit()
        first_day = T0 + timedelta(days=10)
        rdv = book_for(world, usager, days=10, hour=10)
        plan_of: dict[int, int] = {m.id: 0 for m in messages()}  # message -> index in history
        history = [(utcnow(), rdv.starts_at)]  # (from when, the rdv's start)
        for days, (hour, minute), wait_hours in moves:
            _run_until_quiet(app, utcnow() + timedelta(hours=wait_hours), traveller)
            # A minute apart from the last send: which plan was in force stays unambiguous.
            traveller.move_to(utcnow() + timedelta(hours=wait_hours, minutes=1))
            target = (first_day + timedelta(days=days)).replace(hour=hour, minute=minute)
            if target == rdv.starts_at or target <= utcnow():
                continue
            move(rdv, starts_at=target, now=utcnow())
            history.append((utcnow(), target))
            plan_of.update({m.id: len(history) - 1 for m in messages() if m.id not in plan_of})
        last_move_at, final_start = history[-1]
        _run_until_quiet(app, final_start, traveller)

        went = [m for m in messages() if m.sent_at is not None]
        refs = [int(o.reference) for ch in ("sms", "email") for o in simulator_outbox(app, ch)]
        assert sorted(refs) == sorted(m.id for m in went)  # no message reaches a provider twice
        for m in went:
            in_force = max(i for i, (since, _) in enumerate(history) if since <= m.sent_at)
            assert plan_of[m.id] == in_force, (m.kind, m.channel, m.id)

        quiet = quiet_hours(world.org)
        for channel in {"sms": ["sms"], "email": ["email"], "both": ["sms", "email"]}[mix]:
            final = [m for m in messages(channel=channel) if plan_of[m.id] == len(history) - 1]
            final_went = sorted((m.kind, m.send_at) for m in final if m.sent_at is not None)
            expected = policy.plan_reminders(
                final_start,
                policy.parse_offsets(offsets),
                last_move_at,
                world.org.tz,
                quiet,
                channel,
            )
            announce = "moved" if len(history) > 1 else "confirmation"
            assert [k for k, _ in final_went].count(announce) == 1, final_went
            assert sorted(at for k, at in final_went if k == "reminder") == expected, final_went
            assert {m.status for m in final} <= {S.SENT}, [(m.kind, m.status) for m in final]


def test_after_a_move_failing_sms_fall_back_to_email_and_the_new_reminder_still_goes(
    backend, app, world, clock
):
    """Failed before the fix: the fallback email of the failed ``moved`` SMS had the
    highest ``moved`` id, so the new SMS reminder was cancelled "rdv déplacé" and
    the usager, whose SMS all fail, got no reminder at all."""
    usager = sms_usager(world, phone="+33611110000", email="repli@example.org")  # refused
    rdv = book_for(world, usager, days=4, hour=10)
    new_start = rdv.starts_at + timedelta(days=1)
    move(rdv, starts_at=new_start, now=utcnow())
    dispatch_due(utcnow())
    run_pending(app)
    clock.move_to(new_start - timedelta(hours=48) + timedelta(minutes=1))
    dispatch_due(utcnow())
    run_pending(app)
    dispatch_due(utcnow())  # the fallback emails of the reminder's failure
    run_pending(app)

    sent = sorted((m.channel, m.kind, m.status) for m in messages() if m.status != S.CANCELLED)
    assert sent == [
        ("email", "moved", S.SENT),
        ("email", "reminder", S.SENT),
        ("sms", "moved", S.FAILED),
        ("sms", "reminder", S.FAILED),
    ]
    assert all(
        new_start.astimezone(PARIS).strftime("%d/%m") in m.body
        for m in messages(channel="sms")
        if m.status == S.FAILED
    )
