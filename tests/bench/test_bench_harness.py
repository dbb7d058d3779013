"""The benchmark harness's own parts: receipts are signed as Twilio signs them, the fake Twilio
API runs in its own process as the benchmarks start it. No timing is asserted here.

The fake itself is tested in ``tests/reliability/test_reliability_fake_twilio.py``."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest

from bench.common import (
    TWILIO_ACCOUNT_SID,
    TWILIO_AUTH_TOKEN,
    TWILIO_FROM,
    Context,
    fake_twilio,
    fake_twilio_stats,
    percentile,
)
from bench.receipt_storm import callback_requests
from providers.base import OutboundSms
from providers.twilio import TwilioSms, parse_status_callback, validate_signature


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


def test_the_benchmarks_fake_twilio_process_answers_the_real_adapter(tmp_path):
    ctx = Context("postgresql+psycopg://unused/bench", "redis://unused", True, tmp_path)
    with fake_twilio(ctx, delay=0.0) as (base_url, _process):
        adapter = TwilioSms(
            TWILIO_ACCOUNT_SID,
            TWILIO_AUTH_TOKEN,
            from_number=TWILIO_FROM,
            api_base_url=base_url,
            status_callback_url="https://lapin.test/webhooks/twilio/status",
        )
        result = adapter.send_sms(OutboundSms(reference="42", to="+33612345678", body="RDV"))
        assert result.provider_message_id.startswith("SM")
        assert fake_twilio_stats(base_url) == {
            "requests": 2,
            "messages": 1,
            "distinct": 1,
            "errors": 0,
        }
