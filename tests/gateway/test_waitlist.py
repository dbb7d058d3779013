"""The waiting list: a freed slot offered to the right usager, taken once, within the limits."""

from __future__ import annotations

import html
import re
import threading
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import func, select

from gateway import create_app
from gateway.booking import book, cancel, move
from gateway.extensions import db
from gateway.models import FreedSlot, Message, Rdv, WaitlistOffer
from gateway.waitlist import (
    SlotTaken,
    dispatch_freed_slots,
    find_offer,
    offer_slot,
    take_offer,
)
from providers import status as S
from scheduler.dispatch import dispatch_due
from scheduler.queue import run_pending

from ..factories import make_usager

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2030, 3, 4, 10, 0, tzinfo=PARIS)  # a Monday morning


def day(n: int, hour: int, minute: int = 0) -> datetime:
    """``n`` days after NOW's date, at hour:minute Paris time."""
    d = NOW.date() + timedelta(days=n)
    return datetime(d.year, d.month, d.day, hour, minute, tzinfo=PARIS)


def _book(world, usager, starts, now=NOW, waitlist=False, agent=None, lieu=None):
    return book(
        world.org,
        motif_id=world.motif.id,
        lieu_id=(lieu or world.lieu).id,
        agent_id=(agent or world.agent).id,
        usager_ids=[usager.id],
        starts_at=starts,
        now=now,
        waitlist=waitlist,
    )


def _usager(world, n: int, **kwargs):
    return make_usager(world.org, first=f"U{n}", last="Attente", phone=f"+3361000{n:04d}", **kwargs)


def _offer_due(app, now) -> int:
    """What the scheduler and the worker do at ``now``: queue due freed slots, run the jobs."""
    with time_machine.travel(now, tick=False):
        queued = dispatch_freed_slots(now)
        run_pending(app)
    db.session.expire_all()
    return queued


def _offers(**filters) -> list[WaitlistOffer]:
    db.session.expire_all()
    query = select(WaitlistOffer).order_by(WaitlistOffer.id)
    for key, value in filters.items():
        query = query.where(getattr(WaitlistOffer, key) == value)
    return list(db.session.scalars(query))


@pytest.fixture
def waiting(world):
    """Usager 1 waits (rdv in 10 days), usager 2 waits (rdv in 12 days), usager 3 does not;
    a fourth usager holds the slot in 2 days that will be freed."""
    w1, w2, w3, holder = (_usager(world, n) for n in (1, 2, 3, 4))
    db.session.commit()
    rdvs = {
        "w1": _book(world, w1, day(10, 10), waitlist=True),
        "w2": _book(world, w2, day(12, 10), waitlist=True),
        "w3": _book(world, w3, day(11, 10)),
        "held": _book(world, holder, day(2, 10)),
    }
    return {"w1": w1, "w2": w2, "w3": w3, "holder": holder, "rdvs": rdvs}


def test_a_cancellation_offers_the_slot_to_waiting_usagers_earliest_rdv_first(app, world, waiting):
    cancel(waiting["rdvs"]["held"], via="link", now=NOW)
    [slot] = db.session.scalars(select(FreedSlot)).all()
    assert (slot.starts_at, slot.freed_by_usager, slot.next_offer_at) == (day(2, 10), True, NOW)
    assert _offer_due(app, NOW) == 1
    offers = _offers()
    assert [o.usager_id for o in offers] == [waiting["w1"].id, waiting["w2"].id]
    sms = db.session.get(Message, offers[0].message_id)
    assert (sms.kind, sms.channel, sms.recipient) == ("waitlist_offer", "sms", waiting["w1"].phone)
    assert f"https://lapin.test/o/{offers[0].code}" in sms.body
    assert "mer. 06/03 10h" in sms.body and sms.segments == 1
    assert _offer_due(app, NOW + timedelta(minutes=1)) == 0  # offered once


def test_no_offer_to_other_motif_lieu_or_a_rdv_less_than_a_day_later(app, world):
    holder, near, other_lieu, other_motif = (_usager(world, n) for n in (1, 2, 3, 4))
    db.session.commit()
    held = _book(world, holder, day(2, 10))
    _book(world, near, day(3, 9, 30), waitlist=True)  # 23 h 30 later: not worth it
    _book(world, other_lieu, day(9, 10), waitlist=True, lieu=world.other_lieu)
    book(
        world.org,
        motif_id=world.long_motif.id,
        lieu_id=world.lieu.id,
        agent_id=world.agent.id,
        usager_ids=[other_motif.id],
        starts_at=day(9, 14),
        now=NOW,
        waitlist=True,
    )
    cancel(held, via="agent", agent=world.agent, now=NOW)
    _offer_due(app, NOW)
    assert _offers() == []


def test_email_when_no_sms(app, world, waiting):
    by_email = make_usager(world.org, first="E", last="Mail", phone=None, email="e@example.org")
    db.session.commit()
    _book(world, by_email, day(9, 10), waitlist=True)
    cancel(waiting["rdvs"]["held"], via="link", now=NOW)
    _offer_due(app, NOW)
    first = _offers()[0]
    assert first.usager_id == by_email.id
    message = db.session.get(Message, first.message_id)
    assert (message.channel, message.recipient) == ("email", "e@example.org")
    assert first.code in message.body and "plus tôt" in message.subject


def test_taking_the_offer_moves_the_rdv_sends_moved_and_offers_the_left_slot_in_turn(
    app, world, waiting, client
):
    cancel(waiting["rdvs"]["held"], via="link", now=NOW)
    _offer_due(app, NOW)
    offer = _offers(usager_id=waiting["w1"].id)[0]
    page = html.unescape(client.get(f"/o/{offer.code}").get_data(as_text=True))
    assert "Prendre ce créneau" in page and "mercredi 6 mars 2030 à 10h" in page
    assert _offers(id=offer.id)[0].status == "offered"  # GET changes nothing

    later = NOW + timedelta(minutes=10)
    with time_machine.travel(later, tick=False):
        response = client.post(f"/o/{offer.code}")
    assert response.status_code == 200
    assert "votre rendez-vous est avancé" in html.unescape(response.get_data(as_text=True))
    rdv = db.session.get(Rdv, waiting["rdvs"]["w1"].id)
    db.session.refresh(rdv)
    assert rdv.starts_at == day(2, 10) and rdv.waitlist is False
    kinds = db.session.execute(
        select(Message.kind, Message.status).where(Message.rdv_id == rdv.id)
    ).all()
    assert ("moved", S.SCHEDULED) in kinds
    # The old reminders carried the old date: cancelled; 48 h before the new one is past.
    reminders = db.session.execute(
        select(Message.status, Message.send_at).where(
            Message.rdv_id == rdv.id, Message.kind == "reminder"
        )
    ).all()
    assert {status for status, _ in reminders} == {S.CANCELLED}
    # The other usager's offer is lost; the slot is filled by the waiting list.
    assert _offers(usager_id=waiting["w2"].id)[0].status == "lost"
    first_slot = db.session.scalars(select(FreedSlot).order_by(FreedSlot.id)).first()
    assert (first_slot.filled_via, first_slot.filled_rdv_id) == ("waitlist", rdv.id)
    # The slot left (in 10 days) is freed in turn and offered by the next job, not the request.
    left = db.session.scalars(select(FreedSlot).where(FreedSlot.starts_at == day(10, 10))).one()
    assert left.freed_by_usager and left.next_offer_at == later
    assert _offers(freed_slot_id=left.id) == []
    # Usager 2 already had an offer today: the left slot waits for no one today...
    _offer_due(app, later)
    assert _offers(freed_slot_id=left.id) == []


def test_the_left_slot_goes_to_the_next_waiting_usager(app, world, waiting, client):
    w5 = _usager(world, 5)
    db.session.commit()
    _book(world, w5, day(13, 10), waitlist=True)
    app.config["WAITLIST_OFFERS_PER_SLOT"] = 1
    cancel(waiting["rdvs"]["held"], via="link", now=NOW)
    _offer_due(app, NOW)
    offer = _offers()[0]
    assert offer.usager_id == waiting["w1"].id
    with time_machine.travel(NOW + timedelta(minutes=5), tick=False):
        take_offer(find_offer(offer.code))
    _offer_due(app, NOW + timedelta(minutes=5))
    # Day 10 left by usager 1: usager 2 (day 12) first, then usager 5 (day 13).
    [next_offer] = _offers(status="offered")
    assert next_offer.usager_id == waiting["w2"].id
    assert next_offer.freed_slot.starts_at == day(10, 10)


def test_second_taker_sees_the_slot_taken_and_keeps_their_rdv(app, world, waiting, client):
    cancel(waiting["rdvs"]["held"], via="link", now=NOW)
    _offer_due(app, NOW)
    first, second = _offers()
    with time_machine.travel(NOW + timedelta(minutes=3), tick=False):
        assert client.post(f"/o/{second.code}").status_code == 200
        response = client.post(f"/o/{first.code}")
        again = client.post(f"/o/{second.code}")  # the winner's double click changes nothing
    assert response.status_code == 409
    assert "ce créneau vient d'être pris" in html.unescape(response.get_data(as_text=True)).lower()
    assert again.status_code == 200
    assert db.session.get(Rdv, waiting["rdvs"]["w1"].id).starts_at == day(10, 10)
    assert db.session.get(Rdv, waiting["rdvs"]["w2"].id).starts_at == day(2, 10)
    moved = db.session.scalar(
        select(func.count()).where(Message.kind == "moved", Message.channel == "sms")
    )
    assert moved == 1


def test_two_usagers_racing_for_one_slot_one_wins(app, world, waiting):
    cancel(waiting["rdvs"]["held"], via="link", now=NOW)
    _offer_due(app, NOW)
    codes = [o.code for o in _offers()]
    barrier = threading.Barrier(2)
    results: dict[str, str] = {}

    def race(code):
        with app.app_context():
            barrier.wait()
            try:
                take_offer(find_offer(code), now=NOW + timedelta(minutes=1))
                results[code] = "won"
            except SlotTaken:
                results[code] = "taken"
            finally:
                db.session.remove()

    threads = [threading.Thread(target=race, args=(c,)) for c in codes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results.values()) == ["taken", "won"]
    db.session.expire_all()
    in_slot = db.session.scalars(
        select(Rdv).where(Rdv.starts_at == day(2, 10), Rdv.status == "unknown")
    ).all()
    assert len(in_slot) == 1
    winner = next(c for c, r in results.items() if r == "won")
    assert in_slot[0].id == find_offer(winner).rdv_id
    assert {o.status for o in _offers()} == {"taken", "lost"}


def test_an_agent_move_frees_the_old_slot_and_fills_a_freed_one(app, world, waiting):
    cancel(waiting["rdvs"]["held"], via="agent", agent=world.agent, now=NOW)
    w3_rdv = waiting["rdvs"]["w3"]
    move(w3_rdv, starts_at=day(2, 10), now=NOW + timedelta(minutes=1))
    slots = db.session.scalars(select(FreedSlot).order_by(FreedSlot.id)).all()
    assert [(s.starts_at, s.filled_via) for s in slots] == [
        (day(2, 10), "move"),
        (day(11, 10), None),
    ]
    _offer_due(app, NOW + timedelta(minutes=2))
    assert {o.freed_slot_id for o in _offers()} == {slots[1].id}  # only the one still free


# --- limits ---


def test_no_offer_for_a_slot_sooner_than_the_notice(app, world):
    holder, waiter = _usager(world, 1), _usager(world, 2)
    db.session.commit()
    held = _book(world, holder, day(0, 14))  # 4 h after NOW
    _book(world, waiter, day(5, 10), waitlist=True)
    cancel(held, via="link", now=NOW + timedelta(minutes=1))  # 3 h 59 away: too soon
    _offer_due(app, NOW + timedelta(minutes=1))
    assert _offers() == []
    world.org.waitlist_notice_minutes = 60
    db.session.commit()
    held = _book(world, holder, day(0, 16), now=NOW + timedelta(minutes=2))
    cancel(held, via="link", now=NOW + timedelta(minutes=3))
    _offer_due(app, NOW + timedelta(minutes=3))
    assert len(_offers()) == 1


def test_no_offer_in_quiet_hours_the_slot_waits_for_the_morning(app, world):
    holder, waiter = _usager(world, 1), _usager(world, 2)
    db.session.commit()
    held = _book(world, holder, day(1, 14))
    _book(world, waiter, day(5, 10), waitlist=True)
    evening = day(0, 21, 30)
    cancel(held, via="link", now=evening)
    _offer_due(app, evening)
    assert _offers() == []
    slot = db.session.scalars(select(FreedSlot)).one()
    assert slot.next_offer_at == day(1, 8)
    assert _offer_due(app, day(1, 7, 59)) == 0
    _offer_due(app, day(1, 8))
    [offer] = _offers()
    assert offer.created_at == day(1, 8)
    dispatch_due(day(1, 8))
    assert db.session.get(Message, offer.message_id).status == S.QUEUED


def test_the_morning_offer_is_dropped_when_the_slot_is_too_close_by_then(app, world):
    holder, waiter = _usager(world, 1), _usager(world, 2)
    db.session.commit()
    held = _book(world, holder, day(1, 9))
    _book(world, waiter, day(5, 10), waitlist=True)
    cancel(held, via="link", now=day(0, 22))
    _offer_due(app, day(0, 22))
    _offer_due(app, day(1, 8))  # 9:00 is 1 h away: under the 4 h notice
    assert _offers() == []
    assert db.session.scalars(select(FreedSlot)).one().next_offer_at is None


def test_at_most_one_offer_per_usager_per_day_and_three_in_all(app, world):
    waiter = _usager(world, 1)
    holders = [_usager(world, n) for n in range(10, 16)]
    db.session.commit()
    _book(world, waiter, day(20, 10), waitlist=True)
    helds = [_book(world, h, day(3 + i, 10)) for i, h in enumerate(holders)]
    cancel(helds[0], via="link", now=NOW)
    cancel(helds[1], via="link", now=NOW + timedelta(hours=1))
    _offer_due(app, NOW + timedelta(hours=1))
    assert len(_offers()) == 1  # one a day
    for i, when in ((2, day(1, 10)), (3, day(2, 10)), (4, day(2, 11)), (5, day(3, 9))):
        cancel(helds[i], via="link", now=when)
        _offer_due(app, when)
    assert len(_offers()) == 3  # three in all
    assert len({o.created_at.astimezone(PARIS).date() for o in _offers()}) == 3


def test_an_offer_expires_when_the_slot_starts_or_is_taken(app, world, waiting, client):
    cancel(waiting["rdvs"]["held"], via="link", now=NOW)
    _offer_due(app, NOW)
    first, second = _offers()
    # Taken by an agent booking for someone else: both offers are lost, no move.
    other = _usager(world, 9)
    db.session.commit()
    _book(world, other, day(2, 10), now=NOW + timedelta(minutes=1))
    with time_machine.travel(NOW + timedelta(minutes=2), tick=False):
        page = html.unescape(client.get(f"/o/{first.code}").get_data(as_text=True))
        assert "Ce créneau vient d'être pris" in page
        assert client.post(f"/o/{first.code}").status_code == 409
    assert db.session.get(Rdv, waiting["rdvs"]["w1"].id).starts_at == day(10, 10)
    # The slot starts: the offer has expired.
    with time_machine.travel(day(2, 10, 1), tick=False):
        page = html.unescape(client.get(f"/o/{second.code}").get_data(as_text=True))
    assert "n'est plus valable" in page or "vient d'être pris" in page


def test_an_offer_whose_slot_was_taken_before_sending_is_not_sent(app, world, waiting):
    cancel(waiting["rdvs"]["held"], via="link", now=NOW)
    _offer_due(app, NOW)
    _book(world, waiting["holder"], day(2, 10), now=NOW + timedelta(seconds=30))
    with time_machine.travel(NOW + timedelta(minutes=1), tick=False):
        dispatch_due(NOW + timedelta(minutes=1))
        run_pending(app)
    db.session.expire_all()
    statuses = {db.session.get(Message, o.message_id).status for o in _offers() if o.message_id}
    assert statuses == {S.CANCELLED}


def test_offer_links_are_404_for_unknown_codes(client, world):
    assert client.get("/o/doesnotexist0").status_code == 404
    assert client.get("/o/" + "a" * 40).status_code == 404
    assert client.post("/o/doesnotexist0").status_code == 404


def test_waitlist_through_the_api_and_in_the_rdv_json(client, world):
    headers = {"Authorization": f"Bearer {world.token}"}
    start = day(400, 10).isoformat()
    body = {
        "motif_id": world.motif.id,
        "lieu_id": world.lieu.id,
        "agent_id": world.agent.id,
        "usager_id": world.usager.id,
        "starts_at": start,
        "waitlist": True,
    }
    created = client.post("/api/v1/rdvs", json=body, headers=headers)
    assert created.status_code == 201 and created.get_json()["waitlist"] is True
    shown = client.get(f"/api/v1/rdvs/{created.get_json()['id']}", headers=headers).get_json()
    assert shown["waitlist"] is True
    wrong = client.post("/api/v1/rdvs", json={**body, "waitlist": "yes"}, headers=headers)
    assert wrong.status_code == 422 and "waitlist" in wrong.get_json()["error"]["fields"]


def test_agent_form_checkbox_puts_the_rdv_on_the_waiting_list(login, world):
    start = day(400, 10)
    response = login.post(
        "/rdvs/new",
        data={
            "motif_id": world.motif.id,
            "lieu_id": world.lieu.id,
            "agent_id": world.agent.id,
            "starts_at": start.isoformat(),
            "usager_id": world.usager.id,
            "waitlist": "y",
        },
    )
    assert response.status_code == 302
    rdv = db.session.scalars(select(Rdv)).one()
    assert rdv.waitlist is True
    page = login.get(f"/rdvs/{rdv.id}").get_data(as_text=True)
    assert "Liste d&#39;attente" in page or "Liste d'attente" in page


def test_offer_slot_of_an_unknown_or_finished_slot_does_nothing(app, world):
    assert offer_slot(12345, NOW) == 0


def test_offer_post_needs_the_csrf_token(app_config, _migrated, world, waiting, app):
    cancel(waiting["rdvs"]["held"], via="link", now=NOW)
    _offer_due(app, NOW)
    offer = _offers()[0]
    csrf_app = create_app({**app_config, "WTF_CSRF_ENABLED": True})
    c = csrf_app.test_client()
    with time_machine.travel(NOW + timedelta(minutes=1), tick=False):
        assert c.post(f"/o/{offer.code}").status_code == 400
        assert _offers(id=offer.id)[0].status == "offered"
        page = c.get(f"/o/{offer.code}").get_data(as_text=True)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        assert c.post(f"/o/{offer.code}", data={"csrf_token": token}).status_code == 200
    assert _offers(id=offer.id)[0].status == "taken"


def test_agent_takes_an_rdv_off_the_waiting_list_and_its_offers_expire(login, world, waiting):
    cancel(waiting["rdvs"]["held"], via="link", now=NOW)
    _offer_due(login.application, NOW)
    rdv_id = waiting["rdvs"]["w1"].id
    response = login.post(f"/rdvs/{rdv_id}/waitlist", data={"waitlist": "0"})
    assert response.status_code == 302
    assert db.session.get(Rdv, rdv_id).waitlist is False
    assert _offers(rdv_id=rdv_id)[0].status == "expired"
    login.post(f"/rdvs/{rdv_id}/waitlist", data={"waitlist": "1"})
    assert db.session.get(Rdv, rdv_id).waitlist is True


def test_guessing_offer_codes_is_rate_limited(app_config, _migrated, world, redis_url):
    from gateway.extensions import limiter

    limited = create_app(
        {
            **app_config,
            "RATELIMIT_ENABLED": True,
            "CANCEL_LINK_RATE_LIMIT": "3 per minute",
            "RATELIMIT_STORAGE_URI": redis_url or "memory://",
        }
    )
    limiter.reset()
    c = limited.test_client()
    assert [c.get(f"/o/Guess{i:07d}").status_code for i in range(3)] == [404, 404, 404]
    assert c.get("/o/Guess0000009").status_code == 429
    assert c.post("/o/Guess0000009").status_code == 429
    assert c.get("/o/Guess0000009", environ_base={"REMOTE_ADDR": "192.0.2.7"}).status_code == 404
