"""The fake Twilio server answers the real Twilio adapter (and SDK) like Twilio does."""

from __future__ import annotations

import pytest

from providers.base import OutboundSms, PermanentProviderError, TransientProviderError
from providers.twilio import TwilioSms

from ..fakes.twilio_server import FakeTwilio


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
