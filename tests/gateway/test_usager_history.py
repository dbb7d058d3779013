"""``/usagers/<id>``: a usager's history for agents of the same organisation only."""

from __future__ import annotations

import html
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import time_machine

from gateway.booking import book, cancel, record_outcome
from gateway.extensions import db
from gateway.history import noshow_counts, outcome, usager_history
from gateway.models import InboundSms
from gateway.timeutil import utcnow

from ..factories import make_org, make_usager

PARIS = ZoneInfo("Europe/Paris")


def _book(world, usager, starts, now):
    return book(
        world.org,
        motif_id=world.motif.id,
        lieu_id=world.lieu.id,
        agent_id=world.agent.id,
        usager_ids=[usager.id],
        starts_at=starts,
        now=now,
    )


def _past_and_future(world):
    """Four past rdvs (seen, noshow, excused by link, revoked by an agent) and one ahead."""
    now = utcnow()
    day = (now.astimezone(PARIS) - timedelta(days=20)).replace(hour=10, minute=0, second=0)
    earlier = day.astimezone(PARIS) - timedelta(days=1)
    usager = world.usager
    with time_machine.travel(earlier, tick=False):
        seen = _book(world, usager, day, earlier)
        noshow = _book(world, usager, day + timedelta(days=1), earlier)
        excused = _book(world, usager, day + timedelta(days=2), earlier)
        revoked = _book(world, usager, day + timedelta(days=3), earlier)
        cancel(excused, via="link", now=earlier + timedelta(hours=1))
        cancel(revoked, via="agent", agent=world.other_agent, now=earlier + timedelta(hours=1))
    record_outcome(seen, "seen", now=day + timedelta(days=5))
    record_outcome(noshow, "noshow", now=day + timedelta(days=5))
    ahead_start = (now.astimezone(PARIS) + timedelta(days=3)).replace(hour=10, minute=0, second=0)
    ahead = _book(world, usager, ahead_start, now)
    ahead.confirmed_at = now
    db.session.add(
        InboundSms(
            organisation_id=world.org.id,
            provider="simulator",
            provider_message_id="in-1",
            from_number=usager.phone,
            body="OUI",
            usager_id=usager.id,
            rdv_id=ahead.id,
            action="confirmed",
        )
    )
    db.session.commit()
    return {"seen": seen, "noshow": noshow, "excused": excused, "revoked": revoked, "ahead": ahead}


def test_history_lists_every_rdv_with_its_outcome_and_the_noshow_count(world):
    rdvs = _past_and_future(world)
    history = usager_history(world.org, world.usager.id, utcnow())
    assert [r.id for r in history.upcoming] == [rdvs["ahead"].id]
    assert [r.id for r in history.past] == [
        rdvs[k].id for k in ("revoked", "excused", "noshow", "seen")
    ]
    assert [outcome(r, utcnow()) for r in history.past] == [
        "revoked",
        "excused",
        "noshow",
        "seen",
    ]
    assert history.noshows == 1
    assert len(history.confirmations) == 1
    assert {m.kind for m in history.messages} >= {"confirmation", "cancelled"}
    assert noshow_counts([world.usager.id, world.email_usager.id]) == {world.usager.id: 1}


def test_usager_page_shows_outcomes_who_cancelled_and_how_messages_and_confirmations(login, world):
    _past_and_future(world)
    page = html.unescape(login.get(f"/usagers/{world.usager.id}").get_data(as_text=True))
    assert "Léa Dupont" in page
    assert "1 absence" in page
    for label in ("Venu", "Absent (lapin)", "Annulé par l'usager", "Annulé par le service"):
        assert label in page
    assert "le lien d'annulation" in page  # the usager cancelled by the link
    assert "un agent" in page and "Karim Benali" in page  # who cancelled for the service
    assert "par OUI le" in page
    assert "Confirmation" in page and "Annulation" in page  # messages


def test_usager_page_of_another_organisation_is_not_found(login, world):
    other = make_org(name="Autre département")
    stranger = make_usager(other, first="Paul", last="Martin", phone="+33699999999")
    db.session.commit()
    assert login.get(f"/usagers/{stranger.id}").status_code == 404
    assert login.get("/usagers/999999").status_code == 404
    assert login.get("/usagers/99999999999999").status_code == 404


def test_usager_page_needs_login(client, world):
    response = client.get(f"/usagers/{world.usager.id}")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_booking_form_shows_the_noshow_count_next_to_the_name(login, world):
    _past_and_future(world)
    start = (utcnow().astimezone(PARIS) + timedelta(days=5)).replace(
        hour=11, minute=0, second=0, microsecond=0
    )
    url = (
        f"/rdvs/new?motif_id={world.motif.id}&lieu_id={world.lieu.id}"
        f"&agent_id={world.agent.id}&starts_at={start.isoformat()}&q=Dupont"
    ).replace("+", "%2B")
    page = login.get(url).get_data(as_text=True)
    assert "Réserver pour Léa Dupont" in page
    line = page.split("Réserver pour Léa Dupont", 1)[1].split("</button>", 1)[0]
    assert "1 absence" in line


def test_outcome_of_an_unrecorded_past_rdv(world):
    now = datetime(2030, 3, 4, 10, 0, tzinfo=PARIS)
    rdv = _book(world, world.usager, now + timedelta(hours=1), now)
    assert outcome(rdv, now) == "upcoming"
    assert outcome(rdv, now + timedelta(hours=2)) == "unrecorded"
