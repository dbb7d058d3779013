"""Receipts and inbound SMS replayed, reordered and duplicated at volume: the same final state.

300 SMS (Twilio and Vonage, some long Vonage SMS with one receipt per part,
some whose send the worker had not recorded yet) get their provider receipts,
and 100 usagers (plus unknown numbers) send SMS (ANNULER, STOP, OUI, free
text, long Vonage SMS in parts). Everything goes through the signed webhooks
(Vonage by query, form or JSON) and the jobs.

The script is played twice from an empty database: once in order, each call
once (the reference); once shuffled with a seeded random, each call delivered
1 to 3 times, with the send job's write-back ("the provider accepted it")
landing anywhere among its receipts. The final states must be equal: every
message's status, error code, segments, provider id and delivered/sent times,
the opt-outs, the rdvs cancelled, the inbound actions, and the replies, agent
alerts and fallback emails planned (each exactly once).

Order that genuinely matters is kept out of the script rather than papered
over: a usager who answers by SMS gets no failing receipt (a fallback email is
not planned for an rdv the usager has cancelled meanwhile), and each number
sends one kind of keyword (STOP then START is not START then STOP).
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import timedelta
from urllib.parse import urlencode

from sqlalchemy import select

from gateway.extensions import db
from gateway.models import DeliveryEvent, InboundSms, Message, Participation, Rdv, Usager
from providers import status as S
from providers.base import SendResult
from scheduler.jobs import _Outcome, _write_back
from tests.conftest import _empty_tables
from tests.factories import make_world

from ..webhooks.conftest import NOW, run_jobs, twilio_post, vonage_call, vonage_signed

SMS_COUNT = 300
INBOUND_USAGERS = 100  # the first 100 usagers answer by SMS
UNKNOWN_NUMBERS = 10
SEED = 20260601
RUN_JOBS_EVERY = 40  # calls between two runs of the queued jobs


def _phone(i: int) -> str:
    return f"+3362{i:07d}"


def _scene(world) -> None:
    """300 usagers, each with an upcoming rdv and its confirmation SMS (ids 1..300 in order)."""
    rows = []
    for i in range(SMS_COUNT):
        usager = Usager(
            organisation_id=world.org.id,
            first_name=f"U{i}",
            last_name="Test",
            phone=_phone(i),
            email=f"u{i}@example.org" if i % 3 == 0 else None,
            notify_email=False,
        )
        starts = NOW + timedelta(days=2, minutes=20 * i)
        rdv = Rdv(
            organisation_id=world.org.id,
            motif_id=world.motif.id,
            lieu_id=world.lieu.id,
            agent_id=world.agent.id,
            starts_at=starts,
            ends_at=starts + timedelta(minutes=20),
            duration_minutes=20,
        )
        rows.append((usager, rdv))
    db.session.add_all([x for pair in rows for x in pair])
    db.session.flush()
    for i, (usager, rdv) in enumerate(rows):
        provider, segments, recorded = _sms_facts(i)
        db.session.add(Participation(rdv_id=rdv.id, usager_id=usager.id))
        message = Message(
            organisation_id=world.org.id,
            rdv_id=rdv.id,
            usager_id=usager.id,
            channel="sms",
            kind="confirmation",
            recipient=usager.phone,
            send_at=NOW - timedelta(hours=1),
            body=f"RDV {i}",
            segments=segments,
            attempts=1,
            status=recorded,
        )
        if recorded == S.SENT:
            message.provider, message.provider_message_id = provider, _pmid(i, provider)
            message.sent_at = NOW - timedelta(hours=1)
        db.session.add(message)
    db.session.commit()


def _sms_facts(i: int) -> tuple[str, int, str]:
    """(provider, segments, status before any receipt) of SMS number ``i`` (message id i + 1)."""
    provider = "twilio" if i % 2 == 0 else "vonage"
    segments = (2 + i % 2 if i % 5 == 1 else 1) if provider == "vonage" else 1 + (i % 7 == 0)
    # The worker died (or is slow) before recording the provider's answer: receipts come first.
    if i % 10 == 3:
        recorded = S.SENDING
    elif (
        i % 10 == 8 and i >= INBOUND_USAGERS
    ):  # ANNULER would cancel a queued SMS: see the module doc
        recorded = S.QUEUED
    else:
        recorded = S.SENT
    return provider, segments, recorded


def _pmid(i: int, provider: str, part: int = 1) -> str:
    return f"SM{i:030d}{part:02d}" if provider == "twilio" else f"0A{i:012d}{part:02d}"


def _twilio_receipt(i, status, code=None):
    form = {
        "MessageSid": _pmid(i, "twilio"),
        "MessageStatus": status,
        "To": _phone(i),
        "AccountSid": "AC" + "0" * 32,
        "ApiVersion": "2010-04-01",
    }
    if code:
        form["ErrorCode"] = code
    return ("twilio_status", form, {"ref": str(i + 1)})


def _vonage_receipt(i, status, code="0", part=1):
    params = {
        "messageId": _pmid(i, "vonage", part),
        "status": status,
        "err-code": code,
        "client-ref": str(i + 1),
        "msisdn": _phone(i).lstrip("+"),
        "to": "Lapin",
        "message-timestamp": "2026-06-01 08:00:00",
    }
    return ("vonage_status", params, None)


TWILIO_SEQUENCES = [
    [("queued",), ("sent",), ("delivered",)],
    [("sent",), ("delivered",)],
    [("sent",), ("undelivered", "30003")],
    [("queued",), ("failed", "30007")],
    [("sent",), ("undelivered", "21610")],  # the recipient sent STOP to Twilio: opt-out
    [],  # no receipt at all
]
VONAGE_SEQUENCES = [
    [("accepted", "0"), ("delivered", "0")],
    [("buffered", "0"), ("expired", "3")],
    [("rejected", "6")],
    [("failed", "2")],
    [("unknown", "0"), ("delivered", "0")],
    [],
]


def _receipts(i: int, rng: random.Random) -> list[tuple]:
    provider, segments, _ = _sms_facts(i)
    answering = i < INBOUND_USAGERS
    if provider == "twilio":
        options = TWILIO_SEQUENCES[:2] + TWILIO_SEQUENCES[-1:] if answering else TWILIO_SEQUENCES
        return [_twilio_receipt(i, *step) for step in rng.choice(options)]
    if segments > 1:  # one receipt per part; sometimes a part fails
        failing = None if answering or rng.random() < 0.6 else rng.randint(1, segments)
        return [
            _vonage_receipt(
                i,
                "failed" if part == failing else "delivered",
                "8" if part == failing else "0",
                part=part,
            )
            for part in range(1, segments + 1)
        ]
    options = (
        [VONAGE_SEQUENCES[0], VONAGE_SEQUENCES[4], VONAGE_SEQUENCES[5]]
        if answering
        else VONAGE_SEQUENCES
    )
    return [_vonage_receipt(i, *step) for step in rng.choice(options)]


INBOUND_TEXTS = {
    "cancel": ["ANNULER", " annulé !", "Annulation", "annul"],
    "stop": ["STOP", "stop sms", "Arrêt"],
    "confirm": ["OUI", "ok", "Confirmer."],
    "free": ["Je serai en retard de 10 min", "Pouvez-vous me rappeler ?", "Merci 😊"],
}


def _inbound(i: int, n: int, phone: str, kind: str, rng: random.Random) -> list[tuple]:
    """The calls of one inbound SMS (several for a long Vonage SMS)."""
    text = rng.choice(INBOUND_TEXTS[kind])
    if rng.random() < 0.5:
        form = {
            "MessageSid": f"SMin{n:030d}",
            "From": phone,
            "To": "+33700000000",
            "Body": text,
            "AccountSid": "AC" + "0" * 32,
            "NumSegments": "1",
        }
        return [("twilio_inbound", form, None)]
    base = {
        "msisdn": phone.lstrip("+"),
        "to": "33700000000",
        "type": "unicode",
        "message-timestamp": "2026-06-01 08:00:00",
    }
    if len(text) < 4 or rng.random() < 0.5:
        return [("vonage_inbound", dict(base, messageId=f"IN{n:014d}", text=text), None)]
    cut = rng.randint(1, len(text) - 1)
    parts = [text[:cut], text[cut:]]
    return [
        (
            "vonage_inbound",
            dict(
                base,
                messageId=f"IN{n:012d}P{p}",
                text=part,
                concat="true",
                **{"concat-ref": str(n % 256), "concat-total": "2", "concat-part": str(p)},
            ),
            None,
        )
        for p, part in enumerate(parts, start=1)
    ]


def _script(rng: random.Random) -> tuple[list[list[tuple]], Counter]:
    """The calls grouped per story, in order.

    A story is one SMS's send and receipts, or one inbound SMS's parts.
    """
    stories, kinds = [], Counter()
    for i in range(SMS_COUNT):
        provider, segments, recorded = _sms_facts(i)
        story = []
        if recorded != S.SENT:
            story.append(("send_recorded", i, provider, segments))
        stories.append(story + _receipts(i, rng))
    n = 0
    for i in range(INBOUND_USAGERS):
        kind = ("cancel", "stop", "confirm", "free")[i % 4]
        for _ in range(2 if kind == "free" else 1):  # two free texts from some numbers
            n += 1
            kinds[kind] += 1
            stories.append(_inbound(i, n, _phone(i), kind, rng))
    for k in range(UNKNOWN_NUMBERS):
        n += 1
        kinds["unknown"] += 1
        stories.append(_inbound(0, n, f"+3369999{k:04d}", "cancel", rng))
    return stories, kinds


def _play(app, client, call, how_rng: random.Random) -> None:
    if call[0] == "send_recorded":
        _, i, provider, segments = call
        _write_back(
            [
                _Outcome(
                    i + 1,
                    "sent",
                    1,
                    provider=provider,
                    send_result=SendResult(provider, _pmid(i, provider), segments),
                )
            ],
            Counter(),
        )
        db.session.commit()
        return
    kind, params, query = call
    if kind.startswith("twilio"):
        path = "/webhooks/twilio/status" if kind == "twilio_status" else "/webhooks/twilio/inbound"
        response = twilio_post(client, path, params, query=urlencode(query) if query else "")
    else:
        path = "/webhooks/vonage/status" if kind == "vonage_status" else "/webhooks/vonage/inbound"
        signed = vonage_signed(params, nonce=f"n-{how_rng.random()}")
        response = vonage_call(client, path, signed, how_rng.choice(["get", "form", "json"]))
    db.session.rollback()
    assert response.status_code in (200, 204), (
        call,
        response.status_code,
        response.get_data(as_text=True),
    )


def _state() -> dict:
    """Everything the calls decide.

    Keyed so that it does not depend on the order rows were created.
    """
    messages = db.session.scalars(select(Message).order_by(Message.id)).all()
    originals = {m.id: m for m in messages if m.id <= SMS_COUNT}
    receipts_per_message = Counter(db.session.scalars(select(DeliveryEvent.message_id)).all())
    inbound = db.session.scalars(select(InboundSms)).all()
    return {
        "sms": {
            m.id: (
                m.status,
                m.error_code,
                m.segments,
                m.provider,
                m.provider_message_id,
                m.sent_at,
                m.delivered_at,
                m.attempts,
            )
            for m in originals.values()
        },
        "new_messages": Counter(
            (m.kind, m.channel, m.status, m.recipient, m.rdv_id, m.fallback_of_id)
            for m in messages
            if m.id > SMS_COUNT
        ),
        "rdvs": {
            r.id: (r.status, r.cancelled_via, r.confirmed_at is not None)
            for r in db.session.scalars(select(Rdv))
        },
        "opted_out": sorted(
            u.phone for u in db.session.scalars(select(Usager).where(Usager.sms_opted_out))
        ),
        "inbound": {
            (r.provider, r.provider_message_id): (
                r.action,
                r.rdv_id,
                r.usager_id,
                r.body,
                r.reply_message_id is not None,
            )
            for r in inbound
        },
        "unmatched_receipts": receipts_per_message.get(None, 0),
        "receipts_linked": {k: v > 0 for k, v in receipts_per_message.items() if k is not None},
    }


def _run(app, client, order: list[tuple], seed: int) -> dict:
    _empty_tables()
    _scene(make_world())
    how_rng = random.Random(seed)
    for n, call in enumerate(order, start=1):
        if call[0] == "send_recorded":
            run_jobs(app)  # receipts delivered before it are applied before it, in both runs
        _play(app, client, call, how_rng)
        if n % RUN_JOBS_EVERY == 0:
            run_jobs(app)
    run_jobs(app)
    state = _state()
    state["deliveries"] = len(order)
    return state


def test_receipts_and_inbound_replayed_reordered_duplicated_end_in_the_same_state(
    backend, signed_config, app, client, frozen
):
    stories, kinds = _script(random.Random(SEED))
    in_order = [call for story in stories for call in story]

    reference = _run(app, client, in_order, SEED)

    rng = random.Random(SEED + 1)
    shuffled = [
        call
        for call in in_order
        for _ in range(1 if call[0] == "send_recorded" else rng.randint(1, 3))
    ]
    rng.shuffle(shuffled)
    replayed = _run(app, client, shuffled, SEED + 2)

    # Every receipt delivery is kept for audit (SPEC: every webhook call), linked to its message.
    assert replayed["deliveries"] > 2 * len(in_order) - 100 and replayed["unmatched_receipts"] == 0
    for key in (
        "inbound",
        "sms",
        "new_messages",
        "rdvs",
        "opted_out",
        "inbound",
        "receipts_linked",
    ):
        assert replayed[key] == reference[key], key

    # The reference is the story it should be, so that the comparison means something.
    statuses = Counter(status for status, *_ in reference["sms"].values())
    assert (
        statuses[S.DELIVERED] >= 100 and statuses[S.UNDELIVERED] >= 20 and statuses[S.FAILED] >= 5
    ), statuses
    assert statuses[S.SENT] >= 20 and not statuses[S.SENDING] and not statuses[S.QUEUED], statuses
    actions = Counter(action for action, *_ in reference["inbound"].values())
    assert actions["cancelled"] == kinds["cancel"] and actions["opted_out"] == kinds["stop"]
    assert actions["confirmed"] == kinds["confirm"] and actions["forwarded"] == kinds["free"]
    assert actions["unknown_number"] == kinds["unknown"]
    new = reference["new_messages"]
    replies = sum(count for (kind, *_), count in new.items() if kind == "reply")
    assert (
        replies == kinds["cancel"] + kinds["stop"] + kinds["confirm"] + kinds["free"]
    )  # one per SMS acted on
    alerts = sum(count for (kind, channel, *_), count in new.items() if kind == "agent_alert")
    assert alerts == kinds["free"] + kinds["cancel"]
    fallbacks = Counter(
        fallback for (*_, fallback), count in new.items() for _ in range(count) if fallback
    )
    assert fallbacks and set(fallbacks.values()) == {1}  # planned once per failed SMS
    assert (
        sum(1 for status, via, _ in reference["rdvs"].values() if via == "sms") == kinds["cancel"]
    )
    assert len(reference["opted_out"]) >= kinds["stop"]
