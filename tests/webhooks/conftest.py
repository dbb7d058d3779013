"""Shared helpers for the webhook tests: a frozen clock, booked and sent SMS, signed requests."""

from __future__ import annotations

import json
import time
from datetime import datetime
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import select
from twilio.request_validator import RequestValidator
from vonage_http_client import Auth

from gateway.booking import book
from gateway.extensions import db
from gateway.models import Message
from providers import status as S
from scheduler.queue import run_pending
from scheduler.transitions import transition

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 6, 1, 10, 0, tzinfo=PARIS)
BASE = "https://lapin.test"
TWILIO_TOKEN = "twilio-test-token"
VONAGE_SECRET = "vonage-test-secret"


@pytest.fixture
def frozen():
    """The clock stands still at NOW (a Monday 10:00 in Paris) for the whole test."""
    with time_machine.travel(NOW, tick=False):
        yield NOW


# Credentials that make Twilio and Vonage configured providers (their webhooks exist).
TWILIO_CREDENTIALS = {"TWILIO_ACCOUNT_SID": "AC" + "0" * 32, "TWILIO_AUTH_TOKEN": TWILIO_TOKEN}
VONAGE_CREDENTIALS = {"VONAGE_API_KEY": "abcd1234", "VONAGE_API_SECRET": "vonage-api-secret"}


@pytest.fixture
def signed_config(app_config):
    """Twilio and Vonage configured, with their webhook secrets (Vonage: sha256 unless a
    test changes it). The simulator stays first in the chain: nothing is really sent."""
    app_config["SMS_PROVIDERS"] = ["simulator", "twilio", "vonage"]
    app_config["PROVIDER_SETTINGS"] = {
        **TWILIO_CREDENTIALS,
        **VONAGE_CREDENTIALS,
        "VONAGE_SIGNATURE_SECRET": VONAGE_SECRET,
        "VONAGE_SIGNATURE_METHOD": "sha256",
    }
    return app_config


@pytest.fixture
def limited(app_config, redis_url):
    """Rate limiting on, 3 per minute on /c/<code>; in Redis when TEST_REDIS_URL is set."""
    app_config["RATELIMIT_ENABLED"] = True
    app_config["CANCEL_LINK_RATE_LIMIT"] = "3 per minute"
    app_config["RATELIMIT_STORAGE_URI"] = redis_url or "memory://"
    return app_config


@pytest.fixture(params=["embedded", "redis"])
def backend(request, app_config, redis_url):
    """The job queue embedded, and on Redis when TEST_REDIS_URL is set."""
    if request.param == "redis":
        if not redis_url:
            pytest.skip("TEST_REDIS_URL not set: no Redis server for this test")
        from redis import Redis

        Redis.from_url(redis_url).flushdb()
        app_config["REDIS_URL"] = redis_url
    return request.param


def run_jobs(app) -> int:
    """Run every queued job (jobs use their own session), then see their writes."""
    db.session.commit()
    ran = run_pending(app)
    db.session.expire_all()
    return ran


def book_at(world, when: datetime, usager=None, agent=None, now=NOW):
    return book(
        world.org,
        motif_id=world.motif.id,
        lieu_id=world.lieu.id,
        agent_id=(agent or world.agent).id,
        usager_ids=[(usager or world.usager).id],
        starts_at=when,
        now=now,
    )


def sms_of(rdv, kind="confirmation") -> Message:
    return db.session.scalar(
        select(Message).where(
            Message.rdv_id == rdv.id, Message.kind == kind, Message.channel == "sms"
        )
    )


def mark_sent(message: Message, provider="twilio", provider_message_id=None, at=NOW) -> Message:
    """What the send job records once a provider accepted the SMS."""
    for status in (S.QUEUED, S.SENDING):
        transition(message, status, at=at)
    transition(
        message,
        S.SENT,
        at=at,
        provider=provider,
        provider_message_id=provider_message_id or f"SM{message.id:032d}",
    )
    db.session.commit()
    return message


def twilio_post(client, path, form, token=TWILIO_TOKEN, signature=None, query=""):
    """POST a form to a Twilio webhook, signed as Twilio would (the SDK's own code)."""
    url = f"{BASE}{path}" + (f"?{query}" if query else "")
    headers = {}
    if signature is None:
        signature = RequestValidator(token).compute_signature(url, form)
    if signature:
        headers["X-Twilio-Signature"] = signature
    return client.post(path + (f"?{query}" if query else ""), data=form, headers=headers)


def vonage_signed(
    params, method="sha256", secret=VONAGE_SECRET, nonce="ec11dd3e-1e7f-4db5-9467-82b02cd223b9"
):
    """``params`` with ``timestamp``, ``nonce`` and ``sig`` as Vonage signs them.

    The signature comes from the Vonage SDK's own code.
    """
    params = dict(params, timestamp=str(int(time.time())), nonce=nonce)
    params["sig"] = Auth(
        api_key="abcd1234", signature_secret=secret, signature_method=method
    ).sign_params(dict(params))
    return params


def vonage_call(client, path, params, how):
    """Call a Vonage webhook as Vonage can.

    ``how`` is ``get`` (query), ``form`` (POST form) or ``json`` (POST JSON).
    """
    if how == "get":
        return client.get(path + "?" + urlencode(params))
    if how == "form":
        return client.post(path, data=params)
    return client.post(path, data=json.dumps(params), content_type="application/json")
