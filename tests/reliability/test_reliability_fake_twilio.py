"""The fake Twilio server answers the real Twilio adapter (and SDK) like Twilio does."""

from __future__ import annotations

import http.client
import json

import pytest

from providers.base import OutboundSms, PermanentProviderError, TransientProviderError
from providers.twilio import TwilioSms

from ..fakes.twilio_server import FakeTwilio, num_segments, stats


@pytest.fixture
def fake():
    with FakeTwilio(slow_seconds=0.05, hang_seconds=5) as server:
        yield server


def _adapter(fake, **kw) -> TwilioSms:
    return TwilioSms(
        fake.account_sid,
        fake.auth_token,
        from_number="+33700000000",
        api_base_url=fake.base_url,
        status_callback_url="https://lapin.test/webhooks/twilio/status",
        **kw,
    )


SMS = OutboundSms(reference="42", to="+33612345678", body="RDV PMI mar. 24/11 14h30")


def test_ok_accepts_and_records_the_message(fake):
    result = _adapter(fake).send_sms(SMS)
    assert result.provider_message_id.startswith("SM") and result.segments == 1
    [accepted] = fake.accepted
    assert (accepted.sid, accepted.to, accepted.body) == (
        result.provider_message_id,
        SMS.to,
        SMS.body,
    )
    assert accepted.status_callback.endswith("ref=42")


@pytest.mark.parametrize(
    ("mode", "error", "code"),
    [
        ("500", TransientProviderError, "20500"),
        ("429", TransientProviderError, "20429"),
        ("invalid", PermanentProviderError, "21211"),
    ],
)
def test_error_modes_map_to_the_adapters_error_classes(fake, mode, error, code):
    fake.mode = mode
    with pytest.raises(error) as info:
        _adapter(fake).send_sms(SMS)
    assert str(info.value.code) == code
    assert fake.accepted == [] and fake.counts[mode] == 1


def test_timeout_mode_makes_the_client_time_out(fake):
    fake.mode = "timeout"
    with pytest.raises(TransientProviderError):
        _adapter(fake, timeout=0.3).send_sms(SMS)
    fake.release()
    assert fake.accepted == []


def test_a_scripted_outage_then_recovery(fake):
    fake.script(["500", "429", "slow"])
    adapter = _adapter(fake)
    outcomes = []
    for _ in range(4):
        try:
            adapter.send_sms(SMS)
            outcomes.append("ok")
        except TransientProviderError:
            outcomes.append("transient")
    assert outcomes == ["transient", "transient", "ok", "ok"]
    assert [r.mode for r in fake.requests] == ["500", "429", "slow", "ok"]


def test_wrong_credentials_are_refused(fake):
    adapter = TwilioSms(
        fake.account_sid, "wrong", from_number="+33700000000", api_base_url=fake.base_url
    )
    # An account problem, not the recipient's: the adapter lets the next provider try.
    with pytest.raises(TransientProviderError) as info:
        adapter.send_sms(SMS)
    assert str(info.value.code) == "20003"
    assert fake.requests == []


def test_drop_mode_reads_the_send_and_closes_without_answering(fake):
    fake.mode = "drop"
    with pytest.raises(TransientProviderError) as info:
        _adapter(fake).send_sms(SMS)
    assert info.value.code == "no_answer"
    assert [r.mode for r in fake.requests] == ["drop"]
    assert fake.posts_by_ref() == {"42": 1} and fake.accepted == []


def test_stats_count_requests_messages_and_duplicates(fake):
    adapter = _adapter(fake)
    adapter.send_sms(SMS)
    adapter.send_sms(SMS)  # the same message id twice: a duplicate
    assert stats(fake.base_url) == {"requests": 3, "messages": 2, "distinct": 1, "errors": 0}


def test_unauthenticated_sends_get_a_twilio_error_and_count_as_errors(fake):
    conn = http.client.HTTPConnection(fake.base_url.removeprefix("http://"), timeout=10)
    conn.request(
        "POST",
        f"/2010-04-01/Accounts/{fake.account_sid}/Messages.json",
        body="To=%2B33612345678&From=%2B33700000001&Body=x",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    response = conn.getresponse()
    payload = json.loads(response.read())
    conn.close()
    assert response.status == 401
    assert payload["code"] == 20003 and payload["status"] == 401
    assert fake.requests == [] and fake.stats()["errors"] == 1


@pytest.mark.parametrize(
    ("body", "segments"),
    [
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("€" * 80, 1),
        ("é" * 160, 1),
        ("œ" * 70, 1),
        ("œ" * 71, 2),
    ],
)
def test_segments_are_counted_like_twilio(body, segments):
    assert num_segments(body) == segments
