import pytest

import providers
from providers.registry import email_provider, sms_provider
from providers.simulator import SimulatorEmail, SimulatorSms
from providers.smtp import SmtpEmail
from providers.twilio import TwilioSms
from providers.vonage import VonageSms

TWILIO = {
    "TWILIO_ACCOUNT_SID": "AC123",
    "TWILIO_AUTH_TOKEN": "tok",
    "TWILIO_FROM": "+33700000000",
    "TWILIO_API_BASE_URL": "http://127.0.0.1:9999",
}
VONAGE = {
    "VONAGE_API_KEY": "k",
    "VONAGE_API_SECRET": "s",
    "VONAGE_FROM": "PMI62",
    "VONAGE_REST_HOST": "127.0.0.1:8443",
}


def test_twilio_from_config():
    provider = sms_provider("twilio", TWILIO, "https://h/webhooks/twilio/status")
    assert isinstance(provider, TwilioSms)
    assert provider.from_number == "+33700000000"
    assert provider.status_callback_url == "https://h/webhooks/twilio/status"
    assert provider._client.api.base_url == "http://127.0.0.1:9999"


def test_twilio_with_messaging_service_only():
    config = {k: v for k, v in TWILIO.items() if k != "TWILIO_FROM"}
    config["TWILIO_MESSAGING_SERVICE_SID"] = "MG1"
    provider = sms_provider(" Twilio ", config)
    assert provider.messaging_service_sid == "MG1"
    assert provider._client.api.base_url == "http://127.0.0.1:9999"


@pytest.mark.parametrize("missing", ["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"])
def test_twilio_missing_credentials(missing):
    with pytest.raises(ValueError, match=missing):
        sms_provider("twilio", {**TWILIO, missing: ""})


def test_twilio_missing_sender():
    config = {k: v for k, v in TWILIO.items() if k != "TWILIO_FROM"}
    with pytest.raises(ValueError, match="TWILIO_FROM"):
        sms_provider("twilio", config)


def test_vonage_from_config():
    provider = sms_provider("vonage", VONAGE, "https://h/webhooks/vonage/status")
    assert isinstance(provider, VonageSms)
    assert provider.from_ == "PMI62"
    assert provider.status_callback_url == "https://h/webhooks/vonage/status"
    assert provider._client.http_client.rest_host == "127.0.0.1:8443"


@pytest.mark.parametrize("missing", ["VONAGE_API_KEY", "VONAGE_API_SECRET", "VONAGE_FROM"])
def test_vonage_missing_settings(missing):
    config = {k: v for k, v in VONAGE.items() if k != missing}
    with pytest.raises(ValueError, match=missing):
        sms_provider("vonage", config)


def test_simulators_from_config():
    sink = []
    sms = sms_provider(
        "simulator",
        {"SIMULATOR_LATENCY": "0", "SIMULATOR_FAILURE_RATE": "0.25"},
        receipt_sink=sink.append,
    )
    assert isinstance(sms, SimulatorSms)
    assert sms.failure_rate == 0.25 and sms.receipt_sink == sink.append
    email = email_provider("simulator", {})
    assert isinstance(email, SimulatorEmail)
    assert email.latency == 0.0 and email.failure_rate == 0.0
    with pytest.raises(ValueError, match="SIMULATOR_LATENCY"):
        sms_provider("simulator", {"SIMULATOR_LATENCY": "fast"})


def test_smtp_from_config():
    provider = email_provider(
        "smtp",
        {
            "SMTP_HOST": "mail.example",
            "SMTP_PORT": "587",
            "SMTP_USERNAME": "u",
            "SMTP_PASSWORD": "p",
            "SMTP_STARTTLS": "true",
            "MAIL_FROM": "Lapin <rappels@example.org>",
        },
    )
    assert isinstance(provider, SmtpEmail)
    assert (provider.host, provider.port, provider.username, provider.password) == (
        "mail.example",
        587,
        "u",
        "p",
    )
    assert provider.starttls is True
    assert provider.mail_from == "Lapin <rappels@example.org>"
    defaults = email_provider("smtp", {"SMTP_HOST": "mail.example"})
    assert (defaults.port, defaults.starttls, defaults.mail_from) == (25, False, "lapin@localhost")


def test_smtp_config_errors():
    with pytest.raises(ValueError, match="SMTP_HOST"):
        email_provider("smtp", {})
    with pytest.raises(ValueError, match="SMTP_PORT"):
        email_provider("smtp", {"SMTP_HOST": "h", "SMTP_PORT": "twenty-five"})
    with pytest.raises(ValueError, match="SMTP_STARTTLS"):
        email_provider("smtp", {"SMTP_HOST": "h", "SMTP_STARTTLS": "maybe"})
    with pytest.raises(ValueError, match="SMTP_PASSWORD"):
        email_provider("smtp", {"SMTP_HOST": "h", "SMTP_USERNAME": "u"})


def test_unknown_names():
    with pytest.raises(ValueError, match="ovh"):
        sms_provider("ovh", {})
    with pytest.raises(ValueError, match="sendgrid"):
        email_provider("sendgrid", {})


def test_package_reexports_the_public_api():
    for name in providers.__all__:
        assert getattr(providers, name) is not None
    assert providers.sms_provider is sms_provider
    assert providers.SENT == "sent"
