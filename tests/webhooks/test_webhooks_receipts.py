"""Delivery receipts: signed, stored raw once, matched, applied forward only."""

from __future__ import annotations

import time
from dataclasses import asdict
from urllib.parse import urlencode

import pytest
import time_machine
from sqlalchemy import func, select
from vonage_http_client import Auth

from gateway import create_app
from gateway.extensions import db
from gateway.models import DeliveryEvent, Message, MessageStatusChange, Usager
from providers import status as S
from providers import vonage
from providers.base import Receipt
from scheduler.queue import enqueue
from scheduler.transitions import transition

from .conftest import (
    NOW,
    TWILIO_TOKEN,
    VONAGE_CREDENTIALS,
    VONAGE_SECRET,
    book_at,
    mark_sent,
    run_jobs,
    sms_of,
    twilio_post,
    vonage_call,
    vonage_signed,
)

STATUS = "/webhooks/twilio/status"
VONAGE_STATUS = "/webhooks/vonage/status"


def _twilio_form(message, status, **extra):
    form = {
        "MessageSid": message.provider_message_id,
        "SmsSid": message.provider_message_id,
        "MessageStatus": status,
        "SmsStatus": status,
        "AccountSid": "AC" + "0" * 32,
        "From": "+33700000000",
        "To": message.recipient,
        "ApiVersion": "2010-04-01",
    }
    form.update(extra)
    return form


@pytest.fixture
def sent_sms(signed_config, app, world, frozen):
    rdv = book_at(world, NOW.replace(day=5))
    return mark_sent(sms_of(rdv), provider="twilio", provider_message_id="SM" + "a" * 32)


def _changes(message, status) -> int:
    return db.session.scalar(
        select(func.count())
        .select_from(MessageStatusChange)
        .where(MessageStatusChange.message_id == message.id, MessageStatusChange.status == status)
    )


def _events() -> list[DeliveryEvent]:
    return db.session.scalars(select(DeliveryEvent).order_by(DeliveryEvent.id)).all()


def test_signed_twilio_receipt_is_recorded_and_applied_before_the_answer(
    backend, sent_sms, app, client
):
    response = twilio_post(
        client, STATUS, _twilio_form(sent_sms, "delivered"), query=f"ref={sent_sms.id}"
    )
    assert response.status_code == 204
    [event] = _events()
    assert event.raw["MessageStatus"] == "delivered" and event.raw["ref"] == str(sent_sms.id)
    assert event.provider == "twilio" and event.raw_status == "delivered"
    assert run_jobs(app) == 0  # nothing left for a worker: applied in the request
    db.session.refresh(sent_sms)
    assert sent_sms.status == S.DELIVERED and sent_sms.delivered_at is not None
    db.session.refresh(event)
    assert event.message_id == sent_sms.id and event.applied is True


@pytest.mark.parametrize("signature", ["", "bm90IGEgc2lnbmF0dXJl", "wrong-url"])
def test_forged_or_absent_twilio_signature_is_refused(sent_sms, app, client, signature):
    form = _twilio_form(sent_sms, "delivered")
    if signature == "wrong-url":
        # Signed for another URL (e.g. without our ref): the query is part of what is signed.
        from twilio.request_validator import RequestValidator

        signature = RequestValidator(TWILIO_TOKEN).compute_signature(
            f"https://lapin.test{STATUS}", form
        )
    response = twilio_post(client, STATUS, form, signature=signature, query=f"ref={sent_sms.id}")
    assert response.status_code == 403
    assert _events() == []
    run_jobs(app)
    db.session.refresh(sent_sms)
    assert sent_sms.status == S.SENT


def test_twilio_signed_with_another_token_or_without_configured_token(sent_sms, app, client):
    response = twilio_post(client, STATUS, _twilio_form(sent_sms, "delivered"), token="not-ours")
    assert response.status_code == 403
    app.config["PROVIDER_SETTINGS"] = {}
    response = twilio_post(client, STATUS, _twilio_form(sent_sms, "delivered"))
    assert response.status_code == 404  # no credentials: Twilio is not configured
    assert _events() == []


def test_replayed_and_reordered_receipts_change_once_and_never_backwards(sent_sms, app, client):
    for status in ("delivered", "sent", "delivered"):
        assert (
            twilio_post(
                client, STATUS, _twilio_form(sent_sms, status), query=f"ref={sent_sms.id}"
            ).status_code
            == 204
        )
        run_jobs(app)
    db.session.refresh(sent_sms)
    assert sent_sms.status == S.DELIVERED
    assert _changes(sent_sms, S.DELIVERED) == 1
    events = _events()
    assert len(events) == 3 and all(e.message_id == sent_sms.id for e in events)
    assert [e.applied for e in events] == [True, False, False]


def test_receipt_before_the_send_was_recorded_matches_by_reference(
    signed_config, app, client, world, frozen
):
    rdv = book_at(world, NOW.replace(day=5))
    sms = sms_of(rdv)
    transition(sms, S.SENDING, at=NOW)  # the worker died before recording Twilio's answer
    db.session.commit()
    form = {"MessageSid": "SM" + "b" * 32, "MessageStatus": "sent", "To": sms.recipient}
    assert twilio_post(client, STATUS, form, query=f"ref={sms.id}").status_code == 204
    run_jobs(app)
    db.session.refresh(sms)
    assert (
        sms.status == S.SENT
        and sms.provider == "twilio"
        and sms.provider_message_id == "SM" + "b" * 32
    )
    # Later receipts without the reference still find it by Twilio's id.
    form["MessageStatus"] = "delivered"
    assert twilio_post(client, STATUS, form).status_code == 204
    run_jobs(app)
    db.session.refresh(sms)
    assert sms.status == S.DELIVERED


def test_unknown_message_id_is_recorded_and_answered_200(signed_config, app, client, world):
    form = {"MessageSid": "SM" + "f" * 32, "MessageStatus": "delivered"}
    assert twilio_post(client, STATUS, form).status_code == 204
    run_jobs(app)
    [event] = _events()
    assert event.message_id is None and event.provider_message_id == "SM" + "f" * 32
    assert event.raw == form


def test_undelivered_plans_the_email_fallback_and_21610_opts_out(
    signed_config, app, client, world, frozen
):
    # SMS only (no email notifications), but an address: the fallback's case.
    usager = Usager(
        organisation_id=world.org.id,
        first_name="Ana",
        last_name="Silva",
        phone="+33622222222",
        email="ana@example.org",
        notify_email=False,
    )
    twin = Usager(
        organisation_id=world.org.id, first_name="Léo", last_name="Silva", phone="+33622222222"
    )  # the same family phone
    db.session.add_all([usager, twin])
    db.session.commit()
    sent_sms = mark_sent(
        sms_of(book_at(world, NOW.replace(day=5), usager=usager)), provider_message_id="SMx"
    )
    form = _twilio_form(sent_sms, "undelivered", ErrorCode="21610")
    assert twilio_post(client, STATUS, form, query=f"ref={sent_sms.id}").status_code == 204
    run_jobs(app)
    db.session.refresh(sent_sms)
    assert sent_sms.status == S.UNDELIVERED and sent_sms.error_code == "21610"
    assert "unsubscribed" in sent_sms.last_error
    fallback = db.session.scalar(select(Message).where(Message.fallback_of_id == sent_sms.id))
    assert (
        fallback is not None
        and fallback.channel == "email"
        and fallback.recipient == "ana@example.org"
    )
    assert db.session.get(Usager, usager.id).sms_opted_out is True
    assert db.session.get(Usager, twin.id).sms_opted_out is True
    assert db.session.get(Usager, world.usager.id).sms_opted_out is False


def _vonage_receipt(message, status="delivered", **extra):
    params = {
        "msisdn": message.recipient.lstrip("+"),
        "to": "Lapin",
        "network-code": "20801",
        "messageId": message.provider_message_id,
        "price": "0.03330000",
        "status": status,
        "err-code": "0",
        "client-ref": str(message.id),
        "scts": "2606011000",
        "message-timestamp": "2026-06-01 08:00:00",
        "api-key": "abcd1234",
    }
    params.update(extra)
    return params


@pytest.fixture
def vonage_sms(signed_config, app, world, frozen):
    rdv = book_at(world, NOW.replace(day=5))
    return mark_sent(sms_of(rdv), provider="vonage", provider_message_id="0A0000001234567B")


@pytest.mark.parametrize("how", ["get", "form", "json"])
def test_vonage_receipt_by_query_form_or_json(vonage_sms, app, client, how):
    response = vonage_call(client, VONAGE_STATUS, vonage_signed(_vonage_receipt(vonage_sms)), how)
    assert response.status_code == 204
    run_jobs(app)
    db.session.refresh(vonage_sms)
    assert vonage_sms.status == S.DELIVERED


@pytest.mark.parametrize("method", ["md5hash", "md5", "sha1", "sha256", "sha512"])
def test_every_vonage_signature_method(vonage_sms, app, client, method):
    app.config["PROVIDER_SETTINGS"]["VONAGE_SIGNATURE_METHOD"] = method
    params = dict(_vonage_receipt(vonage_sms), timestamp=str(int(time.time())), nonce="n-1")
    if method == "md5hash":  # the legacy method the SDK cannot compute
        params["sig"] = vonage.compute_signature(params, VONAGE_SECRET, method)
    else:
        params["sig"] = Auth(
            api_key="k", signature_secret=VONAGE_SECRET, signature_method=method
        ).sign_params(dict(params))
    assert client.post(VONAGE_STATUS, data=params).status_code == 204
    wrong = dict(params, sig=vonage.compute_signature(params, "other-secret", method))
    assert client.post(VONAGE_STATUS, data=wrong).status_code == 403
    assert len(_events()) == 1


def test_vonage_forged_absent_and_stale_signatures_are_refused(vonage_sms, app, client):
    good = vonage_signed(_vonage_receipt(vonage_sms))
    forged = dict(good, status="failed")  # changed after signing
    absent = {k: v for k, v in good.items() if k != "sig"}
    stale = dict(_vonage_receipt(vonage_sms), timestamp=str(int(time.time()) - 3600), nonce="x")
    stale["sig"] = vonage.compute_signature(stale, VONAGE_SECRET, "sha256")
    for params in (forged, absent, stale):
        assert client.post(VONAGE_STATUS, data=params).status_code == 403
    assert _events() == []
    run_jobs(app)
    db.session.refresh(vonage_sms)
    assert vonage_sms.status == S.SENT


# PROVIDERS.md's vector: secret s3cr3t, signed at timestamp 1582650446.
VECTOR = {
    "api-key": "abcd1234",
    "client-ref": "rem-42",
    "err-code": "0",
    "message-timestamp": "2020-01-01 12:00:00",
    "messageId": "0A0000001234567B",
    "msisdn": "447700900000",
    "network-code": "12345",
    "nonce": "ec11dd3e-1e7f-4db5-9467-82b02cd223b9",
    "price": "0.03330000",
    "scts": "2001011400",
    "status": "delivered",
    "timestamp": "1582650446",
    "to": "AcmeInc",
}


@pytest.mark.parametrize(
    "method,sig",
    [
        ("sha256", "a11c919a447d5dbc6195cf0c7a32f19459f5e64d71047b3c671cff57102f5b72"),
        ("md5hash", "9805159efc6c4db274c141de9577be7f"),
    ],
)
def test_providers_md_vector_accepted_when_fresh_refused_when_stale(
    app, client, world, method, sig
):
    app.config["SMS_PROVIDERS"] = ["vonage"]
    app.config["PROVIDER_SETTINGS"] = {
        **VONAGE_CREDENTIALS,
        "VONAGE_SIGNATURE_SECRET": "s3cr3t",
        "VONAGE_SIGNATURE_METHOD": method,
    }
    params = dict(VECTOR, sig=sig.upper())  # compared case-insensitively
    assert (
        client.get(VONAGE_STATUS + "?" + urlencode(params)).status_code == 403
    )  # years old: a replay
    with time_machine.travel(1582650446 + 10, tick=False):
        assert client.get(VONAGE_STATUS + "?" + urlencode(params)).status_code == 204
    [event] = _events()
    assert event.message_id is None and event.raw["client-ref"] == "rem-42"  # unknown, recorded


def test_unsigned_vonage_accepted_only_when_opted_in_and_without_a_secret(app, client, world):
    params = {"messageId": "0B", "status": "delivered", "msisdn": "33612345678"}
    app.config["SMS_PROVIDERS"] = ["vonage"]
    app.config["PROVIDER_SETTINGS"] = dict(VONAGE_CREDENTIALS)
    assert client.post(VONAGE_STATUS, data=params).status_code == 403  # no secret: refused
    assert _events() == []
    app.config["VONAGE_UNSIGNED_WEBHOOKS"] = True
    assert client.post(VONAGE_STATUS, data=params).status_code == 204
    app.config["PROVIDER_SETTINGS"] = {**VONAGE_CREDENTIALS, "VONAGE_SIGNATURE_SECRET": "s"}
    assert client.post(VONAGE_STATUS, data=params).status_code == 403  # a secret: signed only
    assert len(_events()) == 1


def test_long_vonage_sms_is_delivered_when_every_part_is(vonage_sms, app, client):
    vonage_sms.segments = 2
    db.session.commit()
    part1 = _vonage_receipt(vonage_sms, messageId="0A00000000000001")
    part2 = _vonage_receipt(vonage_sms, messageId="0A00000000000002")
    for params in (part1, part1):  # the first part, twice
        assert client.post(VONAGE_STATUS, data=vonage_signed(params)).status_code == 204
        run_jobs(app)
    db.session.refresh(vonage_sms)
    assert vonage_sms.status == S.SENT
    assert client.post(VONAGE_STATUS, data=vonage_signed(part2)).status_code == 204
    run_jobs(app)
    db.session.refresh(vonage_sms)
    assert vonage_sms.status == S.DELIVERED
    assert len(_events()) == 3 and all(e.message_id == vonage_sms.id for e in _events())


def test_a_failed_part_ends_a_long_sms(vonage_sms, app, client):
    vonage_sms.segments = 2
    db.session.commit()
    client.post(VONAGE_STATUS, data=vonage_signed(_vonage_receipt(vonage_sms, messageId="P1")))
    client.post(
        VONAGE_STATUS,
        data=vonage_signed(
            _vonage_receipt(vonage_sms, messageId="P2", status="failed", **{"err-code": "3"})
        ),
    )
    run_jobs(app)
    db.session.refresh(vonage_sms)
    assert vonage_sms.status == S.UNDELIVERED and vonage_sms.error_code == "3"


def test_simulator_receipt_job_records_the_event_once(backend, app, world, frozen):
    rdv = book_at(world, NOW.replace(day=5))
    sms = mark_sent(sms_of(rdv), provider="simulator", provider_message_id="SIMabc")
    receipt = Receipt(
        provider="simulator",
        provider_message_id="SIMabc",
        reference=str(sms.id),
        raw_status="delivered",
        status=S.DELIVERED,
        error_code=None,
        error_message=None,
        raw={"to": sms.recipient},
    )
    enqueue("webhooks.receipts.apply_receipt_job", asdict(receipt))
    run_jobs(app)
    db.session.refresh(sms)
    assert sms.status == S.DELIVERED
    [event] = _events()
    assert event.message_id == sms.id and event.applied and event.raw == {"to": sms.recipient}


def test_database_unreachable_answers_503(app_config, tmp_path, world):
    app_config["SQLALCHEMY_DATABASE_URI"] = "sqlite:///" + str(
        tmp_path / "missing" / "dir" / "x.sqlite3"
    )
    app_config["SMS_PROVIDERS"] = ["vonage"]
    app_config["PROVIDER_SETTINGS"] = {
        **VONAGE_CREDENTIALS,
        "VONAGE_SIGNATURE_SECRET": VONAGE_SECRET,
        "VONAGE_SIGNATURE_METHOD": "sha256",
    }
    broken = create_app(app_config)
    params = vonage_signed({"messageId": "0A", "status": "delivered", "msisdn": "33612345678"})
    with broken.app_context():
        client = broken.test_client()
        response = client.post(VONAGE_STATUS, data=params)
        api = client.post(
            "/api/v1/usagers", json={"first_name": "A"}, headers={"Authorization": "Bearer x"}
        )
        page = client.post("/c/Ab3dE9xQ2kLm")
    for answer in (response, api):
        assert answer.status_code == 503 and answer.headers["Retry-After"]
        assert answer.json["error"] == {
            "code": "unavailable",
            "fields": {},
            "message": answer.json["error"]["message"],
        }
    assert page.status_code == 503 and page.headers["Retry-After"] and page.mimetype == "text/html"
    assert "momentanément indisponible" in page.get_data(as_text=True)


def test_a_receipt_faster_than_the_send_write_back_keeps_the_sent_time(
    signed_config, app, client, world, frozen
):
    """Vonage's `failed` receipt lands while the worker still holds the SMS as `sending`; the
    write-back ("Vonage accepted it") comes after: the SMS was sent all the same."""
    from collections import Counter

    from providers.base import SendResult
    from scheduler.jobs import _Outcome, _write_back

    sms = sms_of(book_at(world, NOW.replace(day=5)))
    for status in (S.QUEUED, S.SENDING):
        transition(sms, status, at=NOW)
    db.session.commit()
    params = {"messageId": "0A01", "status": "failed", "err-code": "2", "client-ref": str(sms.id)}
    assert client.post(VONAGE_STATUS, data=vonage_signed(params)).status_code == 204
    run_jobs(app)
    _write_back(
        [
            _Outcome(
                sms.id, "sent", 1, provider="vonage", send_result=SendResult("vonage", "0A01", 1)
            )
        ],
        Counter(),
    )
    db.session.commit()
    db.session.refresh(sms)
    assert (
        sms.status == S.UNDELIVERED and sms.error_code == "2" and sms.provider_message_id == "0A01"
    )
    assert sms.sent_at == NOW


@pytest.mark.parametrize("ref", ["²", "١٢", "1" * 5000, str(2**31), "-1", "0"])
def test_a_reference_that_cannot_be_our_id_is_recorded_unmatched(
    signed_config, app, client, world, ref
):
    form = {"MessageSid": "SM" + "c" * 32, "MessageStatus": "delivered"}
    assert twilio_post(client, STATUS, form, query=urlencode({"ref": ref})).status_code == 204
    [event] = _events()
    assert event.message_id is None and event.raw["ref"] == ref


def test_odd_receipt_values_are_stored_bounded_and_cleaned(signed_config, app, client, world):
    form = {
        "MessageSid": "SM" + "x" * 5000,
        "MessageStatus": "failed\x00",
        "ErrorCode": "9" * 100,
        "To": "+336\x00",
    }
    assert twilio_post(client, STATUS, form).status_code == 204
    run_jobs(app)
    [event] = _events()
    assert event.provider_message_id == ("SM" + "x" * 5000)[:200] and event.error_code == "9" * 32
    assert event.raw["To"] == "+336\ufffd" and event.raw_status == "failed\ufffd"
    # Vonage by JSON, unsigned (no secret, accepted explicitly): a lone surrogate and NaN,
    # which no column can store as they are.
    app.config["PROVIDER_SETTINGS"] = dict(VONAGE_CREDENTIALS)
    app.config["VONAGE_UNSIGNED_WEBHOOKS"] = True
    body = (
        '{"messageId": "0C", "status": "delivered", "client-ref": "\\ud800", '
        '"price": NaN, "x": [1e999]}'
    )
    assert client.post(VONAGE_STATUS, data=body, content_type="application/json").status_code == 204
    run_jobs(app)
    event = _events()[-1]
    assert event.raw == {
        "messageId": "0C",
        "status": "delivered",
        "client-ref": "\ufffd",
        "price": "nan",
        "x": ["inf"],
    }
