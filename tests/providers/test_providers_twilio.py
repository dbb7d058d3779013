from http.client import RemoteDisconnected
from urllib.parse import parse_qs

import pytest
import requests
import responses
from twilio.request_validator import RequestValidator
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

from providers import status as st
from providers.base import OutboundSms, PermanentProviderError, TransientProviderError
from providers.twilio import (
    TwilioSms,
    map_status,
    parse_inbound,
    parse_status_callback,
    validate_signature,
    with_reference,
)

SID = "AC" + "0" * 32
TOKEN = "secret-token"
BASE = "http://127.0.0.1:9999"
URL = f"{BASE}/2010-04-01/Accounts/{SID}/Messages.json"
SMS = OutboundSms(reference="msg-42", to="+33612345678", body="RDV demain 14h30")


def _created(num_segments="1", status="queued"):
    return {
        "sid": "SM" + "a" * 32,
        "account_sid": SID,
        "to": "+33612345678",
        "from": "+33700000000",
        "body": "RDV demain 14h30",
        "status": status,
        "num_segments": num_segments,
        "error_code": None,
        "error_message": None,
    }


def _form(call):
    return {k: v[0] for k, v in parse_qs(call.request.body).items()}


def _provider(**kwargs):
    defaults = {
        "account_sid": SID,
        "auth_token": TOKEN,
        "from_number": "+33700000000",
        "api_base_url": BASE,
        "status_callback_url": "https://lapin.example/webhooks/twilio/status",
    }
    defaults.update(kwargs)
    return TwilioSms(**defaults)


@responses.activate
def test_send_posts_the_expected_form_to_the_configured_base_url(monkeypatch):
    # A region in the environment must not rewrite our base URL.
    monkeypatch.setenv("TWILIO_REGION", "ie1")
    responses.post(URL, json=_created("2"), status=201)

    result = _provider(timeout=3.5).send_sms(SMS)

    assert result.provider == "twilio"
    assert result.provider_message_id == "SM" + "a" * 32
    assert result.segments == 2
    assert result.raw["status"] == "queued"
    (call,) = responses.calls
    assert call.request.url == URL
    assert call.request.headers["Authorization"].startswith("Basic ")
    assert call.request.req_kwargs["timeout"] == 3.5
    form = _form(call)
    assert form == {
        "To": "+33612345678",
        "From": "+33700000000",
        "Body": "RDV demain 14h30",
        "StatusCallback": "https://lapin.example/webhooks/twilio/status?ref=msg-42",
    }


@responses.activate
def test_messaging_service_and_per_message_sender():
    responses.post(URL, json=_created(), status=201)
    _provider(from_number=None, messaging_service_sid="MG123", status_callback_url=None).send_sms(
        SMS
    )
    form = _form(responses.calls[0])
    assert form["MessagingServiceSid"] == "MG123"
    assert "From" not in form and "StatusCallback" not in form

    responses.post(URL, json=_created(), status=201)
    _provider().send_sms(OutboundSms(reference="r", to="+33612345678", body="x", sender="PMI62"))
    assert _form(responses.calls[1])["From"] == "PMI62"


def test_no_sender_at_all_is_a_configuration_error():
    with pytest.raises(TransientProviderError) as info:
        _provider(from_number=None).send_sms(SMS)
    assert info.value.code == "no_sender"


@responses.activate
def test_segments_zero_from_a_messaging_service_is_unknown():
    responses.post(URL, json=_created("0", status="accepted"), status=201)
    assert _provider().send_sms(SMS).segments is None


def test_callback_reference_is_url_encoded_and_appended_to_any_query():
    assert with_reference("https://h/s", "a b&c") == "https://h/s?ref=a+b%26c"
    assert with_reference("https://h/s?org=3", "m1") == "https://h/s?org=3&ref=m1"


def _error(status, code, message="boom"):
    return {"code": code, "message": message, "more_info": "", "status": status}


@pytest.mark.parametrize(
    ("http_status", "code", "kind", "opted_out"),
    [
        (400, 21211, PermanentProviderError, False),
        (400, 21610, PermanentProviderError, True),
        (400, 21614, PermanentProviderError, False),
        (400, 21612, PermanentProviderError, False),
        (400, 21408, PermanentProviderError, False),
        (400, 21606, PermanentProviderError, False),
        (400, 21617, PermanentProviderError, False),
        (400, 21999, PermanentProviderError, False),  # any other 4xx
        (429, 20429, TransientProviderError, False),
        (401, 20003, TransientProviderError, False),  # our credentials: fail over
        (500, 20500, TransientProviderError, False),
        (503, 20503, TransientProviderError, False),
    ],
)
@responses.activate
def test_error_classification(http_status, code, kind, opted_out):
    responses.post(URL, json=_error(http_status, code, "The message"), status=http_status)
    with pytest.raises(kind) as info:
        _provider().send_sms(SMS)
    assert info.value.code == str(code)
    assert info.value.opted_out is opted_out
    assert info.value.provider == "twilio"
    assert "The message" in info.value.message


@responses.activate
def test_non_json_gateway_error_is_transient():
    responses.post(URL, body="<html>Bad gateway</html>", status=502)
    with pytest.raises(TransientProviderError):
        _provider().send_sms(SMS)


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        # Never sent: connecting failed.
        (
            requests.ConnectionError(MaxRetryError(None, URL, NewConnectionError(None, "refused"))),
            "connection",
        ),
        # Sent, and the connection closed before the answer: Twilio may have taken it.
        (
            requests.ConnectionError(
                ProtocolError("Connection aborted.", RemoteDisconnected("closed"))
            ),
            "no_answer",
        ),
        (requests.ReadTimeout("t"), "timeout"),
    ],
)
@responses.activate
def test_network_failures_are_transient(exc, code):
    responses.post(URL, body=exc)
    with pytest.raises(TransientProviderError) as info:
        _provider().send_sms(SMS)
    assert info.value.code == code


def test_connection_refused_on_a_real_closed_port_is_transient(unused_tcp_port):
    provider = _provider(api_base_url=f"http://127.0.0.1:{unused_tcp_port}", timeout=2)
    with pytest.raises(TransientProviderError):
        provider.send_sms(SMS)


def test_pool_is_sized_for_many_threads():
    session = _provider()._client.http_client.session
    assert session.get_adapter("https://api.twilio.com")._pool_maxsize == 256
    assert session.get_adapter(BASE)._pool_maxsize == 256


def test_environment_is_read_once_when_the_adapter_is_built(monkeypatch, tmp_path):
    # Proxy and CA settings still come from the environment, read at construction
    # rather than on every message.
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "")
    http_client = _provider()._client.http_client
    assert http_client._settings["verify"] == str(bundle)
    assert http_client._settings["proxies"]["https"] == "http://proxy.example:3128"
    assert http_client.session.trust_env is False


@pytest.mark.parametrize(
    ("raw", "ours"),
    [
        ("accepted", st.SENT),
        ("queued", st.SENT),
        ("scheduled", st.SENT),
        ("sending", st.SENT),
        ("sent", st.SENT),
        ("delivered", st.DELIVERED),
        ("read", st.DELIVERED),
        ("undelivered", st.UNDELIVERED),
        ("failed", st.FAILED),
        ("canceled", st.FAILED),
        ("receiving", None),
        ("received", None),
        ("unknown", None),
        ("something-new", None),
        ("DELIVERED", st.DELIVERED),
    ],
)
def test_map_status(raw, ours):
    assert map_status(raw) == ours


def test_parse_status_callback_delivered():
    form = {
        "MessageSid": "SM1",
        "SmsSid": "SM1",
        "MessageStatus": "delivered",
        "SmsStatus": "delivered",
        "AccountSid": SID,
        "To": "+33612345678",
        "ApiVersion": "2010-04-01",
        "RawDlrDoneDate": "2411241430",
    }
    receipt = parse_status_callback(form, reference="msg-42")
    assert receipt.provider == "twilio"
    assert receipt.provider_message_id == "SM1"
    assert receipt.reference == "msg-42"
    assert receipt.raw_status == "delivered"
    assert receipt.status == st.DELIVERED
    assert receipt.error_code is None and receipt.error_message is None
    assert not receipt.opted_out
    assert receipt.raw == form


@pytest.mark.parametrize(
    ("code", "fragment"),
    [
        ("30003", "Unreachable"),
        ("30005", "Unknown destination"),
        ("30006", "Landline"),
        ("30007", "filtered"),
        ("30008", "Unknown error"),
        ("39999", "Twilio error 39999"),
    ],
)
def test_parse_status_callback_undelivered_with_error(code, fragment):
    receipt = parse_status_callback(
        {"SmsSid": "SM2", "SmsStatus": "undelivered", "ErrorCode": code}
    )
    assert receipt.provider_message_id == "SM2"
    assert receipt.status == st.UNDELIVERED
    assert receipt.error_code == code
    assert fragment in receipt.error_message
    assert receipt.reference is None


def test_parse_status_callback_opted_out():
    receipt = parse_status_callback(
        {"MessageSid": "SM3", "MessageStatus": "failed", "ErrorCode": "21610"}, "m"
    )
    assert receipt.status == st.FAILED
    assert receipt.opted_out


def test_parse_inbound():
    form = {
        "MessageSid": "SM9",
        "SmsSid": "SM9",
        "From": "+33612345678",
        "To": "+33700000000",
        "Body": " Annuler ",
        "NumSegments": "1",
        "NumMedia": "0",
        "SmsStatus": "received",
    }
    inbound = parse_inbound(form)
    assert inbound.provider == "twilio"
    assert inbound.provider_message_id == "SM9"
    assert inbound.from_number == "+33612345678"
    assert inbound.to_number == "+33700000000"
    assert inbound.body == " Annuler "  # trimming is the caller's business
    assert (inbound.concat_ref, inbound.part, inbound.parts) == (None, None, None)
    assert inbound.raw == form


VECTOR_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
VECTOR_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+14158675309",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
}


def test_signature_documented_vector():
    assert validate_signature("12345", VECTOR_URL, VECTOR_PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    assert not validate_signature(
        "12345", VECTOR_URL, VECTOR_PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B9="
    )
    assert not validate_signature(
        "12346", VECTOR_URL, VECTOR_PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    )
    tampered = dict(VECTOR_PARAMS, Digits="1235")
    assert not validate_signature("12345", VECTOR_URL, tampered, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")


@pytest.mark.parametrize("signature", [None, ""])
def test_missing_signature_is_refused(signature):
    assert not validate_signature("12345", VECTOR_URL, VECTOR_PARAMS, signature)


def test_signature_against_the_sdk_computation():
    url = "https://lapin.example/webhooks/twilio/status?ref=msg-42"
    form = {"MessageSid": "SM1", "MessageStatus": "delivered", "Body": "é & = +"}
    signature = RequestValidator(TOKEN).compute_signature(url, form)
    assert validate_signature(TOKEN, url, form, signature)
    # The query is signed too: a different ref must not pass.
    assert not validate_signature(TOKEN, url.replace("42", "43"), form, signature)


def test_constructor_needs_credentials():
    with pytest.raises(ValueError):
        TwilioSms("", TOKEN)
