"""Online booking (issue 12): the public pages, the verification code, its limits, the
held slot, usager reuse and the cap, through HTTP on the app's own database."""

from __future__ import annotations

import html
import re
import threading
from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import func, select

from gateway.booking import book
from gateway.errors import Conflict, DomainError, ValidationFailed
from gateway.extensions import db, limiter
from gateway.models import (
    Lieu,
    Message,
    Motif,
    Organisation,
    Participation,
    Rdv,
    Usager,
    VerificationCode,
)
from gateway.online import service
from gateway.slots import free_slots
from providers import status as S
from scheduler import policy

from ..factories import make_org

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 6, 1, 10, 0, tzinfo=PARIS)  # a Monday
SLOT = datetime(2026, 6, 4, 9, 30, tzinfo=PARIS)  # Thursday, inside the 2 h - 60 days window
DETAILS = {
    "first_name": "Inès",
    "last_name": "Martin",
    "phone": "06 11 22 33 44",
    "email": "",
    "notify_sms": "y",
    "notify_email": "y",
}


@pytest.fixture
def frozen():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def online(app, world, frozen):
    """The world's organisation takes online bookings; its PMI motif is bookable."""
    world.org.slug = "test-62"
    world.org.online_booking = True
    world.motif.bookable_online = True
    world.motif.online_min_notice_minutes = 120
    world.motif.online_max_delay_days = 60
    world.motif.public_description = "Suivi du nourrisson."
    world.lieu.address = "12 rue X, 62100 Calais"
    world.other_lieu.address = "3 place des Héros, 62000 Arras"
    db.session.commit()
    return world


def _slot_url(world, starts_at=SLOT, agent=None, lieu=None) -> str:
    agent = agent or world.agent
    lieu = lieu or world.lieu
    return (
        f"/prendre-rdv/{world.org.slug}/coordonnees?motif={world.motif.id}&lieu={lieu.id}"
        f"&agent={agent.id}&debut={starts_at.isoformat()}".replace("+", "%2B")
    )


def _ask_code(client, world, details=None, **slot) -> tuple:
    """POST the details form; (response, the new pending row or None, its code or None)."""
    before = db.session.scalar(select(func.max(VerificationCode.id))) or 0
    response = client.post(_slot_url(world, **slot), data=details or DETAILS)
    row = db.session.scalar(
        select(VerificationCode).where(VerificationCode.id > before).order_by(VerificationCode.id)
    )
    code = None
    if row is not None:
        code = re.search(r"\b(\d{6})\b", row.message.body).group(1)
    return response, row, code


def _code_url(world, row) -> str:
    return f"/prendre-rdv/{world.org.slug}/code/{row.public_id}"


def _agent_books(world, starts_at=SLOT):
    """The agent books ``starts_at`` at the world's lieu for its first usager."""
    return book(
        world.org,
        motif_id=world.motif.id,
        lieu_id=world.lieu.id,
        agent_id=world.agent.id,
        usager_ids=[world.usager.id],
        starts_at=starts_at,
    )


def _count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


# --- pages ------------------------------------------------------------------


def test_organisations_list_only_those_taking_online_bookings(client, online):
    closed = make_org(name="Service fermé", slug="ferme")
    db.session.commit()
    html = client.get("/prendre-rdv").get_data(as_text=True)
    assert "Département test" in html and "/prendre-rdv/test-62" in html
    assert "Service fermé" not in html
    assert client.get("/prendre-rdv/ferme").status_code == 404
    assert client.get("/prendre-rdv/inconnu").status_code == 404
    assert closed.id


def test_motif_page_lists_bookable_motifs_only(client, online):
    html = client.get("/prendre-rdv/test-62").get_data(as_text=True)
    assert "Consultation PMI" in html and "Suivi du nourrisson." in html
    assert "Entretien social" not in html
    assert 'class="fr-stepper"' in html and "Étape 1 sur 6" in html


def test_a_motif_not_bookable_online_is_404_on_every_step(client, online):
    other = online.long_motif.id
    slug = online.org.slug
    for url in (
        f"/prendre-rdv/{slug}/lieu?motif={other}",
        f"/prendre-rdv/{slug}/creneau?motif={other}&lieu={online.lieu.id}",
        (
            f"/prendre-rdv/{slug}/coordonnees?motif={other}&lieu={online.lieu.id}"
            f"&agent={online.agent.id}&debut=2026-06-03T09:30"
        ),
    ):
        assert client.get(url).status_code == 404, url
    response = client.post(
        f"/prendre-rdv/{slug}/coordonnees?motif={other}&lieu={online.lieu.id}"
        f"&agent={online.agent.id}&debut=2026-06-03T09:30",
        data=DETAILS,
    )
    assert response.status_code == 404 and _count(VerificationCode) == 0


def test_lieux_show_address_and_hours_and_sort_by_postcode(client, online):
    url = f"/prendre-rdv/test-62/lieu?motif={online.motif.id}"
    html = client.get(url).get_data(as_text=True)
    assert "3 place des Héros, 62000 Arras" in html
    assert "lun. au dim. 9h-12h, 14h-17h" in html
    # Alphabetical without a postcode: MDS Calais before PMI Arras.
    assert html.index("MDS Calais") < html.index("PMI Arras")
    near_arras = client.get(url + "&cp=62000").get_data(as_text=True)
    assert near_arras.index("PMI Arras") < near_arras.index("MDS Calais")
    assert "Dans votre commune" in near_arras
    bad = client.get(url + "&cp=abc").get_data(as_text=True)
    assert "Un code postal a 5 chiffres." in bad


def _offered_starts(html: str) -> list[datetime]:
    """The start of every slot button of a slot page."""
    links = re.findall(r'href="([^"]*coordonnees[^"]*)"', html.replace("&amp;", "&"))
    return [datetime.fromisoformat(parse_qs(urlsplit(h).query)["debut"][0]) for h in links]


def test_slot_page_offers_only_the_motif_window(client, online):
    url = f"/prendre-rdv/test-62/creneau?motif={online.motif.id}&lieu={online.lieu.id}"
    starts = _offered_starts(client.get(url).get_data(as_text=True))
    # 10:00 now + 2 h notice: the first slot is 14:00 today, never 11:00.
    assert min(starts) == datetime(2026, 6, 1, 14, 0, tzinfo=PARIS)
    # One button per time even though two agents are free then.
    assert len(starts) == len(set(starts))
    # The last week shown ends with the 60 days: 31 July before 10:00.
    last = _offered_starts(client.get(url + "&du=2026-08-10").get_data(as_text=True))
    assert max(last) == datetime(2026, 7, 31, 9, 30, tzinfo=PARIS)


def test_details_form_explains_bad_input_and_keeps_nothing(client, online):
    response = client.post(
        _slot_url(online), data={**DETAILS, "first_name": "", "phone": "03 21 00 00 00"}
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Le prénom est obligatoire." in html
    assert _count(VerificationCode) == 0 and _count(Message) == 0


# --- the code -----------------------------------------------------------------


def test_whole_path_books_online_with_the_agents_messages(client, online):
    response, row, code = _ask_code(client, online)
    assert response.status_code == 303 and response.headers["Location"].endswith(row.public_id)
    assert row.status == "pending" and row.recipient == "+33611223344" and row.channel == "sms"
    assert code not in row.code_hash and len(row.code_hash) == 64
    message = row.message
    assert message.kind == "verification" and message.status == S.SCHEDULED
    page = client.get(_code_url(online, row)).get_data(as_text=True)
    assert "06 •• •• •• 44" in page and "Étape 5 sur 6" in page

    done = client.post(_code_url(online, row), data={"code": code})
    assert done.status_code == 303 and "/confirmation/" in done.headers["Location"]
    db.session.expire_all()
    rdv = db.session.scalar(select(Rdv))
    assert rdv.booked_via == "online" and rdv.starts_at == SLOT and rdv.agent_id == online.agent.id
    kinds = sorted(m.kind for m in rdv.messages)
    assert kinds == ["confirmation", "reminder"]  # SMS only: no email given
    assert db.session.get(Message, message.id).body == ""  # the code is not kept
    final = client.get(done.headers["Location"]).get_data(as_text=True)
    code_link = db.session.scalar(select(Participation.cancel_code))
    assert "Votre rendez-vous est confirmé" in final and f"/c/{code_link}" in final
    # The code page now leads to the confirmation; the code cannot serve twice.
    again = client.post(_code_url(online, row), data={"code": code})
    assert again.status_code == 303 and _count(Rdv) == 1
    assert (
        client.get(
            f"/api/v1/rdvs/{rdv.id}", headers={"Authorization": f"Bearer {online.token}"}
        ).get_json()["booked_via"]
        == "online"
    )


def test_code_by_email_when_there_is_no_mobile(client, online):
    details = {**DETAILS, "phone": "", "email": "ines@example.org"}
    _response, row, code = _ask_code(client, online, details)
    assert row.channel == "email" and row.recipient == "ines@example.org"
    assert code in row.message.body and code in row.message.subject


def test_wrong_codes_count_down_then_exhaust_and_release_the_slot(client, online):
    _response, row, code = _ask_code(client, online)
    wrong = "000000" if code != "000000" else "111111"
    for left in (4, 3, 2, 1):
        response = client.post(_code_url(online, row), data={"code": wrong})
        assert response.status_code == 422
        assert f"Il vous reste {left} essai" in response.get_data(as_text=True)
    fifth = client.post(_code_url(online, row), data={"code": wrong})
    assert fifth.status_code == 410 and "Code erroné 5 fois" in fifth.get_data(as_text=True)
    # Even the right code is refused now, and the slot is free for others.
    right = client.post(_code_url(online, row), data={"code": code})
    assert right.status_code == 410 and _count(Rdv) == 0
    db.session.expire_all()
    assert db.session.get(VerificationCode, row.id).status == "exhausted"
    assert db.session.get(Message, row.message_id).body == ""
    assert SLOT in {
        s.starts_at
        for s in free_slots(
            online.org, online.motif, SLOT, SLOT + timedelta(minutes=30), lieu_id=online.lieu.id
        )
    }


def test_expired_code_is_refused_and_the_slot_released(client, online, frozen):
    _response, row, code = _ask_code(client, online)
    frozen.shift(timedelta(minutes=10, seconds=1))
    response = client.post(_code_url(online, row), data={"code": code})
    assert response.status_code == 410 and "expiré" in response.get_data(as_text=True)
    assert _count(Rdv) == 0
    db.session.expire_all()
    assert db.session.get(VerificationCode, row.id).status == "expired"
    # Someone else can take the slot.
    assert _agent_books(online)


def test_held_slot_is_hidden_from_others_and_cannot_be_taken(client, online):
    _response, _row, _code = _ask_code(client, online)
    start, end = SLOT - timedelta(hours=1), SLOT + timedelta(hours=1)
    agent_slots = free_slots(
        online.org, online.motif, start, end, lieu_id=online.lieu.id, agent_id=online.agent.id
    )
    assert SLOT not in {s.starts_at for s in agent_slots}
    with pytest.raises(Conflict):
        _agent_books(online)
    other = {**DETAILS, "first_name": "Paul", "phone": "06 99 88 77 66"}
    response, second, _ = _ask_code(client, online, other)
    assert (
        second is None and response.status_code == 303 and "pris=1" in response.headers["Location"]
    )
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Ce créneau vient d'être pris" in page


def test_slot_taken_between_choosing_and_confirming(client, online):
    # The usager opened the details step; an agent books the slot meanwhile.
    assert client.get(_slot_url(online)).status_code == 200
    _agent_books(online)
    response, row, _ = _ask_code(client, online)
    assert row is None and response.status_code == 303
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Ce créneau vient d'être pris" in page and "Choisissez un autre créneau" in page


def test_three_codes_per_number_per_hour(client, online, frozen):
    for _ in range(3):
        _response, row, _ = _ask_code(client, online)
        assert row is not None
    response, row, _ = _ask_code(client, online)
    assert row is None and response.status_code == 429
    assert "Trop de codes demandés pour ce numéro" in response.get_data(as_text=True)
    frozen.shift(timedelta(hours=1, minutes=1))
    assert _ask_code(client, online)[1] is not None


def test_a_new_code_supersedes_the_earlier_one_and_frees_its_slot(client, online):
    _response, first, first_code = _ask_code(client, online)
    later = SLOT + timedelta(minutes=30)
    _response, _second, _ = _ask_code(client, online, starts_at=later)
    db.session.expire_all()
    first = db.session.get(VerificationCode, first.id)
    assert first.status == "superseded" and first.message.status == S.CANCELLED
    assert first.message.body == ""
    response = client.post(_code_url(online, first), data={"code": first_code})
    assert response.status_code == 410 and _count(Rdv) == 0
    assert SLOT in {
        s.starts_at
        for s in free_slots(
            online.org, online.motif, SLOT, later, lieu_id=online.lieu.id, agent_id=online.agent.id
        )
    }


@pytest.fixture
def limited(app_config, redis_url):
    """Rate limits on (in Redis when TEST_REDIS_URL is set), 2 codes per hour per address."""
    app_config["RATELIMIT_ENABLED"] = True
    app_config["RATELIMIT_STORAGE_URI"] = redis_url or "memory://"
    app_config["ONLINE_CODE_RATE_LIMIT"] = "2 per hour"
    return app_config


def test_rate_limit_per_client_address(limited, app, client, online):
    limiter.reset()
    try:
        for hours, number in ((0, "06 11 11 11 11"), (1, "06 22 22 22 22")):
            details = {**DETAILS, "phone": number}
            starts_at = SLOT + timedelta(hours=hours)
            assert _ask_code(client, online, details, starts_at=starts_at)[1] is not None
        details = {**DETAILS, "phone": "06 33 33 33 33"}
        response, row, _ = _ask_code(client, online, details, starts_at=SLOT + timedelta(hours=5))
        assert response.status_code == 429 and row is None
        assert "Trop de demandes depuis votre connexion" in response.get_data(as_text=True)
    finally:
        limiter.reset()


def test_existing_usager_is_reused(client, online):
    known = online.usager  # Léa Dupont, +33612345678
    details = {**DETAILS, "first_name": "léa", "last_name": "DUPONT", "phone": "0612345678"}
    _response, row, code = _ask_code(client, online, details)
    before = _count(Usager)
    client.post(_code_url(online, row), data={"code": code})
    rdv = db.session.scalar(select(Rdv))
    assert [p.usager_id for p in rdv.participations] == [known.id] and _count(Usager) == before


def test_a_new_person_is_created_with_their_consents(client, online):
    details = {**DETAILS, "email": "ines@example.org", "notify_email": ""}
    _response, row, code = _ask_code(client, online, details)
    client.post(_code_url(online, row), data={"code": code})
    usager = db.session.scalar(select(Usager).where(Usager.first_name == "Inès"))
    assert usager.phone == "+33611223344" and usager.notify_sms and not usager.notify_email


def test_cap_on_live_online_rdvs(app, client, online):
    app.config["ONLINE_MAX_LIVE_RDVS"] = 2
    for hours in (0, 1):
        _response, row, code = _ask_code(client, online, starts_at=SLOT + timedelta(hours=hours))
        assert client.post(_code_url(online, row), data={"code": code}).status_code == 303
    response, row, _ = _ask_code(client, online, starts_at=SLOT + timedelta(hours=5))
    assert row is None and response.status_code == 409
    assert "2 rendez-vous à venir pris en ligne" in response.get_data(as_text=True)
    # Cancelling one frees a place.
    rdv = db.session.scalar(select(Rdv).order_by(Rdv.id))
    client.post(f"/c/{rdv.participations[0].cancel_code}", data={"action": "cancel"})
    assert _ask_code(client, online, starts_at=SLOT + timedelta(hours=5))[1] is not None


def test_posts_need_the_csrf_token(app, client, online):
    app.config["WTF_CSRF_ENABLED"] = True
    response = client.post(_slot_url(online), data=DETAILS)
    assert response.status_code == 400 and _count(VerificationCode) == 0
    html = client.get(_slot_url(online)).get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1)
    response, row, code = _ask_code(client, online, {**DETAILS, "csrf_token": token})
    assert row is not None
    assert client.post(_code_url(online, row), data={"code": code}).status_code == 400
    assert _count(Rdv) == 0


def test_verification_goes_at_night_too():
    quiet = policy.QuietHours.parse("20:00-08:00")
    night = datetime(2026, 6, 1, 23, 0, tzinfo=PARIS)
    assert policy.is_sendable_now("verification", "sms", night, quiet, PARIS) is None
    assert policy.immediate_time("verification", "sms", night, quiet, PARIS) == night


# --- who booked ---------------------------------------------------------------


def test_booked_via_agent_and_api(online, login, client):
    response = client.post(
        "/api/v1/rdvs",
        json={
            "motif_id": online.motif.id,
            "lieu_id": online.lieu.id,
            "agent_id": online.agent.id,
            "usager_id": online.usager.id,
            "starts_at": SLOT.isoformat(),
        },
        headers={"Authorization": f"Bearer {online.token}"},
    )
    assert response.status_code == 201 and response.get_json()["booked_via"] == "api"
    form = client.post(
        f"/rdvs/new?motif_id={online.motif.id}&lieu_id={online.lieu.id}"
        f"&agent_id={online.agent.id}&starts_at=2026-06-03T10:00:00%2B02:00",
        data={"usager_id": online.usager.id},
    )
    assert form.status_code == 302
    vias = sorted(db.session.scalars(select(Rdv.booked_via)))
    assert vias == ["agent", "api"]


def test_agent_sees_who_booked(online, login, client):
    _response, row, code = _ask_code(client, online)
    client.post(_code_url(online, row), data={"code": code})
    rdv = db.session.scalar(select(Rdv))
    page = html.unescape(client.get(f"/rdvs/{rdv.id}").get_data(as_text=True))
    assert "Pris en ligne par l'usager" in page
    agenda = client.get("/agenda?date=2026-06-04").get_data(as_text=True)
    assert "en ligne" in agenda


# --- settings -----------------------------------------------------------------


def test_admin_edits_motif_settings_others_cannot(client, online):
    online.agent.is_admin = True
    db.session.commit()
    response = client.post(
        "/login", data={"email": online.other_agent.email, "password": online.password}
    )
    assert client.get("/admin/prise-de-rdv").status_code == 403
    client.post("/logout")
    client.post("/login", data={"email": online.agent.email, "password": online.password})
    assert "Entretien social" in client.get("/admin/prise-de-rdv").get_data(as_text=True)
    url = f"/admin/prise-de-rdv/motifs/{online.long_motif.id}"
    client.post(
        url,
        data={
            "bookable_online": "y",
            "min_notice_hours": "24",
            "max_delay_days": "30",
            "public_description": "  Un entretien   d'une heure. ",
        },
    )
    motif = db.session.get(Motif, online.long_motif.id)
    db.session.refresh(motif)
    assert motif.bookable_online and motif.online_min_notice_minutes == 24 * 60
    assert (
        motif.online_max_delay_days == 30
        and motif.public_description == "Un entretien d'une heure."
    )
    bad = client.post(
        url, data={"min_notice_hours": "24", "max_delay_days": "0"}, follow_redirects=True
    )
    assert "Un délai maximum entre 1 et 365 jours." in bad.get_data(as_text=True)
    db.session.refresh(motif)
    assert motif.bookable_online and motif.online_max_delay_days == 30  # nothing half-written
    assert response.status_code == 302


def test_admin_sets_slug_and_switch(client, online):
    online.agent.is_admin = True
    db.session.commit()
    client.post("/login", data={"email": online.agent.email, "password": online.password})
    client.post(
        "/admin/prise-de-rdv/organisation", data={"slug": "Pas de Calais!", "online_booking": "y"}
    )
    db.session.refresh(online.org)
    assert online.org.slug == "test-62"
    client.post("/admin/prise-de-rdv/organisation", data={"slug": "pas-de-calais"})
    db.session.refresh(online.org)
    assert online.org.slug == "pas-de-calais" and not online.org.online_booking
    assert client.get("/prendre-rdv/pas-de-calais").status_code == 404


def test_seed_demo_opens_online_booking(runner, app):
    assert runner.invoke(args=["seed-demo"]).exit_code == 0
    org_motifs = db.session.scalars(select(Motif).where(Motif.bookable_online.is_(True))).all()
    assert {m.name for m in org_motifs} == {"Consultation PMI nourrisson", "Vaccination"}
    assert db.session.scalar(select(Lieu).limit(1)).organisation.slug == "demo"
    assert service.public_organisation("demo") is not None


# --- the manage link: move -----------------------------------------------------


def _booked_online(client, world, starts_at=SLOT) -> tuple[Rdv, str]:
    _response, row, code = _ask_code(client, world, starts_at=starts_at)
    client.post(_code_url(world, row), data={"code": code})
    rdv = db.session.scalar(select(Rdv).where(Rdv.starts_at == starts_at))
    return rdv, rdv.participations[0].cancel_code


def _move_links(html: str) -> list[datetime]:
    links = re.findall(r'href="(/c/[^"]*debut=[^"]*)"', html.replace("&amp;", "&"))
    return [datetime.fromisoformat(parse_qs(urlsplit(h).query)["debut"][0]) for h in links]


def test_manage_link_moves_to_a_free_slot_of_the_same_agent(client, online):
    rdv, code = _booked_online(client, online)
    messages_before = _count(Message)
    page = client.get(f"/c/{code}").get_data(as_text=True)
    assert "Déplacer ce rendez-vous" in page and "Annuler ce rendez-vous" in page
    choices = _move_links(client.get(f"/c/{code}?deplacer=1").get_data(as_text=True))
    assert choices and SLOT not in choices  # its own slot is taken, by itself
    assert min(choices) == datetime(2026, 6, 1, 14, 0, tzinfo=PARIS)  # notice kept
    new_start = SLOT + timedelta(days=1)
    confirm = client.get(
        f"/c/{code}?deplacer=1&debut={new_start.isoformat().replace('+', '%2B')}"
    ).get_data(as_text=True)
    assert "Confirmer le déplacement" in confirm and "vendredi 5 juin 2026 à 9h30" in confirm
    # GETs changed nothing.
    db.session.expire_all()
    assert db.session.get(Rdv, rdv.id).starts_at == SLOT and _count(Message) == messages_before

    moved = client.post(f"/c/{code}", data={"action": "move", "debut": new_start.isoformat()})
    assert moved.status_code == 200 and "Votre rendez-vous est déplacé" in moved.get_data(
        as_text=True
    )
    db.session.expire_all()
    rdv = db.session.get(Rdv, rdv.id)
    assert rdv.starts_at == new_start and rdv.agent_id == online.agent.id
    live = [m for m in rdv.messages if m.status == S.SCHEDULED]
    # What was unsent (the confirmation, the old reminder) is cancelled; a moved notice
    # and the new reminder are planned: an agent's move.
    assert sorted(m.kind for m in live) == ["moved", "reminder"]
    reminders = [m for m in rdv.messages if m.kind == "reminder"]
    assert {m.status for m in reminders} == {S.CANCELLED, S.SCHEDULED}
    assert [m.send_at for m in reminders if m.status == S.SCHEDULED] == [
        new_start - timedelta(hours=48)
    ]


def test_manage_link_refuses_a_slot_outside_the_window(client, online):
    rdv, code = _booked_online(client, online)
    for bad in (
        datetime(2026, 6, 1, 11, 0, tzinfo=PARIS),  # inside the 2 h notice
        datetime(2026, 8, 3, 9, 30, tzinfo=PARIS),  # past the 60 days
        datetime(2026, 6, 5, 9, 40, tzinfo=PARIS),  # not a slot of the grid
    ):
        response = client.post(f"/c/{code}", data={"action": "move", "debut": bad.isoformat()})
        assert response.status_code == 409, bad
        assert "choisissez-en un autre" in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Rdv, rdv.id).starts_at == SLOT


def test_manage_link_offers_no_move_for_an_agent_only_motif(client, online):
    rdv = book(
        online.org,
        motif_id=online.long_motif.id,
        lieu_id=online.lieu.id,
        agent_id=online.agent.id,
        usager_ids=[online.usager.id],
        starts_at=SLOT,
    )
    code = rdv.participations[0].cancel_code
    assert "Déplacer ce rendez-vous" not in client.get(f"/c/{code}").get_data(as_text=True)
    target = (SLOT + timedelta(days=1)).isoformat()
    response = client.post(f"/c/{code}", data={"action": "move", "debut": target})
    assert response.status_code == 409
    db.session.expire_all()
    assert db.session.get(Rdv, rdv.id).starts_at == SLOT


def test_the_retention_job_forgets_codes_nobody_entered(client, online, frozen):
    from scheduler.retention import retention_job

    _response, row, code = _ask_code(client, online)
    assert retention_job()["expired_codes"] == 0  # still live
    frozen.shift(timedelta(minutes=11))
    assert retention_job()["expired_codes"] == 1
    db.session.expire_all()
    row = db.session.get(VerificationCode, row.id)
    assert row.status == "expired" and code not in row.message.body and row.message.body == ""
    assert row.message.status == S.CANCELLED  # never sent: no stale code goes out


# --- races (two sessions, whatever the database) ---------------------------------


def _race(app, *attempts) -> list:
    """Run each callable in its own thread and session, released together; their outcomes."""
    barrier = threading.Barrier(len(attempts))
    outcomes: list = []

    def run(attempt):
        with app.app_context():
            try:
                barrier.wait()
                outcomes.append(attempt())
            except (DomainError, ValidationFailed) as exc:
                outcomes.append(exc.code)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=run, args=(a,)) for a in attempts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(outcomes)


def _hold(world, phone):
    # Ids read here, in the test's thread: the world's objects belong to its session.
    org_id, motif_id, lieu_id, agent_id = (
        world.org.id,
        world.motif.id,
        world.lieu.id,
        world.agent.id,
    )

    def attempt():
        org = db.session.get(Organisation, org_id)
        details = {**DETAILS, "phone": phone, "notify_sms": True, "notify_email": True}
        motif, lieu = db.session.get(Motif, motif_id), db.session.get(Lieu, lieu_id)
        service.request_code(org, motif, lieu, agent_id, SLOT, details)
        return "held"

    return attempt


def test_two_usagers_racing_for_one_slot_hold_it_once(app, online):
    outcomes = _race(app, _hold(online, "06 11 11 11 11"), _hold(online, "06 22 22 22 22"))
    assert outcomes == ["held", "slot_taken"]
    db.session.expire_all()
    assert db.session.scalar(select(func.count()).where(VerificationCode.status == "pending")) == 1


def test_a_usager_and_an_agent_racing_for_one_slot(app, online):
    ids = (online.org.id, online.motif.id, online.lieu.id, online.agent.id, online.usager.id)

    def agent():
        org = db.session.get(Organisation, ids[0])
        book(
            org,
            motif_id=ids[1],
            lieu_id=ids[2],
            agent_id=ids[3],
            usager_ids=[ids[4]],
            starts_at=SLOT,
        )
        return "booked"

    outcomes = _race(app, _hold(online, "06 11 11 11 11"), agent)
    assert outcomes in (["booked", "slot_taken"], ["held", "slot_taken"])
    db.session.expire_all()
    holds = db.session.scalar(select(func.count()).where(VerificationCode.status == "pending"))
    assert holds + _count(Rdv) == 1


def test_the_right_code_posted_twice_at_once_books_once(app, client, online):
    _response, row, code = _ask_code(client, online)
    row_id = row.id

    def post():
        service.check_code(db.session.get(VerificationCode, row_id), code)
        return "booked"

    assert _race(app, post, post) == ["booked", "code_used"]
    db.session.expire_all()
    assert _count(Rdv) == 1


def test_a_lieu_without_the_motif_or_of_another_organisation_is_404(client, online):
    empty = Lieu(organisation_id=online.org.id, name="Antenne fermée", address="1 rue Y")
    other_org = make_org(name="Autre")
    foreign = Lieu(organisation_id=other_org.id, name="Ailleurs", address="2 rue Z")
    db.session.add_all([empty, foreign])
    db.session.commit()
    for lieu in (empty, foreign):
        url = f"/prendre-rdv/test-62/creneau?motif={online.motif.id}&lieu={lieu.id}"
        assert client.get(url).status_code == 404
    lieux = client.get(f"/prendre-rdv/test-62/lieu?motif={online.motif.id}").get_data(as_text=True)
    assert "Antenne fermée" not in lieux and "Ailleurs" not in lieux


def test_online_booking_can_ask_for_the_waiting_list(client, online):
    page = client.get(_slot_url(online)).get_data(as_text=True)
    assert "Prévenez-moi si un créneau plus tôt se libère" in page
    _, row, code = _ask_code(client, online, details={**DETAILS, "waitlist": "y"})
    assert row.waitlist is True
    client.post(_code_url(online, row), data={"code": code})
    db.session.expire_all()
    assert db.session.scalar(select(Rdv)).waitlist is True


def test_online_booking_is_off_the_waiting_list_unless_asked(client, online):
    _, row, code = _ask_code(client, online)
    client.post(_code_url(online, row), data={"code": code})
    db.session.expire_all()
    assert db.session.scalar(select(Rdv)).waitlist is False
