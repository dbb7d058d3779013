"""Cancellation links /c/<code>: GET shows, POST cancels (once), too late, unknown, rate limit."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import time_machine
from sqlalchemy import func, select

from gateway.extensions import db, limiter
from gateway.models import Message, Participation, Rdv

from .conftest import NOW, book_at


def _code(rdv) -> str:
    return db.session.scalar(
        select(Participation.cancel_code).where(Participation.rdv_id == rdv.id)
    )


def _messages() -> int:
    return db.session.scalar(select(func.count()).select_from(Message))


@pytest.fixture
def rdv(app, world, frozen):
    return book_at(world, NOW.replace(day=5))  # Friday 5 June 2026, 10:00 Paris


def test_get_shows_the_rdv_and_never_cancels(client, rdv):
    before = _messages()
    for _ in range(3):  # a link previewer, a mail scanner, the usager
        response = client.get(f"/c/{_code(rdv)}")
        assert response.status_code == 200
    html = response.get_data(as_text=True)
    for text in (
        "Consultation PMI",
        "MDS Calais",
        "12 rue X, Calais",
        "vendredi 5 juin 2026",
        "10h",
        "Annuler ce rendez-vous",
        'lang="fr"',
        'name="viewport"',
    ):
        assert text in html
    assert response.headers["Cache-Control"] == "no-store"
    db.session.expire_all()
    assert db.session.get(Rdv, rdv.id).status == "unknown" and _messages() == before


def test_post_cancels_once(client, rdv):
    response = client.post(f"/c/{_code(rdv)}")
    assert response.status_code == 200 and "Votre rendez-vous est annulé" in response.get_data(
        as_text=True
    )
    db.session.expire_all()
    cancelled = db.session.get(Rdv, rdv.id)
    assert cancelled.status == "excused" and cancelled.cancelled_via == "link"
    after_first = _messages()
    again = client.post(f"/c/{_code(rdv)}")
    assert again.status_code == 200 and "annulé" in again.get_data(as_text=True)
    assert _messages() == after_first  # no second confirmation, no second alert
    page = client.get(f"/c/{_code(rdv)}").get_data(as_text=True)
    assert "Annuler ce rendez-vous" not in page and "annulé" in page


def test_post_needs_the_csrf_token(app, client, rdv):
    app.config["WTF_CSRF_ENABLED"] = True
    code = _code(rdv)
    assert client.post(f"/c/{code}").status_code == 400
    db.session.expire_all()
    assert db.session.get(Rdv, rdv.id).status == "unknown"
    html = client.get(f"/c/{code}").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    assert client.post(f"/c/{code}", data={"csrf_token": token}).status_code == 200
    db.session.expire_all()
    assert db.session.get(Rdv, rdv.id).status == "excused"


def test_inside_the_minimum_notice_or_after_the_start_nothing_changes(client, rdv, world):
    world.org.min_cancel_notice_minutes = 48 * 60
    db.session.commit()
    code = _code(rdv)
    before = _messages()
    with time_machine.travel(rdv.starts_at - timedelta(hours=24), tick=False):
        page = client.get(f"/c/{code}").get_data(as_text=True)
        assert "ne peut plus être annulé en ligne" in page and "Annuler ce rendez-vous" not in page
        response = client.post(f"/c/{code}")
        assert response.status_code == 409 and "03 21 00 00 01" in response.get_data(as_text=True)
    world.org.min_cancel_notice_minutes = 0
    db.session.commit()
    with time_machine.travel(rdv.starts_at + timedelta(minutes=5), tick=False):
        assert client.post(f"/c/{code}").status_code == 409
    db.session.expire_all()
    assert db.session.get(Rdv, rdv.id).status == "unknown" and _messages() == before


@pytest.mark.parametrize("code", ["AAAAAAAAAAAA", "x", "a" * 200, "abc-def_ghi"])
def test_unknown_code_is_a_404_page(client, rdv, code):
    response = client.get(f"/c/{code}")
    assert response.status_code == 404 and "text/html" in response.content_type
    assert client.post(f"/c/{code}").status_code == 404


def test_the_freed_slot_is_bookable_at_once(client, rdv, world):
    headers = {"Authorization": f"Bearer {world.token}"}
    query = (
        f"/api/v1/slots?motif_id={world.motif.id}&lieu_id={world.lieu.id}"
        "&from=2026-06-05T00:00:00&to=2026-06-06T00:00:00"
    )

    def taken():
        items = client.get(query, headers=headers).json["items"]
        return not any(
            i["starts_at"] == "2026-06-05T10:00:00+02:00" and i["agent_id"] == world.agent.id
            for i in items
        )

    assert taken()
    client.post(f"/c/{_code(rdv)}")
    assert not taken()
    rebook = client.post(
        "/api/v1/rdvs",
        headers=headers,
        json={
            "motif_id": world.motif.id,
            "lieu_id": world.lieu.id,
            "agent_id": world.agent.id,
            "usager_id": world.email_usager.id,
            "starts_at": "2026-06-05T10:00:00+02:00",
        },
    )
    assert rebook.status_code == 201


def test_guessing_codes_is_rate_limited(limited, app, client, rdv):
    limiter.reset()
    statuses = [client.get(f"/c/Guess{i:07d}").status_code for i in range(3)]
    assert statuses == [404, 404, 404]
    blocked = client.get(f"/c/{_code(rdv)}")  # even the right code, once over the limit
    assert blocked.status_code == 429
    assert client.post(f"/c/{_code(rdv)}").status_code == 429
    db.session.expire_all()
    assert db.session.get(Rdv, rdv.id).status == "unknown"
    other = client.get(f"/c/{_code(rdv)}", environ_base={"REMOTE_ADDR": "192.0.2.7"})
    assert other.status_code == 200  # per client address


def test_the_manage_link_shows_and_changes_the_waiting_list_choice(client, rdv):
    page = client.get(f"/c/{_code(rdv)}").get_data(as_text=True)
    assert "Prévenez-moi si un créneau plus tôt se libère" in page
    on = client.post(f"/c/{_code(rdv)}", data={"action": "waitlist_on"})
    assert on.status_code == 200 and "Ne plus me prévenir" in on.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Rdv, rdv.id).waitlist is True and rdv.status == "unknown"
    client.post(f"/c/{_code(rdv)}", data={"action": "waitlist_off"})
    db.session.expire_all()
    assert db.session.get(Rdv, rdv.id).waitlist is False
    assert db.session.get(Rdv, rdv.id).status == "unknown"  # never a cancellation
