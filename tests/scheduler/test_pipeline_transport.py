"""Through the whole pipeline, each attempt reaches the provider exactly once.

Each provider's local fake (Twilio over HTTP, Vonage over TLS, an SMTP
relay) reads the whole request and closes the connection without answering.
Dispatch and the send job run for real; after every attempt the fake must
have received exactly as many requests as the message has attempts: the
attempt counts as a transient failure, and only the pipeline tries again
(with its backoff), until the attempts run out.
"""

from __future__ import annotations

import pytest

from gateway.extensions import db
from gateway.timeutil import utcnow
from providers import status as S
from scheduler.dispatch import dispatch_due
from scheduler.queue import run_pending

from ..fakes.smtp_server import FakeSmtp
from ..fakes.twilio_server import FakeTwilio
from ..fakes.vonage_server import FakeVonage
from .conftest import book_for, messages, sms_usager

BACKENDS = pytest.mark.parametrize("backend", ["embedded", "redis"], indirect=True)
ATTEMPTS = 3


@pytest.fixture(params=["twilio", "vonage", "smtp"])
def dropping(request, app_config, monkeypatch):
    """One provider's fake, closing every connection unanswered; the app sends through it
    alone. Yields (channel, how many requests the fake has read, expected error code)."""
    name = request.param
    app_config["MAX_ATTEMPTS_PER_PROVIDER"] = ATTEMPTS
    if name == "smtp":
        with FakeSmtp() as relay:
            relay.mode = "drop_after_data"
            app_config["EMAIL_PROVIDER"] = "smtp"
            app_config["PROVIDER_SETTINGS"] = relay.settings
            yield "email", lambda: len(relay.envelopes), "connection"
        return
    fake = FakeTwilio() if name == "twilio" else FakeVonage()
    with fake:
        fake.mode = "drop"
        if name == "vonage":
            monkeypatch.setenv("REQUESTS_CA_BUNDLE", fake.ca_file)
            monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
            monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        app_config["SMS_PROVIDERS"] = [name]
        app_config["PROVIDER_SETTINGS"] = fake.settings
        yield "sms", lambda: sum(fake.posts_by_ref().values()), "no_answer"


@BACKENDS
def test_each_attempt_reaches_the_provider_once_and_only_the_pipeline_retries(
    backend, dropping, app, world, clock
):
    channel, requests_read, error_code = dropping
    if channel == "sms":
        usager = sms_usager(world)
    else:
        usager = world.usager
        usager.phone = None
        db.session.commit()
    book_for(world, usager, days=3)
    assert dispatch_due(utcnow()) == 1
    (message,) = messages(kind="confirmation", channel=channel)

    seen = []
    for _ in range(ATTEMPTS):
        run_pending(app)
        message = messages(id=message.id)[0]
        seen.append((message.attempts, requests_read(), message.status, message.error_code))
        if message.status == S.SCHEDULED:  # backing off: due again later
            assert dispatch_due(message.send_at) == 1

    assert seen == [
        (1, 1, S.SCHEDULED, error_code),
        (2, 2, S.SCHEDULED, error_code),
        (3, 3, S.FAILED, error_code),
    ]
    run_pending(app)  # nothing left to run, nothing more reaches the provider
    assert requests_read() == ATTEMPTS
