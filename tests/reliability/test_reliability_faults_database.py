"""The database unreachable for a moment: 503 and nothing written, then recovery without a restart.

A :class:`~.tcp_proxy.TcpProxy` sits between the app's engine and PostgreSQL.
The same six calls (the four provider webhooks, properly signed, a
cancellation link POST and a JSON API booking) are made:

1. against a database that is always there: the reference state;
2. from a fresh database, with the proxy cut: once while the pool still holds
   connections the cut killed mid-session, once more when every new connection
   is refused. Each call must answer 503 with ``Retry-After`` (JSON for the
   webhooks and the API, a French page for the link) and write nothing;
3. after the proxy is restored, the calls again, as the providers and clients
   retry: the app recovers without a restart, and the final state (every
   table's row count, every message's status, error and timeline, rdvs, opt-outs,
   inbound actions, receipts) equals the reference.

A second test cuts the database in the middle of an inbound SMS request, after
the SMS was stored but before it was acted on: the provider's retry must get
it acted on, once.
"""

from __future__ import annotations

import os
from datetime import time
from urllib.parse import urlsplit, urlunsplit

import pytest
from sqlalchemy import select

from gateway.config import engine_options
from gateway.extensions import db
from gateway.models import (
    DeliveryEvent,
    InboundSms,
    Message,
    MessageStatusChange,
    Participation,
    Rdv,
    Usager,
)
from tests.conftest import _empty_tables
from tests.factories import make_usager, make_world

from ..webhooks.conftest import (
    NOW,
    TWILIO_CREDENTIALS,
    VONAGE_CREDENTIALS,
    VONAGE_SECRET,
    book_at,
    mark_sent,
    run_jobs,
    sms_of,
    twilio_post,
    vonage_signed,
)
from .faults import needs_postgresql
from .helpers import committed_counts
from .tcp_proxy import TcpProxy

pytestmark = needs_postgresql

OTHER_PHONE = "+33622222222"


@pytest.fixture
def proxy():
    url = urlsplit(os.environ.get("TEST_DATABASE_URL", ""))
    with TcpProxy(url.hostname or "127.0.0.1", url.port or 5432) as proxy:
        yield proxy


@pytest.fixture
def proxied_config(app_config, proxy):
    url = urlsplit(app_config["SQLALCHEMY_DATABASE_URI"])
    netloc = f"{url.username}@127.0.0.1:{proxy.port}" if url.username else f"127.0.0.1:{proxy.port}"
    app_config["SQLALCHEMY_DATABASE_URI"] = urlunsplit(url._replace(netloc=netloc))
    # The production options (pre-ping, connect timeout), with a short timeout: a test never
    # waits long.
    app_config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options(
        app_config["SQLALCHEMY_DATABASE_URI"], 2
    )
    app_config["SMS_PROVIDERS"] = ["simulator", "twilio", "vonage"]
    app_config["PROVIDER_SETTINGS"] = {
        **TWILIO_CREDENTIALS,
        **VONAGE_CREDENTIALS,
        "VONAGE_SIGNATURE_SECRET": VONAGE_SECRET,
        "VONAGE_SIGNATURE_METHOD": "sha256",
    }
    return app_config


def _scene() -> dict:
    """A fresh world: two SMS sent (Twilio, Vonage), an rdv to cancel by link; plain values only."""
    world = make_world(opening=((time(9), time(12)), (time(14), time(17))))
    other = make_usager(
        world.org,
        first="Ana",
        last="Silva",
        phone=OTHER_PHONE,
        email="ana@example.org",
        notify_email=False,
    )
    twilio_sms = mark_sent(
        sms_of(book_at(world, NOW.replace(day=5))),
        provider="twilio",
        provider_message_id="SM" + "a" * 32,
    )
    vonage_sms = mark_sent(
        sms_of(book_at(world, NOW.replace(day=5, hour=14), usager=other)),
        provider="vonage",
        provider_message_id="0A0000001234567B",
    )
    by_link = book_at(world, NOW.replace(day=4, hour=9), usager=world.email_usager)
    code = db.session.scalar(
        select(Participation.cancel_code).where(Participation.rdv_id == by_link.id)
    )
    return {
        "twilio_sms": (twilio_sms.id, twilio_sms.recipient),
        "vonage_sms": vonage_sms.id,
        "code": code,
        "token": world.token,
        "booking": {
            "motif_id": world.motif.id,
            "lieu_id": world.lieu.id,
            "agent_id": world.agent.id,
            "usager_id": world.email_usager.id,
            "starts_at": "2026-06-02T09:00:00+02:00",
        },
    }


def _calls(scene: dict) -> list[tuple[str, object, int]]:
    """(name, call, status when the database is there) for the six calls."""
    sms_id, recipient = scene["twilio_sms"]
    status_form = {
        "MessageSid": "SM" + "a" * 32,
        "MessageStatus": "delivered",
        "To": recipient,
        "AccountSid": "AC" + "0" * 32,
    }
    inbound_form = {
        "MessageSid": "SM" + "1" * 32,
        "From": recipient,
        "To": "+33700000000",
        "Body": "Annulé !",
    }
    receipt = vonage_signed(
        {
            "messageId": "0A0000001234567B",
            "status": "failed",
            "err-code": "3",
            "client-ref": str(scene["vonage_sms"]),
            "msisdn": OTHER_PHONE.lstrip("+"),
        }
    )
    stop = vonage_signed(
        {
            "messageId": "0B0000000000000S",
            "msisdn": OTHER_PHONE.lstrip("+"),
            "to": "33700000000",
            "text": "STOP",
            "type": "text",
        }
    )
    auth = {"Authorization": f"Bearer {scene['token']}"}
    return [
        (
            "twilio status",
            lambda c: twilio_post(c, "/webhooks/twilio/status", status_form, query=f"ref={sms_id}"),
            204,
        ),
        ("twilio inbound", lambda c: twilio_post(c, "/webhooks/twilio/inbound", inbound_form), 200),
        ("vonage status", lambda c: c.post("/webhooks/vonage/status", data=receipt), 204),
        ("vonage inbound", lambda c: c.get("/webhooks/vonage/inbound", query_string=stop), 204),
        ("cancel link", lambda c: c.post(f"/c/{scene['code']}"), 200),
        ("api booking", lambda c: c.post("/api/v1/rdvs", json=scene["booking"], headers=auth), 201),
    ]


def _state() -> dict:
    """What the calls decide, read on fresh connections (committed data only)."""

    def rows(query):
        with db.engine.connect() as connection:
            return [tuple(row) for row in connection.execute(query)]

    m, c, e, i = (
        Message.__table__.c,
        MessageStatusChange.__table__.c,
        DeliveryEvent.__table__.c,
        InboundSms.__table__.c,
    )
    return {
        "counts": committed_counts(),
        "messages": rows(
            select(
                m.id,
                m.kind,
                m.channel,
                m.status,
                m.error_code,
                m.segments,
                m.provider,
                m.provider_message_id,
                m.recipient,
                m.fallback_of_id,
                m.sent_at,
                m.delivered_at,
                m.send_at,
            ).order_by(m.id)
        ),
        "timelines": rows(select(c.message_id, c.status).order_by(c.id)),
        "rdvs": rows(
            select(
                Rdv.__table__.c.id, Rdv.__table__.c.status, Rdv.__table__.c.cancelled_via
            ).order_by(Rdv.__table__.c.id)
        ),
        "opt_outs": rows(
            select(Usager.__table__.c.id, Usager.__table__.c.sms_opted_out).order_by(
                Usager.__table__.c.id
            )
        ),
        "inbound": rows(
            select(i.provider_message_id, i.action, i.rdv_id, i.reply_message_id).order_by(i.id)
        ),
        "receipts": rows(
            select(e.provider_message_id, e.message_id, e.mapped_status, e.applied).order_by(e.id)
        ),
    }


def _answer_all(client, calls) -> list[int]:
    statuses = []
    for name, call, _ in calls:
        response = call(client)
        db.session.rollback()  # as at the end of a real request: the session does not outlive it
        statuses.append(response.status_code)
        if response.status_code == 503:
            assert response.headers.get("Retry-After"), name
            if name == "cancel link":
                assert (
                    response.mimetype == "text/html"
                    and "momentanément indisponible" in response.get_data(as_text=True)
                )
            else:
                body = response.get_json()
                assert body["error"]["code"] == "unavailable" and body["error"]["fields"] == {}, (
                    name
                )
    return statuses


def _reference(app, client) -> tuple[dict, dict]:
    scene = _scene()
    calls = _calls(scene)
    assert _answer_all(client, calls) == [expected for *_, expected in calls]
    run_jobs(app)
    state = _state()
    # The calls did what they say: a meaningful reference, not an empty one.
    assert ("SM" + "1" * 32, "cancelled") in [row[:2] for row in state["inbound"]]
    assert ("0B0000000000000S", "opted_out") in [row[:2] for row in state["inbound"]]
    statuses = {row[0]: row[3] for row in state["messages"]}
    assert (
        statuses[scene["twilio_sms"][0]] == "delivered"
        and statuses[scene["vonage_sms"]] == "undelivered"
    )
    assert sum(1 for row in state["rdvs"] if row[2] in ("sms", "link")) == 2
    assert state["counts"]["rdvs"] == 4
    _empty_tables()
    return scene, state


def test_database_cut_answers_503_writes_nothing_and_recovers(
    proxied_config, app, client, proxy, frozen
):
    _, reference = _reference(app, client)
    scene = _scene()
    calls = _calls(scene)
    assert (
        client.get(
            "/api/v1/motifs", headers={"Authorization": f"Bearer {scene['token']}"}
        ).status_code
        == 200
    )
    db.session.rollback()
    before = _state()
    assert proxy.open_connections >= 1  # the pool holds live connections: the cut kills them

    proxy.cut()
    assert _answer_all(client, calls) == [503] * 6  # pooled connections died mid-session
    dropped = proxy.dropped
    assert _answer_all(client, calls) == [503] * 6  # new connections refused
    assert proxy.dropped > dropped
    proxy.restore()

    assert _state() == before  # twelve refused calls, not one row written
    assert _answer_all(client, calls) == [
        expected for *_, expected in calls
    ]  # the retries, same app
    run_jobs(app)
    assert _state() == reference


def test_database_lost_after_an_inbound_sms_is_stored_the_retry_acts_on_it(
    proxied_config, app, client, proxy, frozen, monkeypatch
):
    """The worst moment: the SMS row is committed, then the database goes before it is acted on
    (here with Redis down too, so the request acts inline and answers 503). Twilio retries."""
    _, reference = _reference(app, client)
    scene = _scene()
    calls = _calls(scene)
    from scheduler import queue

    real_enqueue = queue.enqueue

    def redis_down_then_database_lost(func_path, *args, **kwargs):
        if func_path == "webhooks.inbound.process_inbound_job" and proxy_state["cut_next"]:
            proxy_state["cut_next"] = False
            proxy.cut()
            raise ConnectionError("Redis unreachable")
        return real_enqueue(func_path, *args, **kwargs)

    proxy_state = {"cut_next": True}
    monkeypatch.setattr(queue, "enqueue", redis_down_then_database_lost)
    name, _call, _ = calls[1]
    assert name == "twilio inbound"
    assert _answer_all(client, [calls[1]]) == [503]
    proxy.restore()
    stored = _state()["inbound"]
    assert [row[:2] for row in stored] == [("SM" + "1" * 32, None)]  # stored, not yet acted on
    assert _answer_all(client, calls) == [
        expected for *_, expected in calls
    ]  # the retry, then the rest
    run_jobs(app)
    assert _state() == reference
