"""Provider webhooks fail closed (issue 11, defect 3).

Before the fix, with ``VONAGE_SIGNATURE_SECRET`` unset, anyone could post an
unsigned ANNULER or STOP to ``/webhooks/vonage/inbound`` (cancel an rdv, opt a
number out), and a Vonage receipt could mark a Twilio SMS undelivered, even
when Vonage was not a configured provider. Now:

- a provider that is not configured has no webhooks (404, nothing stored);
- Vonage without a signature secret refuses unsigned calls (403) unless
  ``VONAGE_UNSIGNED_WEBHOOKS=accept``, which production refuses at start;
- a receipt only touches messages sent through the provider it comes from,
  on the general path and on PostgreSQL's one-statement path.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from gateway import config, create_app
from gateway.extensions import db
from gateway.models import DeliveryEvent, InboundSms, Message, Organisation, Rdv, Usager
from providers import status as S
from providers.base import Receipt
from webhooks import receipts

from .conftest import (
    NOW,
    TWILIO_CREDENTIALS,
    VONAGE_CREDENTIALS,
    book_at,
    mark_sent,
    run_jobs,
    sms_of,
    twilio_post,
    vonage_signed,
)

PHONE = "+33612345678"  # world.usager
ROUTES = [
    ("post", "/webhooks/twilio/status"),
    ("post", "/webhooks/twilio/inbound"),
    ("get", "/webhooks/vonage/status"),
    ("post", "/webhooks/vonage/status"),
    ("get", "/webhooks/vonage/inbound"),
    ("post", "/webhooks/vonage/inbound"),
]


def _count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def _vonage_inbound(text: str, message_id: str = "0B0000000000000A") -> dict:
    return {
        "msisdn": PHONE.lstrip("+"),
        "to": "33700000000",
        "messageId": message_id,
        "text": text,
        "type": "text",
        "keyword": text.split()[0].upper(),
        "message-timestamp": "2026-06-01 08:00:00",
    }


def _twilio_inbound(text: str) -> dict:
    sid = "SM" + "7" * 32
    return {"MessageSid": sid, "From": PHONE, "To": "+33700000000", "Body": text}


@pytest.fixture
def sent_rdv(app, world, frozen):
    """An rdv on Friday whose confirmation SMS Twilio accepted an hour ago."""
    rdv = book_at(world, NOW.replace(day=5))
    mark_sent(sms_of(rdv), provider="twilio", at=NOW - timedelta(hours=1))
    return rdv


def _configure(app, providers, settings, unsigned=False):
    app.config["SMS_PROVIDERS"] = ["simulator", *providers]
    app.config["PROVIDER_SETTINGS"] = dict(settings)
    app.config["VONAGE_UNSIGNED_WEBHOOKS"] = unsigned


def _untouched(rdv, world) -> None:
    db.session.expire_all()
    assert db.session.get(Rdv, rdv.id).status == "unknown"
    assert db.session.get(Usager, world.usager.id).sms_opted_out is False


# --- a provider that is not configured has no webhooks ---


@pytest.mark.parametrize(
    "providers,settings",
    [
        ([], {}),  # the default: simulator only
        ([], {**TWILIO_CREDENTIALS, **VONAGE_CREDENTIALS}),  # credentials, not in use
        (["twilio", "vonage"], {}),  # in use, no credentials
        (["twilio", "vonage"], {"TWILIO_AUTH_TOKEN": "t", "VONAGE_SIGNATURE_SECRET": "s"}),
    ],
    ids=["nothing", "credentials-only", "listed-only", "secrets-without-credentials"],
)
@pytest.mark.parametrize("method,path", ROUTES)
def test_a_provider_not_configured_answers_404_and_stores_nothing(
    app, client, sent_rdv, world, providers, settings, method, path
):
    _configure(app, providers, settings, unsigned=True)
    if path.startswith("/webhooks/twilio"):
        response = twilio_post(client, path, _twilio_inbound("STOP"), token="t")
    else:
        call = client.get if method == "get" else client.post
        params = _vonage_inbound("STOP")
        response = call(path, query_string=params) if method == "get" else call(path, data=params)
    assert response.status_code == 404
    run_jobs(app)
    assert _count(InboundSms) == 0 and _count(DeliveryEvent) == 0
    _untouched(sent_rdv, world)


def test_a_provider_named_only_by_an_organisation_is_configured(app, client, sent_rdv, world):
    _configure(app, [], {**VONAGE_CREDENTIALS, "VONAGE_SIGNATURE_SECRET": "s"})
    assert client.get("/webhooks/vonage/status").status_code == 404
    db.session.get(Organisation, world.org.id).sms_providers = "twilio, Vonage"
    db.session.commit()
    assert client.get("/webhooks/vonage/status").status_code == 403  # exists; unsigned


# --- forged ANNULER and STOP ---


@pytest.mark.parametrize("text", ["ANNULER", "STOP"])
def test_forged_vonage_inbound_when_only_twilio_is_configured_is_404(
    app, client, sent_rdv, world, text
):
    """The issue's scenario: Twilio in use, Vonage not; no Vonage secret anywhere."""
    _configure(app, ["twilio"], TWILIO_CREDENTIALS)
    for call in (client.get, client.post):
        kwargs = {"query_string" if call == client.get else "data": _vonage_inbound(text)}
        assert call("/webhooks/vonage/inbound", **kwargs).status_code == 404
    run_jobs(app)
    assert _count(InboundSms) == 0
    _untouched(sent_rdv, world)


@pytest.mark.parametrize("text", ["ANNULER", "STOP"])
def test_unsigned_vonage_inbound_without_a_secret_is_refused(app, client, sent_rdv, world, text):
    _configure(app, ["vonage"], VONAGE_CREDENTIALS)
    assert client.post("/webhooks/vonage/inbound", data=_vonage_inbound(text)).status_code == 403
    response = client.get("/webhooks/vonage/inbound", query_string=_vonage_inbound(text))
    assert response.status_code == 403
    run_jobs(app)
    assert _count(InboundSms) == 0
    _untouched(sent_rdv, world)


def test_unsigned_vonage_inbound_is_acted_on_when_the_operator_accepts_it(
    app, client, sent_rdv, world
):
    _configure(app, ["vonage"], VONAGE_CREDENTIALS, unsigned=True)
    assert client.post("/webhooks/vonage/inbound", data=_vonage_inbound("STOP")).status_code == 204
    run_jobs(app)
    assert db.session.get(Usager, world.usager.id).sms_opted_out is True


def test_with_a_secret_the_opt_in_does_not_let_unsigned_calls_in(app, client, sent_rdv, world):
    settings = {**VONAGE_CREDENTIALS, "VONAGE_SIGNATURE_SECRET": "s"}
    _configure(app, ["vonage"], settings, unsigned=True)
    response = client.post("/webhooks/vonage/inbound", data=_vonage_inbound("ANNULER"))
    assert response.status_code == 403
    run_jobs(app)
    _untouched(sent_rdv, world)


# --- VONAGE_UNSIGNED_WEBHOOKS at start ---


def test_unsigned_opt_in_is_refused_in_production(tmp_path):
    env = {"GATEWAY_ENV": "production", "SECRET_KEY": "k", "VONAGE_UNSIGNED_WEBHOOKS": "accept"}
    with pytest.raises(RuntimeError, match="VONAGE_UNSIGNED_WEBHOOKS"):
        config.from_environment(str(tmp_path), env)
    assert (
        config.from_environment(str(tmp_path), env | {"VONAGE_UNSIGNED_WEBHOOKS": "refuse"})[
            "VONAGE_UNSIGNED_WEBHOOKS"
        ]
        is False
    )


@pytest.mark.parametrize(
    "value,expected", [(None, False), ("", False), ("refuse", False), (" Accept ", True)]
)
def test_unsigned_opt_in_values(tmp_path, value, expected):
    env = {} if value is None else {"VONAGE_UNSIGNED_WEBHOOKS": value}
    assert config.from_environment(str(tmp_path), env)["VONAGE_UNSIGNED_WEBHOOKS"] is expected


@pytest.mark.parametrize("value", ["yes", "1", "true", "acept"])
def test_an_unknown_opt_in_value_stops_the_start(tmp_path, value):
    with pytest.raises(RuntimeError, match="accept or refuse"):
        config.from_environment(str(tmp_path), {"VONAGE_UNSIGNED_WEBHOOKS": value})


def test_the_opt_in_is_logged_as_a_warning_at_start(app_config, _migrated, caplog):
    app_config["VONAGE_UNSIGNED_WEBHOOKS"] = True
    with caplog.at_level(logging.WARNING, logger="webhooks"):
        create_app(app_config)
    assert any(
        r.levelno == logging.WARNING and "VONAGE_UNSIGNED_WEBHOOKS=accept" in r.getMessage()
        for r in caplog.records
    )
    caplog.clear()
    app_config["VONAGE_UNSIGNED_WEBHOOKS"] = False
    with caplog.at_level(logging.WARNING, logger="webhooks"):
        create_app(app_config)
    assert not any("VONAGE_UNSIGNED_WEBHOOKS" in r.getMessage() for r in caplog.records)


# --- a receipt only touches messages of its own provider ---


def _vonage_failed_receipt(message: Message) -> dict:
    return {
        "msisdn": message.recipient.lstrip("+"),
        "to": "Lapin",
        "messageId": "0A0000009999999F",
        "status": "failed",
        "err-code": "6",
        "client-ref": str(message.id),
        "message-timestamp": "2026-06-01 08:00:00",
    }


def test_a_vonage_receipt_for_a_twilio_sms_changes_nothing_and_is_recorded(
    signed_config, app, client, world, frozen
):
    rdv = book_at(world, NOW.replace(day=5))
    sms = mark_sent(sms_of(rdv), provider="twilio", provider_message_id="SM" + "c" * 32)
    messages_before = _count(Message)
    params = vonage_signed(_vonage_failed_receipt(sms))
    assert client.post("/webhooks/vonage/status", data=params).status_code == 204
    run_jobs(app)
    db.session.expire_all()
    sms = db.session.get(Message, sms.id)
    assert sms.status == S.SENT and sms.error_code is None
    assert sms.provider == "twilio" and sms.provider_message_id == "SM" + "c" * 32
    [event] = db.session.scalars(select(DeliveryEvent)).all()
    assert event.provider == "vonage" and event.message_id is None and event.applied is False
    assert _count(Message) == messages_before  # no email fallback planned
    # The same receipt about a message Vonage did send is applied.
    other = mark_sent(
        sms_of(book_at(world, NOW.replace(day=4))), provider="vonage", provider_message_id="0A1"
    )
    params = vonage_signed(_vonage_failed_receipt(other) | {"messageId": "0A1"})
    assert client.post("/webhooks/vonage/status", data=params).status_code == 204
    assert db.session.get(Message, other.id).status == S.UNDELIVERED


def _receipt(provider: str, message: Message, status: str) -> Receipt:
    return Receipt(
        provider=provider,
        provider_message_id="X-" + provider,
        status=status,
        raw_status=status,
        error_code=None,
        error_message=None,
        reference=str(message.id),
        raw={"ref": str(message.id)},
    )


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "general-path"])
@pytest.mark.parametrize("status", [S.DELIVERED, S.FAILED])
def test_a_receipt_by_reference_only_touches_its_providers_messages(
    app, world, frozen, monkeypatch, fast, status
):
    """Both receipt paths: PostgreSQL's one statement (``fast``) and the general one."""
    if fast and db.engine.dialect.name != "postgresql":
        pytest.skip("the one-statement receipt path is PostgreSQL's: set TEST_DATABASE_URL")
    if not fast:
        monkeypatch.setattr(receipts, "_fast_path_applies", lambda r: False)
    rdv = book_at(world, NOW.replace(day=5))
    sms = mark_sent(sms_of(rdv), provider="twilio", provider_message_id="SM" + "d" * 32)
    email = db.session.scalar(
        select(Message).where(
            Message.rdv_id == rdv.id, Message.channel == "email", Message.kind == "confirmation"
        )
    )
    assert email.provider_message_id is None and email.status == S.SCHEDULED
    expect_fast = fast and status == S.DELIVERED
    assert receipts._fast_path_applies(_receipt("twilio", sms, status)) is expect_fast
    # Another provider's receipt for the Twilio SMS; an SMS provider's for an email.
    assert receipts.apply_receipt(_receipt("vonage", sms, status), now=NOW) is False
    assert receipts.apply_receipt(_receipt("twilio", email, status), now=NOW) is False
    db.session.expire_all()
    assert db.session.get(Message, sms.id).status == S.SENT
    assert db.session.get(Message, email.id).status == S.SCHEDULED
    events = db.session.scalars(select(DeliveryEvent).order_by(DeliveryEvent.id)).all()
    assert [(e.provider, e.message_id, e.applied) for e in events] == [
        ("vonage", None, False),
        ("twilio", None, False),
    ]
    # Its own provider's receipt is applied, by either path.
    assert receipts.apply_receipt(_receipt("twilio", sms, status), now=NOW) is True
    db.session.expire_all()
    assert db.session.get(Message, sms.id).status == status


def test_a_receipt_that_beats_the_write_back_still_applies(app, world, frozen):
    """No provider recorded yet (the worker has not written back): nothing contradicts it."""
    rdv = book_at(world, NOW.replace(day=5))
    sms = sms_of(rdv)
    sms.status = S.SENDING
    sms.provider = "twilio"  # an earlier attempt that failed over to Vonage
    db.session.commit()
    assert receipts.apply_receipt(_receipt("vonage", sms, S.DELIVERED), now=NOW) is True
    db.session.expire_all()
    sms = db.session.get(Message, sms.id)
    assert sms.status == S.DELIVERED and sms.provider == "vonage"
