"""The benchmark harness's own parts: the fake Twilio API speaks Twilio to the real adapter,
receipts are signed as Twilio signs them. No timing is asserted here."""

from __future__ import annotations

import http.client
import json
from urllib.parse import parse_qsl

import pytest

from bench import fake_twilio
from bench.common import TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_FROM, percentile
from bench.receipt_storm import callback_requests
from providers.base import OutboundSms
from providers.twilio import TwilioSms, parse_status_callback, validate_signature


def _adapter(base_url: str, account_sid: str = TWILIO_ACCOUNT_SID) -> TwilioSms:
    return TwilioSms(
        account_sid,
        TWILIO_AUTH_TOKEN,
        from_number=TWILIO_FROM,
        api_base_url=base_url,
        status_callback_url="https://lapin.test/webhooks/twilio/status",
    )


def test_fake_twilio_answers_the_real_adapter_like_twilio():
    with fake_twilio.in_thread() as (base_url, fake):
        result = _adapter(base_url).send_sms(
            OutboundSms(to="+33612345678", body="RDV PMI mar. 24/11 14h30", reference="42")
        )
        assert result.provider == "twilio"
        assert result.provider_message_id.startswith("SM") and len(result.provider_message_id) == 34
        assert result.segments == 1
        assert fake_twilio.stats(base_url) == {
            "requests": 2,
            "messages": 1,
            "distinct": 1,
            "errors": 0,
        }
        assert fake.stats.callbacks == {"https://lapin.test/webhooks/twilio/status?ref=42"}


def test_fake_twilio_refuses_unauthenticated_sends_with_a_twilio_error():
    with fake_twilio.in_thread() as (base_url, fake):
        conn = http.client.HTTPConnection(base_url.removeprefix("http://"), timeout=10)
        conn.request(
            "POST",
            f"/2010-04-01/Accounts/{TWILIO_ACCOUNT_SID}/Messages.json",
            body="To=%2B33612345678&From=%2B33700000001&Body=x",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        response = conn.getresponse()
        payload = json.loads(response.read())
        conn.close()
        assert response.status == 401
        assert payload["code"] == 20003 and payload["status"] == 401
        assert fake.stats.messages == 0 and fake.stats.errors == 1


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
def test_fake_twilio_counts_segments_like_twilio(body, segments):
    assert fake_twilio.num_segments(body) == segments


def test_callbacks_are_signed_as_twilio_signs_them():
    base = "http://127.0.0.1:5123"
    raw = callback_requests([(7, "SM" + "a" * 32, "+33612345678")], base)[0]
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    path = lines[0].split(" ")[1]
    headers = dict(line.split(": ", 1) for line in lines[1:])
    form = dict(parse_qsl(body.decode()))
    assert path == "/webhooks/twilio/status?ref=7"
    assert int(headers["Content-Length"]) == len(body)
    assert validate_signature(TWILIO_AUTH_TOKEN, base + path, form, headers["X-Twilio-Signature"])
    receipt = parse_status_callback(form, reference="7")
    assert (receipt.status, receipt.provider_message_id) == ("delivered", "SM" + "a" * 32)


def test_percentile_interpolates_between_ranks():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile([3.0], 95) == 3.0
