"""No HTTP transport under an adapter resends a message by itself.

Each adapter is pointed at its provider's local fake, which reads the whole
POST and then closes the connection without answering: the provider may have
taken the message, and only the scheduler may decide to try again. Every send
must reach the fake exactly once and fail as a transient error. (SMTP's
equivalent is in ``test_providers_smtp.py``.)
"""

from __future__ import annotations

import pytest
import requests

from providers.base import OutboundSms, SmsProvider, TransientProviderError
from providers.registry import sms_provider
from providers.transport import AnswerLost, ResendRefused, SingleSendAdapter
from tests.fakes.twilio_server import FakeTwilio

SMS = OutboundSms(reference="msg-42", to="+33612345678", body="RDV PMI mar. 24/11 14h30")


@pytest.fixture
def fake_twilio():
    with FakeTwilio() as fake:
        yield fake


def _twilio(fake: FakeTwilio) -> SmsProvider:
    """The adapter as the gateway builds it from the environment, pointed at the fake."""
    return sms_provider("twilio", fake.settings, "https://lapin.test/webhooks/twilio/status")


def _vonage(fake) -> SmsProvider:
    return sms_provider("vonage", fake.settings)


def test_vonage_posts_once_when_the_connection_closes_before_the_answer(fake_vonage):
    # The SDK alone resent this POST pool_maxsize (64) times.
    fake_vonage.mode = "drop"
    provider = _vonage(fake_vonage)
    with pytest.raises(TransientProviderError) as info:
        provider.send_sms(SMS)
    assert fake_vonage.posts_by_ref() == {"msg-42": 1}
    assert info.value.code == "no_answer"

    # The next attempt (the scheduler's decision) is one more POST, no more.
    with pytest.raises(TransientProviderError):
        provider.send_sms(SMS)
    assert fake_vonage.posts_by_ref() == {"msg-42": 2}


def test_vonage_still_sends_after_a_dropped_connection(fake_vonage):
    provider = _vonage(fake_vonage)
    fake_vonage.mode = "drop"
    with pytest.raises(TransientProviderError):
        provider.send_sms(SMS)
    fake_vonage.mode = "ok"
    assert provider.send_sms(SMS).provider_message_id
    assert fake_vonage.posts_by_ref() == {"msg-42": 2}


def test_twilio_posts_once_when_the_connection_closes_before_the_answer(fake_twilio):
    fake_twilio.mode = "drop"
    provider = _twilio(fake_twilio)
    with pytest.raises(TransientProviderError) as info:
        provider.send_sms(SMS)
    assert info.value.code == "no_answer"
    assert fake_twilio.posts_by_ref() == {"msg-42": 1}
    fake_twilio.mode = "ok"
    provider.send_sms(SMS)
    assert fake_twilio.posts_by_ref() == {"msg-42": 2}
    assert len(fake_twilio.accepted) == 1


def _session(adapter: SingleSendAdapter) -> requests.Session:
    session = requests.Session()
    session.mount("http://", adapter)
    return session


def test_single_send_adapter_refuses_a_second_request_in_one_send(fake_twilio):
    # What an SDK that retries under our feet would do: a second request in one send.
    adapter = SingleSendAdapter()
    session = _session(adapter)
    url = f"{fake_twilio.base_url}/2010-04-01/Accounts/{fake_twilio.account_sid}/Messages.json"
    form = {"To": "+33612345678", "From": "+33700000000", "Body": "x"}
    auth = (fake_twilio.account_sid, fake_twilio.auth_token)
    with adapter.one_request():
        assert session.post(url, data=form, auth=auth).status_code == 201
        with pytest.raises(ResendRefused):
            session.post(url, data=form, auth=auth)
    with pytest.raises(ResendRefused):  # outside a send
        session.post(url, data=form, auth=auth)
    assert len(fake_twilio.requests) == 1


def test_single_send_adapter_hides_a_lost_answer_from_connection_error_retry_loops(fake_twilio):
    # The Vonage SDK resends on requests.ConnectionError; AnswerLost is not one.
    fake_twilio.mode = "drop"
    adapter = SingleSendAdapter()
    session = _session(adapter)
    url = f"{fake_twilio.base_url}/2010-04-01/Accounts/{fake_twilio.account_sid}/Messages.json"
    auth = (fake_twilio.account_sid, fake_twilio.auth_token)
    with adapter.one_request(), pytest.raises(AnswerLost) as info:
        session.post(url, data={"To": "+33612345678", "From": "+33700000000"}, auth=auth)
    assert not isinstance(info.value, requests.ConnectionError)
    assert len(fake_twilio.requests) == 1
