"""SMS-to-email fallback planning."""

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select

from gateway.booking import book
from gateway.extensions import db
from gateway.models import Message, Usager
from gateway.planning import plan_email_fallback
from providers import status as S
from scheduler.transitions import transition

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 6, 1, 10, 0, tzinfo=PARIS)


def _sms_only_usager(world, email="sms-only@example.org"):
    u = Usager(
        organisation_id=world.org.id,
        first_name="Ana",
        last_name="Silva",
        phone="+33622222222",
        email=email,
        notify_email=False,
    )
    db.session.add(u)
    db.session.commit()
    return u


def _confirmation(world, usager):
    rdv = book(
        world.org,
        motif_id=world.motif.id,
        lieu_id=world.lieu.id,
        agent_id=world.agent.id,
        usager_ids=[usager.id],
        starts_at=datetime(2026, 6, 5, 10, 0, tzinfo=PARIS),
        now=NOW,
    )
    return db.session.scalar(
        select(Message).where(Message.rdv_id == rdv.id, Message.kind == "confirmation")
    )


def test_a_failed_sms_goes_by_email_once(world):
    sms = _confirmation(world, _sms_only_usager(world))
    assert sms.channel == "sms"
    transition(sms, S.FAILED, at=NOW, detail="invalid number")
    email = plan_email_fallback(sms, NOW)
    db.session.commit()
    assert email is not None and email.channel == "email" and email.kind == "confirmation"
    assert email.fallback_of_id == sms.id and email.recipient == "sms-only@example.org"
    assert "Annuler ce rendez-vous" in email.html_body
    assert plan_email_fallback(sms, NOW) is None  # idempotent


def test_no_fallback_without_email_or_when_email_already_planned(world):
    sms = _confirmation(world, _sms_only_usager(world, email=None))
    assert plan_email_fallback(sms, NOW) is None
    rdv_sms = book(
        world.org,
        motif_id=world.motif.id,
        lieu_id=world.lieu.id,
        agent_id=world.agent.id,
        usager_ids=[world.usager.id],
        starts_at=datetime(2026, 6, 5, 11, 0, tzinfo=PARIS),
        now=NOW,
    )
    sms2 = next(m for m in rdv_sms.messages if m.channel == "sms" and m.kind == "confirmation")
    assert plan_email_fallback(sms2, NOW) is None  # the usager already gets the email confirmation


def test_a_failed_sms_of_a_replaced_plan_has_no_fallback_and_a_current_one_has(world):
    """An undelivered receipt for the old date's SMS, after a move: the email would
    repeat a wrong date (the moved notice tells the usager). The moved SMS, current,
    falls back, in its own plan generation."""
    from gateway.booking import move

    sms = _confirmation(world, _sms_only_usager(world))
    transition(sms, S.SENT, at=NOW)
    rdv = sms.rdv
    move(rdv, starts_at=datetime(2026, 6, 8, 10, 0, tzinfo=PARIS), now=NOW)
    transition(sms, S.UNDELIVERED, at=NOW, detail="receipt after the move")
    assert plan_email_fallback(sms, NOW) is None
    moved = next(m for m in rdv.messages if m.kind == "moved" and m.channel == "sms")
    transition(moved, S.FAILED, at=NOW, detail="invalid number")
    email = plan_email_fallback(moved, NOW)
    assert email is not None and email.plan_generation == moved.plan_generation == 1
    assert "08/06" in email.body or "8 juin" in email.body
