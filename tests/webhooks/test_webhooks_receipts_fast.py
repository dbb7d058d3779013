"""PostgreSQL's one-statement receipt path gives exactly what the general path gives.

``webhooks.receipts`` applies the common receipt (queued, sending, sent,
delivered; found by our reference) with one SQL statement on PostgreSQL.
Every (message status, receipt status) pair is applied to two identical
messages, once through each path, and the resulting rows are compared.
"""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from sqlalchemy import select

from gateway.extensions import db
from gateway.models import DeliveryEvent, Message, MessageStatusChange
from providers import status as S
from providers.base import Receipt
from webhooks import receipts

from .conftest import NOW, book_at

pytestmark = pytest.mark.usefixtures("frozen")

FAST = sorted(receipts._FAST_STATUSES)
PAIRS = list(itertools.product(S.ALL_STATUSES, FAST))


@pytest.fixture
def postgresql(app):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("the one-statement receipt path is PostgreSQL's: set TEST_DATABASE_URL")


def _message_like(template: Message, status: str, pmid: str | None) -> Message:
    message = Message(
        organisation_id=template.organisation_id,
        rdv_id=template.rdv_id,
        usager_id=template.usager_id,
        channel="sms",
        kind="reminder",
        status=status,
        send_at=NOW,
        recipient=template.recipient,
        body="x",
        provider="twilio" if pmid else None,
        provider_message_id=pmid,
        sent_at=NOW - timedelta(minutes=1) if status == S.SENT else None,
        error_code="30001" if status == S.FAILED else None,
    )
    db.session.add(message)
    return message


def _receipt(message: Message, status: str, pmid: str | None, error_code: str | None) -> Receipt:
    return Receipt(
        provider="twilio",
        provider_message_id=pmid,
        status=status,
        raw_status=f"raw-{status}",
        error_code=error_code,
        error_message=None,
        reference=str(message.id),
        raw={"MessageStatus": status, "ref": str(message.id)},
    )


def _state(message: Message) -> dict:
    db.session.expire_all()
    row = db.session.get(Message, message.id)
    events = db.session.scalars(
        select(DeliveryEvent).where(DeliveryEvent.message_id == row.id)
    ).all()
    changes = db.session.scalars(
        select(MessageStatusChange)
        .where(MessageStatusChange.message_id == row.id)
        .order_by(MessageStatusChange.id)
    ).all()
    raw_ref = lambda raw: {k: v for k, v in raw.items() if k != "ref"}
    return {
        "message": {
            c: getattr(row, c)
            for c in (
                "status",
                "status_changed_at",
                "sent_at",
                "delivered_at",
                "error_code",
                "provider",
                "provider_message_id",
            )
        },
        "events": [
            (
                e.provider,
                e.provider_message_id,
                e.raw_status,
                e.mapped_status,
                e.error_code,
                e.applied,
                raw_ref(e.raw),
                e.received_at,
            )
            for e in events
        ],
        "changes": [(c.status, c.at, c.detail) for c in changes],
    }


@pytest.mark.parametrize("with_pmid", [True, False], ids=["pmid-known", "pmid-unknown"])
def test_fast_path_equals_general_path_for_every_status_pair(
    postgresql, app, world, monkeypatch, with_pmid
):
    rdv = book_at(world, NOW.replace(day=5))
    template = db.session.scalar(
        select(Message).where(Message.rdv_id == rdv.id, Message.channel == "sms")
    )
    pairs = []
    for n, (current, incoming) in enumerate(PAIRS):
        pmid = f"SM{n:032d}" if with_pmid else None
        pairs.append(
            (
                _message_like(template, current, pmid),
                _message_like(template, current, pmid),
                current,
                incoming,
                n,
            )
        )
    db.session.commit()

    general_calls = []
    real_find = receipts.find_message
    monkeypatch.setattr(receipts, "find_message", lambda r: general_calls.append(r) or real_find(r))
    for fast_one, general_one, current, incoming, n in pairs:
        code = "30003" if n % 2 else None
        new_pmid = f"SMnew{n:029d}"
        changed_fast = receipts.apply_receipt(_receipt(fast_one, incoming, new_pmid, code), now=NOW)
        assert general_calls == [], "the fast path fell back to the general one"
        monkeypatch.setattr(receipts, "_fast_path_applies", lambda r: False)
        changed_general = receipts.apply_receipt(
            _receipt(general_one, incoming, new_pmid, code), now=NOW
        )
        monkeypatch.undo()
        monkeypatch.setattr(
            receipts, "find_message", lambda r: general_calls.append(r) or real_find(r)
        )
        assert general_calls, "the general path was not taken"
        general_calls.clear()
        assert changed_fast == changed_general == S.can_transition(current, incoming)
        assert _state(fast_one) == _state(general_one), (current, incoming)


def test_fast_path_unknown_reference_is_recorded_once_unmatched(postgresql, app):
    receipt = Receipt(
        provider="twilio",
        provider_message_id="SM" + "9" * 32,
        status=S.DELIVERED,
        raw_status="delivered",
        error_code=None,
        error_message=None,
        reference="999999",
        raw={"ref": "999999"},
    )
    assert receipts._fast_path_applies(receipt)
    assert receipts.apply_receipt(receipt, now=NOW) is False
    [event] = db.session.scalars(select(DeliveryEvent)).all()
    assert event.message_id is None and event.applied is False and event.raw == {"ref": "999999"}


def test_only_follow_up_free_receipts_take_the_fast_path(postgresql, app):
    base = {
        "provider": "twilio",
        "provider_message_id": "SM1",
        "raw_status": "x",
        "reference": "12",
        "raw": {},
        "error_code": None,
        "error_message": None,
    }
    assert receipts._fast_path_applies(Receipt(status=S.DELIVERED, **base))
    for status in (S.UNDELIVERED, S.FAILED):  # the fallback email is planned by the general path
        assert not receipts._fast_path_applies(Receipt(status=status, **base))
    assert not receipts._fast_path_applies(Receipt(status=S.SENT, opted_out=True, **base))
    assert not receipts._fast_path_applies(
        Receipt(status=S.DELIVERED, **(base | {"reference": None}))
    )
    # A Vonage part of a long SMS is counted against the other parts: general path.
    assert not receipts._fast_path_applies(
        Receipt(status=S.DELIVERED, **(base | {"provider": "vonage"}))
    )
