import hashlib

import pytest
from vonage_http_client import Auth

from providers import status as st
from providers.base import OutboundSms, PermanentProviderError, TransientProviderError
from providers.vonage import (
    VonageSms,
    check_signature,
    compute_signature,
    map_status,
    parse_inbound,
    parse_receipt,
    signed_string,
)

CALLBACK = "https://lapin.example/webhooks/vonage/status"
SMS = OutboundSms(reference="msg-42", to="+33612345678", body="RDV demain à 14h30 {salle}")


def _ok(count="1", message_id="0A0000001234567B"):
    return {
        "message-count": count,
        "messages": [
            {
                "to": "33612345678",
                "message-id": f"{message_id}{i}" if i else message_id,
                "status": "0",
                "remaining-balance": "3.14",
                "message-price": "0.0333",
                "network": "20801",
                "client-ref": "msg-42",
            }
            for i in range(int(count))
        ],
    }


def _error(status, text):
    return {"message-count": "1", "messages": [{"status": status, "error-text": text}]}


def _provider(api, **kwargs):
    options = {
        "api_key": "abcd1234",
        "api_secret": "sekret",
        "from_": "PMI62",
        "rest_host": api.rest_host,
        "status_callback_url": CALLBACK,
    }
    options.update(kwargs)
    return VonageSms(**options)


def test_send_posts_the_expected_form_over_tls(fake_vonage):
    fake_vonage.respond_with(_ok())

    result = _provider(fake_vonage).send_sms(SMS)

    assert result.provider == "vonage"
    assert result.provider_message_id == "0A0000001234567B"
    assert result.segments == 1
    (request,) = fake_vonage.requests
    assert request.path == "/sms/json"
    assert request.headers["authorization"].startswith("Basic ")
    assert request.form == {
        "to": "33612345678",
        "from": "PMI62",
        "text": "RDV demain à 14h30 {salle}",
        "type": "text",
        "client-ref": "msg-42",
        "callback": CALLBACK,
    }
    assert "api_secret" not in request.form and "sig" not in request.form


def test_non_gsm_text_goes_unicode_and_multipart_counts_segments(fake_vonage):
    fake_vonage.respond_with(_ok(count="3"))
    sms = OutboundSms(reference="r1", to="+33612345678", body="Bonne fête 🎉", sender="LAPIN")
    result = _provider(fake_vonage, status_callback_url=None).send_sms(sms)
    assert result.segments == 3
    assert result.provider_message_id == "0A0000001234567B"
    form = fake_vonage.requests[0].form
    assert form["type"] == "unicode"
    assert form["from"] == "LAPIN"
    assert "callback" not in form


@pytest.mark.parametrize(
    ("status", "kind", "opted_out"),
    [
        ("1", TransientProviderError, False),
        ("5", TransientProviderError, False),
        ("2", PermanentProviderError, False),
        ("3", PermanentProviderError, False),
        ("6", PermanentProviderError, False),
        ("7", PermanentProviderError, True),
        ("12", PermanentProviderError, False),
        ("15", PermanentProviderError, False),
        ("29", PermanentProviderError, False),
        ("33", PermanentProviderError, False),
        ("34", PermanentProviderError, False),
        ("99", PermanentProviderError, False),  # any other non-zero
        ("4", TransientProviderError, False),  # our credentials: fail over
        ("9", TransientProviderError, False),  # our credit: fail over
    ],
)
def test_send_status_errors(fake_vonage, status, kind, opted_out):
    fake_vonage.respond_with(_error(status, f"Error text {status}"))
    with pytest.raises(kind) as info:
        _provider(fake_vonage).send_sms(SMS)
    assert info.value.code == status
    assert info.value.opted_out is opted_out
    assert info.value.message == f"Error text {status}"


def test_partial_failure_of_a_long_message(fake_vonage):
    body = _ok(count="2")
    body["messages"][1] = {"status": "1", "error-text": "Throttled"}
    fake_vonage.respond_with(body)
    with pytest.raises(TransientProviderError) as info:
        _provider(fake_vonage).send_sms(SMS)
    assert info.value.code == "1"


@pytest.mark.parametrize(
    ("http_status", "kind"),
    [
        (500, TransientProviderError),
        (502, TransientProviderError),
        (503, TransientProviderError),
        (429, TransientProviderError),
        (401, TransientProviderError),
        (400, PermanentProviderError),
    ],
)
def test_http_errors(fake_vonage, http_status, kind):
    fake_vonage.respond_with({"error": "nope"}, status=http_status)
    with pytest.raises(kind) as info:
        _provider(fake_vonage).send_sms(SMS)
    assert info.value.code == str(http_status)


def test_untrusted_certificate_is_refused(fake_vonage, monkeypatch):
    # Proves the fake really speaks TLS and that verification is on.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    fake_vonage.respond_with(_ok())
    with pytest.raises(TransientProviderError) as info:
        _provider(fake_vonage).send_sms(SMS)
    assert info.value.code == "connection"
    assert fake_vonage.requests == []


def test_closed_port_is_transient(unused_tcp_port):
    provider = VonageSms("k", "s", from_="PMI", rest_host=f"127.0.0.1:{unused_tcp_port}")
    with pytest.raises(TransientProviderError) as info:
        provider.send_sms(SMS)
    assert info.value.code == "connection"


def test_constructor_checks():
    with pytest.raises(ValueError, match="secret"):
        VonageSms("k", "")
    with pytest.raises(ValueError, match="100"):
        VonageSms("k", "s", status_callback_url="https://h/" + "x" * 100)


def test_no_sender_is_a_configuration_error(unused_tcp_port):
    provider = VonageSms("k", "s", rest_host=f"127.0.0.1:{unused_tcp_port}")
    with pytest.raises(TransientProviderError) as info:
        provider.send_sms(SMS)
    assert info.value.code == "no_sender"


@pytest.mark.parametrize(
    ("raw", "ours"),
    [
        ("delivered", st.DELIVERED),
        ("accepted", st.SENT),
        ("buffered", st.SENT),
        ("expired", st.UNDELIVERED),
        ("failed", st.UNDELIVERED),
        ("rejected", st.FAILED),
        ("unknown", None),
        ("brand-new", None),
    ],
)
def test_map_status(raw, ours):
    assert map_status(raw) == ours


RECEIPT = {
    "msisdn": "33612345678",
    "to": "PMI62",
    "network-code": "20801",
    "messageId": "0A0000001234567B",
    "price": "0.03330000",
    "status": "delivered",
    "scts": "2011241430",
    "err-code": "0",
    "client-ref": "msg-42",
    "message-timestamp": "2024-11-24 14:30:01",
}


def test_parse_receipt_delivered():
    receipt = parse_receipt(RECEIPT)
    assert receipt.provider == "vonage"
    assert receipt.provider_message_id == "0A0000001234567B"
    assert receipt.reference == "msg-42"
    assert receipt.raw_status == "delivered"
    assert receipt.status == st.DELIVERED
    assert receipt.error_code is None and receipt.error_message is None
    assert (receipt.part, receipt.parts) == (None, None)
    assert receipt.raw == RECEIPT


def test_parse_receipt_failure_and_parts_and_json_numbers():
    receipt = parse_receipt(
        dict(RECEIPT, status="failed", **{"err-code": 6, "concat-part": 2, "concat-total": "3"})
    )
    assert receipt.status == st.UNDELIVERED
    assert receipt.error_code == "6"
    assert "spam" in receipt.error_message.lower()
    assert (receipt.part, receipt.parts) == (2, 3)


def test_parse_receipt_unknown_changes_nothing_and_no_ref():
    receipt = parse_receipt({"messageId": "X", "status": "unknown"})
    assert receipt.status is None
    assert receipt.reference is None


def test_parse_inbound_single_and_concatenated():
    single = parse_inbound(
        {"msisdn": "33612345678", "to": "33700000000", "messageId": "M1", "text": "STOP"}
    )
    assert single.from_number == "+33612345678"
    assert single.to_number == "33700000000"
    assert single.body == "STOP"
    assert single.provider_message_id == "M1"
    assert (single.concat_ref, single.part, single.parts) == (None, None, None)

    part = parse_inbound(
        {
            "msisdn": "33612345678",
            "to": "33700000000",
            "messageId": "M2",
            "text": "premiere partie",
            "concat": "true",
            "concat-ref": "108",
            "concat-part": "1",
            "concat-total": "2",
        }
    )
    assert (part.concat_ref, part.part, part.parts) == ("108", 1, 2)


VECTOR_STRING = (
    "&api-key=abcd1234&client-ref=rem-42&err-code=0&message-timestamp=2020-01-01 12:00:00"
    "&messageId=0A0000001234567B&msisdn=447700900000&network-code=12345"
    "&nonce=ec11dd3e-1e7f-4db5-9467-82b02cd223b9&price=0.03330000&scts=2001011400"
    "&status=delivered&timestamp=1582650446&to=AcmeInc"
)
VECTOR = dict(pair.split("=", 1) for pair in VECTOR_STRING[1:].split("&"))
SHA256 = "a11c919a447d5dbc6195cf0c7a32f19459f5e64d71047b3c671cff57102f5b72"
MD5HASH = "9805159efc6c4db274c141de9577be7f"
NOW = 1582650446 + 10


def test_signed_string_matches_the_documented_one():
    assert signed_string(dict(VECTOR, sig="ignored")) == VECTOR_STRING
    # & and = inside values are replaced; keys sort by code point (upper first).
    assert signed_string({"b": "x&y=z", "B": "1", "a": "2"}) == "&B=1&a=2&b=x_y_z"


@pytest.mark.parametrize(("method", "sig"), [("sha256", SHA256), ("md5hash", MD5HASH)])
def test_documented_vectors(method, sig):
    assert check_signature(dict(VECTOR, sig=sig), "s3cr3t", method, now=NOW)
    assert check_signature(dict(VECTOR, sig=sig.upper()), "s3cr3t", method, now=NOW)
    assert not check_signature(dict(VECTOR, sig=sig), "wrong", method, now=NOW)
    assert not check_signature(dict(VECTOR, sig=sig, status="failed"), "s3cr3t", method, now=NOW)


def test_refuses_missing_signature_and_stale_or_missing_timestamp():
    signed = dict(VECTOR, sig=SHA256)
    assert not check_signature(VECTOR, "s3cr3t", "sha256", now=NOW)
    assert not check_signature(dict(VECTOR, sig=""), "s3cr3t", "sha256", now=NOW)
    assert not check_signature(signed, "s3cr3t", "sha256", now=1582650446 + 301)
    assert not check_signature(signed, "s3cr3t", "sha256", now=1582650446 - 301)
    assert check_signature(signed, "s3cr3t", "sha256", now=1582650446 + 300)
    assert check_signature(signed, "s3cr3t", "sha256", now=1582650446 + 3600, max_age=3601)
    # Without `now`, the vector is years old: stale.
    assert not check_signature(signed, "s3cr3t", "sha256")
    no_timestamp = {k: v for k, v in VECTOR.items() if k != "timestamp"}
    sig = compute_signature(no_timestamp, "s3cr3t", "sha256")
    assert not check_signature(dict(no_timestamp, sig=sig), "s3cr3t", "sha256", now=NOW)


def test_unknown_method_is_a_configuration_error():
    with pytest.raises(ValueError, match="sha384"):
        check_signature(dict(VECTOR, sig=SHA256), "s3cr3t", "sha384", now=NOW)


@pytest.mark.parametrize("method", ["md5", "sha1", "sha256", "sha512"])
def test_cross_check_with_the_sdk(method):
    params = dict(VECTOR, text="a&b=c é", timestamp="1700000000")
    sdk = Auth(api_key="abcd1234", signature_secret="s3cr3t", signature_method=method)
    sig = sdk.sign_params(dict(params))
    assert compute_signature(params, "s3cr3t", method) == sig
    assert check_signature(dict(params, sig=sig), "s3cr3t", method, now=1700000000)
    # And the SDK accepts what we compute.
    ours = compute_signature(params, "s3cr3t", method)
    assert sdk.check_signature(dict(params, sig=ours))


def test_md5hash_is_plain_md5_of_string_plus_secret():
    params = dict(VECTOR, timestamp="1700000000")
    expected = hashlib.md5((signed_string(params) + "k").encode()).hexdigest()
    assert compute_signature(params, "k", "md5hash") == expected


@pytest.mark.parametrize("timestamp", ["nan", "NaN", "inf", "-inf", "1e400"])
def test_an_unreadable_timestamp_is_refused_even_correctly_signed(timestamp):
    # NaN compares false with everything: it used to pass the freshness check.
    params = dict(VECTOR, timestamp=timestamp)
    assert not check_signature(
        dict(params, sig=compute_signature(params, "s3cr3t", "sha256")), "s3cr3t", "sha256", now=NOW
    )


def test_lone_surrogates_fail_the_signature_check_instead_of_crashing():
    params = dict(VECTOR, text="\ud800", sig="a\udfff")  # what a JSON body can carry
    assert not check_signature(params, "s3cr3t", "sha256", now=NOW)
    assert compute_signature(params, "s3cr3t", "md5hash") != compute_signature(
        VECTOR, "s3cr3t", "md5hash"
    )


@pytest.mark.parametrize(
    "value,expected",
    [
        ("2", 2),
        ("255", 255),
        ("0", None),
        ("-1", None),
        ("256", None),
        ("99999999999", None),
        ("²", None),
        ("١٢", None),
        ("1.5", None),
        ("", None),
        (" 3 ", 3),
    ],
)
def test_part_numbers_are_small_ascii_numbers_or_ignored(value, expected):
    params = {
        "messageId": "M",
        "msisdn": "33612345678",
        "text": "x",
        "concat": "true",
        "concat-ref": "1",
        "concat-part": value,
        "concat-total": value,
    }
    sms = parse_inbound(params)
    assert sms.part == expected and sms.parts == expected
    receipt = parse_receipt(
        {"messageId": "M", "status": "delivered", "concat-part": value, "concat-total": value}
    )
    assert receipt.part == expected and receipt.parts == expected
