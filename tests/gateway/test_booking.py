"""Booking, moving and cancelling: the rdv and the messages they plan."""

import threading
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from gateway.booking import book, cancel, move, record_outcome
from gateway.errors import Conflict, DomainError, ValidationFailed
from gateway.extensions import db
from gateway.models import Message, Rdv, Usager
from providers import status as S

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 6, 1, 10, 0, tzinfo=PARIS)  # a Monday, 10:00


def at(day, hour, minute=0):
    return datetime(2026, 6, day, hour, minute, tzinfo=PARIS)


def _book(world, starts, usager=None, agent=None, now=NOW, motif=None):
    return book(
        world.org,
        motif_id=(motif or world.motif).id,
        lieu_id=world.lieu.id,
        agent_id=(agent or world.agent).id,
        usager_ids=[(usager or world.usager).id],
        starts_at=starts,
        now=now,
    )


def messages(rdv):
    return db.session.scalars(
        select(Message).where(Message.rdv_id == rdv.id).order_by(Message.id)
    ).all()


def test_booking_plans_a_confirmation_now_and_a_reminder_48h_before_per_channel(world):
    rdv = _book(world, at(5, 10, 30))
    planned = {(m.channel, m.kind): m for m in messages(rdv)}
    assert set(planned) == {
        ("sms", "confirmation"),
        ("sms", "reminder"),
        ("email", "confirmation"),
        ("email", "reminder"),
    }
    assert planned[("sms", "confirmation")].send_at == NOW
    assert planned[("sms", "reminder")].send_at == at(3, 10, 30)
    assert all(m.status == S.SCHEDULED for m in planned.values())
    sms = planned[("sms", "reminder")]
    assert sms.recipient == "+33612345678"
    assert sms.segments == 1 and sms.encoding == "GSM-7"
    assert "ven. 05/06 10h30" in sms.body and "https://lapin.test/c/" in sms.body
    assert rdv.participations[0].cancel_code in sms.body
    assert planned[("email", "confirmation")].subject.startswith(
        "Votre rendez-vous du vendredi 5 juin 2026"
    )


def test_a_reminder_already_past_at_booking_is_not_created(world):
    rdv = _book(world, at(2, 9, 0))  # tomorrow: 48 h before is past
    assert {m.kind for m in messages(rdv)} == {"confirmation"}


def test_no_consent_no_message_and_landline_gets_no_sms(world):
    usager = Usager(
        organisation_id=world.org.id,
        first_name="A",
        last_name="B",
        phone="+33144556677",
        email="b@example.org",
        notify_email=False,
    )
    db.session.add(usager)
    db.session.commit()
    rdv = _book(world, at(5, 9, 0), usager=usager)
    assert messages(rdv) == []


def test_confirmation_sms_booked_at_night_waits_for_the_morning_email_does_not(world):
    night = datetime(2026, 6, 1, 22, 30, tzinfo=PARIS)
    rdv = _book(world, at(5, 9, 0), now=night)
    confirmations = {m.channel: m for m in messages(rdv) if m.kind == "confirmation"}
    assert confirmations["sms"].send_at == at(2, 8, 0)
    assert confirmations["email"].send_at == night


def test_organisation_and_motif_override_reminder_offsets(world):
    world.org.reminder_offsets = "3d,1d"
    db.session.commit()
    rdv = _book(world, at(8, 10, 0))
    sms = sorted(m.send_at for m in messages(rdv) if m.kind == "reminder" and m.channel == "sms")
    assert sms == [at(5, 10, 0), at(7, 10, 0)]
    world.motif.reminder_offsets = "2h"
    db.session.commit()
    rdv = _book(world, at(9, 10, 0))
    sms = [m.send_at for m in messages(rdv) if m.kind == "reminder" and m.channel == "sms"]
    assert sms == [at(9, 8, 0)]


def test_double_booking_is_refused_and_changes_nothing(world):
    _book(world, at(5, 10, 0))
    before = db.session.scalar(select(func.count(Message.id)))
    with pytest.raises(Conflict) as exc:
        _book(world, at(5, 10, 15), usager=world.email_usager)  # overlaps 10:00-10:30
    assert exc.value.code == "slot_taken"
    assert db.session.scalar(select(func.count(Rdv.id))) == 1
    assert db.session.scalar(select(func.count(Message.id))) == before
    # The other agent is free at that time; back-to-back is fine for the first agent.
    _book(world, at(5, 10, 0), agent=world.other_agent)
    _book(world, at(5, 10, 30))


def test_outside_opening_hours_or_in_the_past_is_refused(world):
    with pytest.raises(ValidationFailed):
        _book(world, at(5, 12, 45))
    with pytest.raises(ValidationFailed):
        _book(world, at(5, 11, 45))  # would end 12:15, after the range
    with pytest.raises(ValidationFailed):
        _book(world, datetime(2026, 5, 30, 10, 0, tzinfo=PARIS))
    assert db.session.scalar(select(func.count(Rdv.id))) == 0


def test_moving_cancels_unsent_messages_and_plans_a_moved_message_and_new_reminders(world):
    rdv = _book(world, at(5, 10, 0))
    old = messages(rdv)
    later = NOW + timedelta(hours=1)
    move(rdv, starts_at=at(8, 14, 0), now=later)
    by_id = {m.id: m for m in messages(rdv)}
    assert all(by_id[m.id].status == S.CANCELLED for m in old)
    new = [m for m in by_id.values() if m.id not in {o.id for o in old}]
    assert sorted((m.channel, m.kind) for m in new) == [
        ("email", "moved"),
        ("email", "reminder"),
        ("sms", "moved"),
        ("sms", "reminder"),
    ]
    reminder = next(m for m in new if m.kind == "reminder" and m.channel == "sms")
    assert reminder.send_at == at(6, 14, 0)
    assert "lun. 08/06 14h" in reminder.body


def test_moving_onto_a_taken_slot_is_refused_and_keeps_everything(world):
    rdv = _book(world, at(5, 10, 0))
    _book(world, at(5, 11, 0), usager=world.email_usager)
    statuses = [m.status for m in messages(rdv)]
    with pytest.raises(Conflict):
        move(rdv, starts_at=at(5, 11, 0), now=NOW)
    db.session.refresh(rdv)
    assert rdv.starts_at == at(5, 10, 0)
    assert [m.status for m in messages(rdv)] == statuses


def test_cancelling_by_agent_frees_the_slot_and_confirms_without_alert(world):
    rdv = _book(world, at(5, 10, 0))
    assert cancel(rdv, via="agent", agent=world.agent, now=NOW) is True
    assert rdv.status == "revoked" and rdv.cancelled_via == "agent"
    kinds = [(m.kind, m.status) for m in messages(rdv)]
    assert ("reminder", S.CANCELLED) in kinds
    assert ("cancelled", S.SCHEDULED) in kinds
    assert not any(k == "agent_alert" for k, _ in kinds)
    count = len(kinds)
    assert cancel(rdv, via="agent", agent=world.agent, now=NOW) is False  # harmless twice
    assert len(messages(rdv)) == count
    _book(world, at(5, 10, 0), usager=world.email_usager)  # the slot is free at once


def test_cancelling_by_the_usager_alerts_the_agent(world):
    rdv = _book(world, at(5, 10, 0))
    cancel(rdv, via="link", now=NOW)
    assert rdv.status == "excused"
    alerts = [m for m in messages(rdv) if m.kind == "agent_alert"]
    assert len(alerts) == 1 and alerts[0].recipient == world.agent.email
    assert "a annulé" in alerts[0].body


def test_usager_cannot_cancel_after_start_or_inside_minimum_notice(world):
    rdv = _book(world, at(5, 10, 0))
    with pytest.raises(DomainError) as exc:
        cancel(rdv, via="sms", now=at(5, 10, 0))
    assert exc.value.code == "too_late"
    world.org.min_cancel_notice_minutes = 24 * 60
    db.session.commit()
    with pytest.raises(DomainError, match="ne peut plus"):
        cancel(rdv, via="link", now=at(4, 11, 0))
    assert rdv.status == "unknown"
    assert cancel(rdv, via="link", now=at(4, 9, 0)) is True


def test_outcome_only_after_start(world):
    rdv = _book(world, at(5, 10, 0))
    with pytest.raises(Conflict):
        record_outcome(rdv, "seen", now=NOW)
    record_outcome(rdv, "noshow", now=at(5, 11, 0))
    assert rdv.status == "noshow"


def test_two_bookings_racing_for_one_slot_yield_one_rdv(app, world):
    """Two threads, two sessions, one slot: exactly one wins, whatever the database."""
    ids = (world.org.id, world.motif.id, world.lieu.id, world.agent.id)
    usagers = (world.usager.id, world.email_usager.id)
    barrier = threading.Barrier(2)
    outcomes = []

    def attempt(usager_id):
        with app.app_context():
            from gateway.models import Organisation

            org = db.session.get(Organisation, ids[0])
            barrier.wait()
            try:
                book(
                    org,
                    motif_id=ids[1],
                    lieu_id=ids[2],
                    agent_id=ids[3],
                    usager_ids=[usager_id],
                    starts_at=at(5, 10, 0),
                    now=NOW,
                )
                outcomes.append("ok")
            except Conflict:
                outcomes.append("conflict")
            finally:
                db.session.remove()

    threads = [threading.Thread(target=attempt, args=(u,)) for u in usagers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict", "ok"]
    db.session.expire_all()
    assert db.session.scalar(select(func.count(Rdv.id))) == 1


@pytest.mark.parametrize("outcome", ["seen", "noshow", "excused", "revoked"])
def test_an_rdv_that_took_place_or_was_cancelled_cannot_be_moved(world, outcome):
    """Issue 11, defect 5: seen and noshow rdvs could be moved (409 ``rdv_not_movable`` now)."""
    rdv = _book(world, at(5, 10, 0))
    if outcome in ("seen", "noshow"):
        record_outcome(rdv, outcome, now=at(5, 10, 5))
    else:
        cancel(rdv, via="link" if outcome == "excused" else "agent", now=NOW)
    assert rdv.status == outcome
    count = len(messages(rdv))
    with pytest.raises(Conflict) as exc:
        move(rdv, starts_at=at(9, 10, 0), now=at(5, 11, 0))
    assert exc.value.status == 409 and exc.value.code == "rdv_not_movable"
    assert "ne peut plus être déplacé" in exc.value.message
    db.session.expire_all()
    assert rdv.starts_at == at(5, 10, 0) and rdv.status == outcome
    assert len(messages(rdv)) == count
