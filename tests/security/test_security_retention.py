"""Retention: after RETENTION_DAYS, message bodies, inbound SMS and receipts are anonymised."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from gateway.config import from_environment
from gateway.extensions import db
from gateway.models import DeliveryEvent, InboundSms, Message, MessageStatusChange
from scheduler.retention import ANONYMISED, anonymise_old, retention_job

NOW = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=200)
RECENT = NOW - timedelta(days=10)


def _message(
    world, *, status, send_at, sent_at=None, channel="sms", recipient="+33612345678", **kw
):
    message = Message(
        organisation_id=world.org.id,
        usager_id=world.usager.id,
        channel=channel,
        kind="reminder",
        status=status,
        send_at=send_at,
        sent_at=sent_at,
        recipient=recipient,
        subject="Votre rendez-vous" if channel == "email" else None,
        body="RDV PMI mar. 24/11 14h30 pour Léa Dupont",
        html_body="<p>Léa</p>" if channel == "email" else None,
        **kw,
    )
    db.session.add(message)
    db.session.flush()
    return message


@pytest.fixture
def history(world):
    """Old and recent messages, inbound SMS and receipts."""
    rows = {
        "old_sent": _message(
            world,
            status="delivered",
            send_at=OLD,
            sent_at=OLD,
            last_error="21211 The 'To' number +33612345678 is not valid",
        ),
        "old_email": _message(
            world,
            status="sent",
            send_at=OLD,
            sent_at=OLD,
            channel="email",
            recipient="lea@example.org",
        ),
        # Planned long ago, still waiting (a far rdv): it may still go out, its text stays.
        "old_scheduled": _message(world, status="scheduled", send_at=OLD),
        "recent": _message(world, status="delivered", send_at=RECENT, sent_at=RECENT),
        # Sent recently although planned long ago: the send time counts.
        "late_sent": _message(world, status="delivered", send_at=OLD, sent_at=RECENT),
    }
    db.session.add(
        MessageStatusChange(
            message_id=rows["old_sent"].id,
            status="failed",
            at=OLD,
            detail="refused for +33612345678",
        )
    )
    for i, when in enumerate((OLD, OLD, RECENT)):
        db.session.add(
            InboundSms(
                organisation_id=world.org.id,
                provider="twilio",
                provider_message_id=f"SM{i}",
                from_number="+33612345678",
                body="Annuler svp, Léa",
                received_at=when,
                raw={"Body": "Annuler svp, Léa", "From": "+33612345678"},
            )
        )
        db.session.add(
            DeliveryEvent(
                message_id=rows["old_sent"].id,
                provider="twilio",
                provider_message_id="SMabc",
                raw_status="delivered",
                received_at=when,
                raw={"To": "+33612345678", "MessageStatus": "delivered"},
            )
        )
    db.session.commit()
    return {name: m.id for name, m in rows.items()}


def test_old_personal_data_is_anonymised_and_the_rest_kept(app, history):
    report = anonymise_old(NOW, timedelta(days=183))
    assert (report.messages, report.inbound_sms, report.delivery_events) == (2, 2, 2)
    db.session.expire_all()
    sent = db.session.get(Message, history["old_sent"])
    assert sent.body == ANONYMISED and sent.recipient == "**********78"
    assert "+33612345678" not in sent.last_error and sent.last_error.startswith("21211")
    assert sent.status == "delivered" and sent.sent_at == OLD  # statistics keep what they need
    assert "+33612345678" not in sent.status_changes[0].detail
    email = db.session.get(Message, history["old_email"])
    assert (email.body, email.subject, email.html_body, email.recipient) == (
        ANONYMISED,
        None,
        None,
        "l***@example.org",
    )
    for kept in ("old_scheduled", "recent", "late_sent"):
        assert db.session.get(Message, history[kept]).body.startswith("RDV PMI"), kept
    inbound = db.session.scalars(select(InboundSms).order_by(InboundSms.id)).all()
    assert [i.body for i in inbound] == [ANONYMISED, ANONYMISED, "Annuler svp, Léa"]
    assert all(
        "+33612345678" not in str(i.raw) and i.from_number != "+33612345678" for i in inbound[:2]
    )
    events = db.session.scalars(select(DeliveryEvent).order_by(DeliveryEvent.id)).all()
    assert ["+33612345678" in str(e.raw) for e in events] == [False, False, True]


def test_retention_is_idempotent_and_batched(app, history):
    first = anonymise_old(NOW, timedelta(days=183), batch_size=1)
    assert first.total == 6
    snapshot = [
        (m.id, m.body, m.recipient)
        for m in db.session.scalars(select(Message).order_by(Message.id))
    ]
    again = anonymise_old(NOW, timedelta(days=183), batch_size=1)
    assert again.total == 0
    db.session.expire_all()
    assert [
        (m.id, m.body, m.recipient)
        for m in db.session.scalars(select(Message).order_by(Message.id))
    ] == snapshot


def test_dry_run_counts_and_changes_nothing(app, history):
    report = anonymise_old(NOW, timedelta(days=183), dry_run=True)
    assert report.total == 6
    db.session.expire_all()
    assert ANONYMISED not in {m.body for m in db.session.scalars(select(Message))}
    assert anonymise_old(NOW, timedelta(days=183)).total == 6


def test_retention_days_comes_from_the_configuration(app, world, history):
    app.config["RETENTION_DAYS"] = 5  # now, RECENT (10 days ago) is old enough too
    assert retention_job()["messages"] == 4  # every message except the one still scheduled
    assert (
        from_environment("/tmp", {"RETENTION_DAYS": "30", "SECRET_KEY": "x"})["RETENTION_DAYS"]
        == 30
    )
    assert from_environment("/tmp", {"SECRET_KEY": "x"})["RETENTION_DAYS"] == 183
    for bad in ("0", "-3", "six mois"):
        with pytest.raises(RuntimeError, match="RETENTION_DAYS"):
            from_environment("/tmp", {"RETENTION_DAYS": bad, "SECRET_KEY": "x"})


def test_retention_command(runner, history):
    at = NOW.isoformat()
    dry = runner.invoke(args=["retention", "--dry-run", "--at", at])
    assert dry.exit_code == 0, dry.output
    assert "messages à anonymiser : 2" in dry.output
    done = runner.invoke(args=["retention", "--at", at])
    assert done.exit_code == 0 and "messages anonymisés : 2" in done.output
    assert "messages anonymisés : 0" in runner.invoke(args=["retention", "--at", at]).output
    bad = runner.invoke(args=["retention", "--at", "hier"])
    assert bad.exit_code == 2
