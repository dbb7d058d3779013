import logging

import pytest
import requests

from providers.base import (
    EmailProvider,
    OutboundEmail,
    OutboundSms,
    PermanentProviderError,
    ProviderError,
    SendResult,
    SmsProvider,
    TransientProviderError,
    mask_email,
    mask_phone,
)


class _Scripted(SmsProvider):
    """An adapter whose _send_sms raises or returns what the test says."""

    name = "scripted"

    def __init__(self, outcome):
        self.outcome = outcome

    def _send_sms(self, sms):
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


class _ScriptedEmail(EmailProvider):
    name = "scripted-mail"

    def __init__(self, outcome):
        self.outcome = outcome

    def _send_email(self, email):
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


SMS = OutboundSms(reference="m-1", to="+33612345678", body="Bonjour")
EMAIL = OutboundEmail(reference="m-2", to="alice@example.org", subject="RDV", text="Bonjour")


def test_error_attributes_and_kinds():
    t = TransientProviderError("twilio", "slow down", 20429)
    p = PermanentProviderError("twilio", "STOP", "21610", opted_out=True)
    assert isinstance(t, ProviderError) and isinstance(p, ProviderError)
    assert (t.provider, t.code, t.message, t.transient, t.opted_out) == (
        "twilio",
        "20429",
        "slow down",
        True,
        False,
    )
    assert (p.code, p.transient, p.opted_out) == ("21610", False, True)
    assert ProviderError("x", "m").code is None
    assert "21610" in str(p) and "STOP" in str(p)


def test_mask_phone_keeps_last_two_digits():
    assert mask_phone("+33612345678") == "+*********78"
    assert mask_phone("") == ""
    assert mask_email("alice@example.org") == "a***@example.org"


def test_success_is_returned_and_logged_masked(caplog):
    result = SendResult(provider="scripted", provider_message_id="X1", segments=1)
    with caplog.at_level(logging.INFO, logger="providers"):
        assert _Scripted(result).send_sms(SMS) is result
    assert "+*********78" in caplog.text
    assert "612345678" not in caplog.text
    assert "ref=m-1" in caplog.text


def test_provider_errors_pass_through_and_numbers_are_masked_in_logs(caplog):
    error = PermanentProviderError("scripted", "The 'To' number +33612345678 is invalid", 21211)
    with caplog.at_level(logging.INFO, logger="providers"), pytest.raises(ProviderError) as info:
        _Scripted(error).send_sms(SMS)
    assert info.value is error
    assert "612345678" not in caplog.text
    assert "permanent code=21211" in caplog.text


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (requests.ConnectionError("refused"), "connection"),
        (requests.ConnectTimeout("slow"), "timeout"),
        (requests.ReadTimeout("slow"), "timeout"),
        (KeyError("sid"), "KeyError"),
        (OSError("broken pipe"), "OSError"),
    ],
)
def test_unexpected_exceptions_become_transient(exc, code):
    with pytest.raises(TransientProviderError) as info:
        _Scripted(exc).send_sms(SMS)
    assert info.value.code == code
    assert info.value.provider == "scripted"
    assert info.value.__cause__ is exc


def test_email_provider_wraps_the_same_way(caplog):
    with pytest.raises(TransientProviderError) as info:
        _ScriptedEmail(ValueError("boom")).send_email(EMAIL)
    assert info.value.code == "ValueError"
    result = SendResult(provider="scripted-mail", provider_message_id="<a@b>")
    with caplog.at_level(logging.INFO, logger="providers"):
        assert _ScriptedEmail(result).send_email(EMAIL) is result
    assert "alice@" not in caplog.text


def test_adapters_must_implement_the_send_method():
    class Incomplete(SmsProvider):
        name = "incomplete"

    with pytest.raises(TypeError):
        Incomplete()
