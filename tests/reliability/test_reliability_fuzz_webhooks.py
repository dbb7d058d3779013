"""Fuzzing the provider webhooks: whatever the parameters, never a 500; a refusal writes nothing.

For each of the four routes, hypothesis draws every field the parsers read
(absent, realistic, or hostile: any Unicode, NUL, 5 000+ characters, numbers
and nested values in JSON, lone surrogates where JSON can carry them) and
sends it correctly signed, or unsigned, or forged (changed after signing), or
with a stale or unreadable Vonage timestamp. Checked for each request:

* never a 5xx; a bad signature or timestamp answers 403 and writes nothing,
  and any other refusal (400) writes nothing either (``WriteGuard``);
* an accepted receipt stores exactly one delivery event, an accepted inbound
  SMS at most one row, and the queued job that applies it does not fail.

The keyword parser is fuzzed apart: every spelling of a keyword (case,
accents, spaces, punctuation around it) is recognised, and no text crashes it.
"""

from __future__ import annotations

import logging
import time
from urllib.parse import urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from providers import vonage
from webhooks.inbound import CANCEL, CONFIRM, KEYWORDS, START, STOP, fold, keyword

from ..webhooks.conftest import (
    BASE,
    NOW,
    TWILIO_TOKEN,
    VONAGE_SECRET,
    book_at,
    mark_sent,
    run_jobs,
    sms_of,
    vonage_call,
)
from .helpers import WriteGuard, committed_counts
from .strategies import any_text, form_text, huge_ints, json_values

# Form fields (UTF-8 on the wire: no lone surrogates) and JSON values (anything JSON can carry).
long_form_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=5000, max_size=5200
)
form_values = (
    form_text | long_form_text | st.sampled_from(["\x00", "a\x00b", "é" * 300, "+33612345678"])
)
json_field_values = (
    json_values
    | huge_ints
    | st.text(min_size=5000, max_size=5200)
    | st.sampled_from(["\ud800", "a\udfffb", "\x00", [], {}, {"a": [1, {"b": None}]}])
)

TWILIO_STATUS_FIELDS = {
    "MessageSid": ["SM" + "a" * 32, "SM" + "f" * 32, ""],
    "SmsSid": ["SM" + "a" * 32],
    "MessageStatus": ["queued", "sent", "delivered", "undelivered", "failed", "read", ""],
    "SmsStatus": ["delivered"],
    "ErrorCode": ["0", "21610", "30003", "99999", "-1"],
    "To": ["+33612345678"],
    "From": ["+33700000000"],
    "AccountSid": ["AC" + "0" * 32],
}
TWILIO_INBOUND_FIELDS = {
    "MessageSid": ["SM" + "1" * 32, "SM" + "2" * 32],
    "SmsMessageSid": ["SM" + "3" * 32],
    "SmsSid": ["SM4"],
    "From": ["+33612345678", "33612345678", "0612345678", "+33699999999"],
    "To": ["+33700000000"],
    "Body": ["ANNULER", " annulé ! ", "STOP", "OUI", "START", "Je serai en retard", ""],
    "NumSegments": ["1", "2"],
}
VONAGE_STATUS_FIELDS = {
    "messageId": ["0A0000001234567B", "0B"],
    "message-id": ["0A0000001234567B"],
    "status": ["delivered", "accepted", "buffered", "expired", "failed", "rejected", "unknown", ""],
    "err-code": ["0", "2", "99", "-1"],
    "client-ref": ["1", "2", "²", "١٢", "99999999999999999999", "-1", "0"],
    "msisdn": ["33612345678"],
    "to": ["Lapin"],
    "concat-part": ["1", "2", "0", "-5", "99999999999"],
    "concat-total": ["2", "3", "0", "99999999999"],
    "message-timestamp": ["2026-06-01 08:00:00", "garbage"],
    "scts": ["2606011000"],
    "price": ["0.0333"],
}
VONAGE_INBOUND_FIELDS = {
    "messageId": ["IN1", "IN2", "IN3"],
    "msisdn": ["33612345678", "+33612345678", "33699999999", ""],
    "to": ["33700000000"],
    "text": ["ANNULER", "AN", "NULER", "STOP", "OUI", "Merci 😊", ""],
    "type": ["text", "unicode"],
    "keyword": ["ANNULER"],
    "concat": ["true", "false", "TRUE"],
    "concat-ref": ["7", "8"],
    "concat-part": ["1", "2", "0", "-1", "99999999999"],
    "concat-total": ["1", "2", "0", "-3", "99999999999"],
    "message-timestamp": ["2026-06-01 08:00:00"],
}
FRESH = "fresh"
BAD_TIMESTAMPS = [
    "nan",
    "NaN",
    "inf",
    "-inf",
    "1e400",
    "",
    "x",
    "0",
    str(int(NOW.timestamp()) - 3600),
    str(int(NOW.timestamp()) + 3600),
]


@pytest.fixture
def hooks(signed_config, app, client, world, frozen, caplog):
    """Two sent SMS to aim receipts at (Twilio, Vonage), an rdv for inbound SMS, a write guard."""
    mark_sent(
        sms_of(book_at(world, NOW.replace(day=5))),
        provider="twilio",
        provider_message_id="SM" + "a" * 32,
    )
    mark_sent(
        sms_of(book_at(world, NOW.replace(day=5, hour=14))),
        provider="vonage",
        provider_message_id="0A0000001234567B",
    )
    caplog.set_level(logging.ERROR, logger="scheduler.queue")
    return client, WriteGuard(), caplog


@st.composite
def _fields(draw, known: dict, values) -> dict:
    """Each field absent, one of its realistic values, or anything."""
    fields = {}
    for name, examples in known.items():
        choice = draw(st.integers(0, 3))
        if choice == 1:
            fields[name] = draw(st.sampled_from(examples))
        elif choice >= 2:
            fields[name] = draw(values)
    return fields


def _check(hooks, response, what: str, table: str, accepted_rows: range, must_refuse: bool) -> None:
    client, guard, caplog = hooks
    before = dict(guard.baseline)
    guard.check(response, what)  # never 5xx; a 4xx wrote nothing
    if must_refuse:
        assert response.status_code == 403, f"{what}: {response.status_code}"
    if response.status_code < 300:
        added = guard.baseline[table] - before[table]
        assert added in accepted_rows, f"{what}: {added} rows added to {table}"
        caplog.clear()
        run_jobs(client.application)
        failures = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
        assert not failures, f"{what}: the job failed: {failures}\n{caplog.text[-3000:]}"
        guard.baseline = committed_counts()  # the job's writes are the new baseline


def _twilio(hooks, path: str, form: dict, query: dict, variant: str, table: str, rows: range):
    client = hooks[0]
    query_string = urlencode(query)
    url = f"{BASE}{path}" + (f"?{query_string}" if query_string else "")
    headers = {}
    if variant != "unsigned":
        token = "not-our-token" if variant == "wrong token" else TWILIO_TOKEN
        headers["X-Twilio-Signature"] = RequestValidator(token).compute_signature(url, form)
    sent = dict(form, Body="tampered") if variant == "forged" else form
    response = client.post(
        path + (f"?{query_string}" if query_string else ""), data=sent, headers=headers
    )
    _check(
        hooks,
        response,
        f"{variant} POST {path}?{query_string} {form!r}",
        table,
        rows,
        must_refuse=variant != "signed",
    )


@given(data=st.data())
def test_twilio_status_never_500(hooks, data):
    form = data.draw(_fields(TWILIO_STATUS_FIELDS, form_values))
    query = data.draw(
        st.one_of(
            st.just({}),
            st.fixed_dictionaries(
                {
                    "ref": st.sampled_from(
                        ["1", "2", "²", "١٢", "-1", "99999999999999999999", "1" * 5000]
                    )
                    | form_values
                }
            ),
        )
    )
    variant = data.draw(
        st.sampled_from(["signed", "signed", "signed", "unsigned", "forged", "wrong token"])
    )
    _twilio(hooks, "/webhooks/twilio/status", form, query, variant, "delivery_events", range(1, 2))


@given(data=st.data())
def test_twilio_inbound_never_500(hooks, data):
    form = data.draw(_fields(TWILIO_INBOUND_FIELDS, form_values))
    variant = data.draw(
        st.sampled_from(["signed", "signed", "signed", "unsigned", "forged", "wrong token"])
    )
    _twilio(hooks, "/webhooks/twilio/inbound", form, {}, variant, "inbound_sms", range(2))


def _vonage(hooks, data, path: str, known: dict, table: str, rows: range):
    client = hooks[0]
    how = data.draw(st.sampled_from(["get", "form", "json", "json"]))
    params = data.draw(_fields(known, json_field_values if how == "json" else form_values))
    variant = data.draw(
        st.sampled_from(["signed", "signed", "signed", "unsigned", "forged", "timestamp"])
    )
    now = int(time.time())
    params["nonce"] = data.draw(st.sampled_from(["n-1", "ec11dd3e-1e7f-4db5-9467-82b02cd223b9"]))
    if variant == "timestamp":
        params["timestamp"] = data.draw(
            st.sampled_from(BAD_TIMESTAMPS)
            | (any_text if how == "json" else form_text).filter(
                lambda t: t.strip() not in (str(now), f"{now}.0")
            )
        )
    else:
        params["timestamp"] = data.draw(
            st.sampled_from([str(now), f"{now}.0"] + ([now, float(now)] if how == "json" else []))
        )
    if variant != "unsigned":
        try:
            params["sig"] = vonage.compute_signature(params, VONAGE_SECRET, "sha256")
        except UnicodeEncodeError:  # a lone surrogate: nobody can sign it, send a made-up signature
            params["sig"] = "0" * 64
            variant = "forged"
    if variant == "forged":
        params["status" if "status" in known else "text"] = "tampered"
    body = params
    if how == "json":
        body = data.draw(
            st.one_of(st.just(params), st.just(params), json_values)
        )  # sometimes not an object
        if body is not params:
            variant = "not an object"
    response = vonage_call(client, path, body, how)
    what = f"{variant} {how} {path} {params!r}"
    if variant == "not an object":
        hooks[1].check(response, what)
        assert response.status_code in (400, 403), what
        return
    _check(hooks, response, what, table, rows, must_refuse=variant != "signed")


@given(data=st.data())
def test_vonage_status_never_500(hooks, data):
    _vonage(
        hooks, data, "/webhooks/vonage/status", VONAGE_STATUS_FIELDS, "delivery_events", range(1, 2)
    )


@given(data=st.data())
def test_vonage_inbound_never_500(hooks, data):
    _vonage(hooks, data, "/webhooks/vonage/inbound", VONAGE_INBOUND_FIELDS, "inbound_sms", range(2))


# --- the keyword parser ---

KINDS = {CANCEL, CONFIRM, STOP, START}
ACCENTED = {
    "A": "AÀÂàâa",
    "E": "EÉÈÊËéèêëe",
    "I": "IÎÏîïi",
    "O": "OÔôo",
    "U": "UÙÛùûu",
    "C": "CÇçc",
}
# No "?": a keyword asked as a question is free text (tested below).
AROUND = st.text(alphabet=" \t\n\u00a0\u2009.,;:!…-'\"«»()*", max_size=6)


@st.composite
def _spelling(draw, word: str) -> str:
    letters = []
    for ch in word:
        if ch == " ":
            letters.append(draw(st.text(alphabet=" \t\u00a0.-_,", min_size=1, max_size=4)))
        else:
            letters.append(draw(st.sampled_from(ACCENTED.get(ch, ch + ch.lower()))))
    return draw(AROUND) + "".join(letters) + draw(AROUND)


@given(data=st.data())
def test_every_spelling_of_a_keyword_is_recognised(data):
    word = data.draw(st.sampled_from(sorted(KEYWORDS)))
    text = data.draw(_spelling(word))
    assert keyword(text) == KEYWORDS[word], (word, text)


@given(data=st.data())
def test_a_keyword_asked_as_a_question_is_free_text(data):
    word = data.draw(st.sampled_from(sorted(KEYWORDS)))
    text = data.draw(_spelling(word)) + data.draw(st.sampled_from(["?", " ?", " ? ", "??"]))
    assert keyword(text) is None, text


@given(text=any_text | form_text)
def test_any_text_folds_without_crashing(text):
    folded = fold(text)
    assert fold(folded) == folded and folded == folded.strip()
    assert keyword(text) in KINDS | {None}
