"""Inbound SMS: keywords, matching to usager and rdv, acting once, replies through the pipeline."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from gateway.extensions import db
from gateway.models import InboundSms, Message, Rdv, Usager
from providers import status as S
from providers import vonage
from webhooks.inbound import CANCEL, CONFIRM, START, STOP, fold, keyword

from .conftest import NOW, VONAGE_SECRET, book_at, mark_sent, run_jobs, sms_of, twilio_post

INBOUND = "/webhooks/twilio/inbound"
VONAGE_INBOUND = "/webhooks/vonage/inbound"
PHONE = "+33612345678"  # world.usager


@pytest.mark.parametrize(
    "text,expected",
    [
        ("ANNULER", CANCEL),
        (" annulé ! ", CANCEL),
        ("Annulation", CANCEL),
        ("annul", CANCEL),
        ("Annule.", CANCEL),
        ("OUI", CONFIRM),
        ("oui.", CONFIRM),
        ("OK", CONFIRM),
        ("Confirmer", CONFIRM),
        ("STOP", STOP),
        ("stop sms", STOP),
        ("Stop SMS!", STOP),
        ("Arrêt", STOP),
        ("arret", STOP),
        ("START", START),
        ("start ", START),
        ("Je serai en retard", None),
        ("annuler le rdv de mardi ?", None),
        ("", None),
        ("NON", None),
    ],
)
def test_keywords_after_trim_accent_case_and_punctuation_folding(text, expected):
    assert keyword(text) == expected


def test_fold():
    assert fold("  Arrêt\u00a0SMS… ") == "ARRET SMS"


def _form(body, sid="SM" + "1" * 32, sender=PHONE):
    return {
        "MessageSid": sid,
        "SmsMessageSid": sid,
        "AccountSid": "AC" + "0" * 32,
        "From": sender,
        "To": "+33700000000",
        "Body": body,
        "NumSegments": "1",
        "NumMedia": "0",
        "SmsStatus": "received",
    }


def _reply_to(number) -> list[Message]:
    return db.session.scalars(
        select(Message)
        .where(Message.kind == "reply", Message.recipient == number)
        .order_by(Message.id)
    ).all()


def _count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


@pytest.fixture
def sent_rdv(signed_config, app, world, frozen):
    """An rdv on Friday whose confirmation SMS went out an hour ago."""
    rdv = book_at(world, NOW.replace(day=5))
    mark_sent(sms_of(rdv), at=NOW - timedelta(hours=1))
    return rdv


def test_annuler_cancels_the_rdv_and_replies_through_the_pipeline(backend, sent_rdv, app, client):
    response = twilio_post(client, INBOUND, _form(" Annulé ! "))
    assert response.status_code == 200 and response.mimetype == "text/xml"
    assert "<Response" in response.get_data(
        as_text=True
    )  # empty TwiML: the reply is our own message
    run_jobs(app)
    rdv = db.session.get(Rdv, sent_rdv.id)
    assert rdv.status == "excused" and rdv.cancelled_via == "sms"
    [reply] = _reply_to(PHONE)
    assert reply.channel == "sms" and reply.status == S.SCHEDULED and reply.send_at == NOW
    assert "est annulé" in reply.body and reply.rdv_id == rdv.id
    row = db.session.scalar(select(InboundSms))
    assert row.action == "cancelled" and row.rdv_id == rdv.id and row.reply_message_id == reply.id
    # The planned `cancelled` SMS would say it twice; the email and the agent alert still go.
    kinds = {(m.kind, m.channel): m.status for m in rdv.messages}
    assert kinds[("cancelled", "sms")] == S.SKIPPED
    assert (
        kinds[("cancelled", "email")] == S.SCHEDULED
        and kinds[("agent_alert", "email")] == S.SCHEDULED
    )


def test_the_same_inbound_sms_twice_is_acted_on_once(sent_rdv, app, client):
    for _ in range(2):
        assert twilio_post(client, INBOUND, _form("ANNULER")).status_code == 200
        run_jobs(app)
    assert _count(InboundSms) == 1
    assert len(_reply_to(PHONE)) == 1
    alerts = db.session.scalar(
        select(func.count()).select_from(Message).where(Message.kind == "agent_alert")
    )
    assert alerts == 1


def test_two_upcoming_rdvs_cancels_the_one_of_the_latest_sms(
    signed_config, app, client, world, frozen
):
    soon = book_at(world, NOW.replace(day=3))
    later = book_at(world, NOW.replace(day=10))
    mark_sent(sms_of(soon), at=NOW - timedelta(hours=3))
    mark_sent(sms_of(later), at=NOW - timedelta(hours=1))  # the most recent SMS is about this one
    twilio_post(client, INBOUND, _form("annuler"))
    run_jobs(app)
    assert db.session.get(Rdv, later.id).status == "excused"
    assert db.session.get(Rdv, soon.id).status == "unknown"


def test_without_a_recent_sms_the_next_upcoming_rdv_is_meant(
    signed_config, app, client, world, frozen
):
    later = book_at(world, NOW.replace(day=10))
    soon = book_at(world, NOW.replace(day=3))
    mark_sent(sms_of(later), at=NOW - timedelta(days=8))  # outside the 7-day window
    twilio_post(client, INBOUND, _form("ANNULER"))
    run_jobs(app)
    assert db.session.get(Rdv, soon.id).status == "excused"
    assert db.session.get(Rdv, later.id).status == "unknown"


def test_oui_records_the_confirmation(sent_rdv, app, client):
    twilio_post(client, INBOUND, _form("oui."))
    run_jobs(app)
    rdv = db.session.get(Rdv, sent_rdv.id)
    assert rdv.confirmed_at == NOW and rdv.status == "unknown"
    [reply] = _reply_to(PHONE)
    assert "confirmée" in reply.body


def test_stop_opts_out_and_replies_once_start_opts_back_in(sent_rdv, app, client, world):
    twilio_post(client, INBOUND, _form("Stop SMS", sid="SM1"))
    run_jobs(app)
    assert db.session.get(Usager, world.usager.id).sms_opted_out is True
    [reply] = _reply_to(PHONE)
    assert "START" in reply.body and reply.kind == "reply"
    twilio_post(client, INBOUND, _form("Arrêt", sid="SM2"))  # again: still opted out
    twilio_post(client, INBOUND, _form("START", sid="SM3"))
    run_jobs(app)
    assert db.session.get(Usager, world.usager.id).sms_opted_out is False
    assert [r.body.split()[0] for r in _reply_to(PHONE)][
        -1
    ] == "Les"  # "Les SMS ... sont réactivés"
    assert db.session.get(Rdv, sent_rdv.id).status == "unknown"


def test_an_opted_out_usager_can_still_cancel_by_sms(sent_rdv, app, client, world):
    world.usager.sms_opted_out = True
    db.session.commit()
    twilio_post(client, INBOUND, _form("ANNULER"))
    run_jobs(app)
    assert db.session.get(Rdv, sent_rdv.id).status == "excused"
    assert len(_reply_to(PHONE)) == 1


def test_free_text_is_kept_forwarded_and_answered_with_the_lieu_phone(sent_rdv, app, client, world):
    twilio_post(client, INBOUND, _form("Je serai en retard de 10 minutes"))
    run_jobs(app)
    row = db.session.scalar(select(InboundSms))
    assert (
        row.action == "forwarded" and row.rdv_id == sent_rdv.id and row.usager_id == world.usager.id
    )
    alert = db.session.scalar(select(Message).where(Message.kind == "agent_alert"))
    assert alert.recipient == world.agent.email and "Je serai en retard de 10 minutes" in alert.body
    [reply] = _reply_to(PHONE)
    assert "03 21 00 00 01" in reply.body  # the lieu's phone
    assert db.session.get(Rdv, sent_rdv.id).status == "unknown"


def test_unknown_number_is_recorded_and_changes_nothing(sent_rdv, app, client):
    before = _count(Message)
    twilio_post(client, INBOUND, _form("ANNULER", sender="+33699999999"))
    run_jobs(app)
    row = db.session.scalar(select(InboundSms))
    assert row.action == "unknown_number" and row.usager_id is None and row.body == "ANNULER"
    assert _count(Message) == before
    assert db.session.get(Rdv, sent_rdv.id).status == "unknown"


def test_too_late_to_cancel_says_so_and_changes_nothing(signed_config, app, client, world, frozen):
    world.org.min_cancel_notice_minutes = 24 * 60
    rdv = book_at(world, NOW + timedelta(hours=4))  # today 14:00
    mark_sent(sms_of(rdv), at=NOW - timedelta(minutes=5))
    twilio_post(client, INBOUND, _form("ANNULER"))
    run_jobs(app)
    assert db.session.get(Rdv, rdv.id).status == "unknown"
    [reply] = _reply_to(PHONE)
    assert "ne peut plus" in reply.body and "03 21 00 00 01" in reply.body
    assert db.session.scalar(select(InboundSms)).action == "too_late"


def test_a_usager_without_rdv_is_told_so(signed_config, app, client, world, frozen):
    twilio_post(client, INBOUND, _form("ANNULER"))
    run_jobs(app)
    [reply] = _reply_to(PHONE)
    assert "pas trouvé de RDV" in reply.body
    assert db.session.scalar(select(InboundSms)).action == "no_rdv"


def test_a_stored_sms_never_acted_on_is_acted_on_when_redelivered(
    sent_rdv, app, client, monkeypatch
):
    """The job was lost (worker or database gone after the SMS was stored): the provider's
    retry must not be taken for a duplicate of an SMS already handled."""
    from scheduler import queue

    real_enqueue = queue.enqueue
    monkeypatch.setattr(queue, "enqueue", lambda *args, **kwargs: None)  # the job is lost
    assert twilio_post(client, INBOUND, _form("ANNULER")).status_code == 200
    assert db.session.scalar(select(InboundSms)).action is None
    monkeypatch.setattr(queue, "enqueue", real_enqueue)
    for _ in range(2):  # the retry, then a late duplicate
        assert twilio_post(client, INBOUND, _form("ANNULER")).status_code == 200
        run_jobs(app)
    assert db.session.get(Rdv, sent_rdv.id).status == "excused"
    assert db.session.scalar(select(InboundSms)).action == "cancelled"
    assert _count(InboundSms) == 1 and len(_reply_to(PHONE)) == 1


def test_forged_twilio_inbound_is_refused_and_stores_nothing(sent_rdv, app, client):
    assert twilio_post(client, INBOUND, _form("ANNULER"), signature="Zm9yZ2Vk").status_code == 403
    assert twilio_post(client, INBOUND, _form("ANNULER"), signature="").status_code == 403
    run_jobs(app)
    assert _count(InboundSms) == 0
    assert db.session.get(Rdv, sent_rdv.id).status == "unknown"


def _vonage_part(text, message_id, part, total=2, ref="7"):
    params = {
        "msisdn": PHONE.lstrip("+"),
        "to": "33700000000",
        "messageId": message_id,
        "text": text,
        "type": "text",
        "keyword": text.split()[0].upper() if text.split() else "",
        "message-timestamp": "2026-06-01 08:00:00",
        "concat": "true",
        "concat-ref": ref,
        "concat-total": str(total),
        "concat-part": str(part),
        "timestamp": str(int(time.time())),
        "nonce": f"n-{message_id}",
    }
    params["sig"] = vonage.compute_signature(params, VONAGE_SECRET, "sha256")
    return params


def test_vonage_long_sms_is_joined_before_acting(backend, sent_rdv, app, client):
    assert client.post(VONAGE_INBOUND, data=_vonage_part("NULER", "M2", part=2)).status_code == 204
    run_jobs(app)
    assert db.session.get(Rdv, sent_rdv.id).status == "unknown"  # half a message: wait
    assert client.post(VONAGE_INBOUND, data=_vonage_part("AN", "M1", part=1)).status_code == 204
    assert (
        client.post(VONAGE_INBOUND, data=_vonage_part("AN", "M1", part=1)).status_code == 204
    )  # redelivered
    run_jobs(app)
    assert db.session.get(Rdv, sent_rdv.id).status == "excused"
    rows = {r.provider_message_id: r for r in db.session.scalars(select(InboundSms))}
    assert set(rows) == {"M1", "M2"}
    assert rows["M1"].body == "ANNULER" and rows["M1"].action == "cancelled"
    assert rows["M2"].action == "part"
    assert len(_reply_to(PHONE)) == 1


def test_vonage_inbound_signature_is_checked(sent_rdv, app, client):
    params = _vonage_part("ANNULER", "M9", part=1, total=1)
    forged = dict(params, text="OUI")
    assert client.post(VONAGE_INBOUND, data=forged).status_code == 403
    assert (
        client.get(
            VONAGE_INBOUND, query_string={k: v for k, v in params.items() if k != "sig"}
        ).status_code
        == 403
    )
    assert _count(InboundSms) == 0
    assert client.get(VONAGE_INBOUND, query_string=params).status_code == 204
    run_jobs(app)
    assert db.session.get(Rdv, sent_rdv.id).status == "excused"


def test_simulator_outbox_lists_sent_sms_and_a_reply_cancels(app, world, frozen, login):
    rdv = book_at(world, NOW.replace(day=5))
    sms = mark_sent(sms_of(rdv), provider="simulator", provider_message_id="SIM1")
    page = login.get("/simulator/outbox")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert sms.body.split(",")[0] in html and f"/simulator/outbox/{sms.id}/reply" in html
    response = login.post(f"/simulator/outbox/{sms.id}/reply", data={"body": "ANNULER"})
    assert response.status_code == 302
    run_jobs(app)
    assert db.session.get(Rdv, rdv.id).status == "excused"
    row = db.session.scalar(select(InboundSms))
    assert row.provider == "simulator" and row.from_number == PHONE and row.action == "cancelled"
    assert "ANNULER" in login.get("/simulator/outbox").get_data(as_text=True)


def test_simulator_outbox_needs_an_agent(client, world):
    response = client.get("/simulator/outbox")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_nul_and_overlong_values_are_stored_cleaned_and_acted_on(sent_rdv, app, client):
    form = _form("ANNU\x00LER", sid="SM" + "9" * 5000)
    for _ in range(2):  # a redelivery finds the row stored under the shortened id
        assert twilio_post(client, INBOUND, form).status_code == 200
        run_jobs(app)
    row = db.session.scalar(select(InboundSms))
    assert _count(InboundSms) == 1 and len(row.provider_message_id) == 200
    assert (
        row.body == "ANNU\ufffdLER" and row.action == "forwarded"
    )  # not the keyword, but kept and forwarded


def _lose_queued_jobs(app) -> int:
    """What a Redis flush or a crashed worker does to the jobs not yet run."""
    from scheduler.queue import embedded_queue, rq_queue

    if app.config.get("REDIS_URL"):
        return rq_queue(app).empty()
    jobs, lost = embedded_queue(app).jobs, 0
    while not jobs.empty():
        jobs.get_nowait()
        jobs.task_done()
        lost += 1
    return lost


def test_an_inbound_sms_whose_job_was_lost_is_acted_on_once_by_the_reconciler(
    backend, sent_rdv, app, client
):
    from scheduler.dispatch import reconcile_stale

    assert twilio_post(client, INBOUND, _form("ANNULER")).status_code == 200
    assert _lose_queued_jobs(app) >= 1
    row = db.session.scalar(select(InboundSms))
    assert row.action is None
    # Within QUEUED_TIMEOUT (5 min) the job may still be on its way: nothing yet.
    assert reconcile_stale(NOW + timedelta(minutes=4))["inbound_requeued"] == 0
    assert reconcile_stale(NOW + timedelta(minutes=6))["inbound_requeued"] == 1
    run_jobs(app)
    db.session.refresh(row)
    db.session.refresh(sent_rdv)
    assert row.action == "cancelled" and sent_rdv.is_cancelled
    assert len(_reply_to(PHONE)) == 1
    # Acted on: never queued again, and a job run twice does nothing twice.
    assert reconcile_stale(NOW + timedelta(minutes=8))["inbound_requeued"] == 0
    from webhooks.inbound import process_inbound

    assert process_inbound(row.id) is None and len(_reply_to(PHONE)) == 1


def test_the_reconciler_leaves_waiting_parts_and_old_sms_alone(signed_config, app, world, frozen):
    from scheduler.dispatch import reconcile_stale

    def stored(sid, received_at, **parts):
        db.session.add(
            InboundSms(
                provider="vonage",
                provider_message_id=sid,
                from_number=PHONE,
                body="x",
                raw={},
                received_at=received_at,
                **parts,
            )
        )

    stored("part-1-of-2", NOW, concat_ref="ab", concat_part=1, concat_total=2)  # part 2 never came
    stored("two-days-old", NOW - timedelta(days=2))
    stored("complete-1", NOW, concat_ref="cd", concat_part=1, concat_total=2)
    stored("complete-2", NOW, concat_ref="cd", concat_part=2, concat_total=2)
    db.session.commit()
    # Only the complete long SMS goes, as one job for its two parts.
    assert reconcile_stale(NOW + timedelta(minutes=6))["inbound_requeued"] == 1
    assert run_jobs(app) == 1
    actions = dict(
        db.session.execute(select(InboundSms.provider_message_id, InboundSms.action)).all()
    )
    assert actions["part-1-of-2"] is None and actions["two-days-old"] is None
    assert actions["complete-1"] not in (None, "part") and actions["complete-2"] == "part"
