"""The rdv page's timeline: messages with every status, receipts, replies, the cancellation."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine

from gateway.booking import book, cancel
from gateway.extensions import db
from gateway.models import DeliveryEvent, InboundSms
from scheduler.transitions import transition

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 6, 1, 10, 0, tzinfo=PARIS)


def _book(world):
    """Léa Dupont's rdv on Friday 5 June 2026 at 10:00."""
    return book(
        world.org,
        motif_id=world.motif.id,
        lieu_id=world.lieu.id,
        agent_id=world.agent.id,
        usager_ids=[world.usager.id],
        starts_at=datetime(2026, 6, 5, 10, 0, tzinfo=PARIS),
    )


def _receipt(sms, provider_id: str, status: str, *, applied: bool, at: datetime) -> None:
    """A Twilio receipt of ``sms`` saying ``status``."""
    db.session.add(
        DeliveryEvent(
            message=sms,
            provider="twilio",
            provider_message_id=provider_id,
            raw_status=status,
            mapped_status=status,
            applied=applied,
            received_at=at,
            raw={},
        )
    )


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


def test_timeline_lists_everything_in_time_order(login, world):
    rdv = _book(world)
    sms = next(m for m in rdv.messages if m.channel == "sms" and m.kind == "confirmation")
    t = NOW.astimezone(PARIS)
    transition(sms, "queued", at=t + timedelta(seconds=1))
    transition(
        sms,
        "sent",
        at=t + timedelta(seconds=2),
        provider="twilio",
        provider_message_id="SM123",
        segments=2,
    )
    _receipt(sms, "SM123", "delivered", applied=True, at=t + timedelta(seconds=30))
    transition(sms, "delivered", at=t + timedelta(seconds=30))
    _receipt(sms, "SM123", "sent", applied=False, at=t + timedelta(seconds=40))
    db.session.add(
        InboundSms(
            organisation_id=world.org.id,
            provider="twilio",
            provider_message_id="SMin1",
            from_number=world.usager.phone,
            body="Je serai en retard",
            rdv_id=rdv.id,
            usager_id=world.usager.id,
            action="forwarded",
            raw={},
            received_at=t + timedelta(minutes=5),
        )
    )
    db.session.commit()
    cancel(rdv, via="agent", agent=world.agent, now=t + timedelta(minutes=10))

    page = login.get(f"/rdvs/{rdv.id}").get_data(as_text=True)
    timeline = page[page.index('id="timeline"') : page.index('id="messages"')]
    expected_in_order = [
        "Rendez-vous pris",
        "Programmé",
        "En file",
        "Envoyé",
        "via twilio, 2 segments",
        "Reçu",
        "accusé de réception twilio : <code>delivered</code>",
        "Accusé de réception twilio",
        "(sans effet : statut déjà atteint)",
        "« Je serai en retard »",
        "transmis à l&#39;agent",
        "Rendez-vous annulé</strong> par un agent (Anne Martin)",
    ]
    positions = [timeline.find(text) for text in expected_in_order]
    assert -1 not in positions, dict(zip(expected_in_order, positions, strict=True))
    assert positions == sorted(positions)
    assert "01/06/2026 10:00:30" in timeline  # times in the organisation's zone, to the second
    # The reminder planned at booking was cancelled with the rdv, and it says so.
    assert timeline.count("Annulé") >= 1
    messages = page[page.index('id="messages"') :]
    assert "SM123" in messages and "Texte" in messages


def test_failed_message_shows_its_error_on_the_timeline(login, world):
    rdv = _book(world)
    sms = next(m for m in rdv.messages if m.channel == "sms")
    transition(sms, "failed", detail="Numéro invalide (21211)", error_code="21211")
    db.session.commit()
    page = login.get(f"/rdvs/{rdv.id}").get_data(as_text=True)
    assert "Échec" in page and "Numéro invalide (21211)" in page


def test_usager_step_offers_the_usagers_of_the_latest_bookings(login, world):
    slot = (
        f"/rdvs/new?motif_id={world.motif.id}&lieu_id={world.lieu.id}&agent_id={world.agent.id}"
        "&starts_at=2026-06-05T10:00:00%2B02:00"
    )
    assert "Réserver pour" not in login.get(slot).get_data(as_text=True)
    book(
        world.org,
        motif_id=world.motif.id,
        lieu_id=world.lieu.id,
        agent_id=world.agent.id,
        usager_ids=[world.usager.id],
        starts_at=datetime(2026, 6, 4, 10, 0, tzinfo=PARIS),
    )
    page = login.get(slot).get_data(as_text=True)
    assert "Usagers des derniers rendez-vous" in page and "Réserver pour Léa Dupont" in page


def _li_containing(timeline: str, text: str) -> list[str]:
    items = timeline.split("<li")[1:]
    return [item for item in items if text in item]


def test_a_receipt_and_the_status_it_caused_are_one_line(login, world):
    """Before: "Reçu" and "Accusé de réception … delivered" were two lines for one event."""
    rdv = _book(world)
    sms = next(m for m in rdv.messages if m.channel == "sms" and m.kind == "confirmation")
    t = NOW.astimezone(PARIS)
    transition(sms, "sent", at=t, provider="twilio", provider_message_id="SM9")
    _receipt(sms, "SM9", "delivered", applied=True, at=t + timedelta(seconds=5))
    transition(sms, "delivered", at=t + timedelta(seconds=5))
    db.session.commit()
    page = login.get(f"/rdvs/{rdv.id}").get_data(as_text=True)
    timeline = page[page.index('id="timeline"') : page.index('id="messages"')]
    assert len(_li_containing(timeline, "delivered")) == 1
    assert "Reçu" in _li_containing(timeline, "delivered")[0]
    assert "Accusé de réception" not in timeline


def test_message_bodies_are_not_in_a_header_cell(login, world):
    """Before: each body sat in the row's <th>, so browsers showed it in bold."""
    rdv = _book(world)
    page = login.get(f"/rdvs/{rdv.id}").get_data(as_text=True)
    messages = page[page.index('id="messages"') :]
    body = rdv.messages[0].body.split("\n")[0][:30]
    for cell in messages.split("<th")[1:]:
        assert body not in cell.split("</th>")[0]
    assert body in messages
