"""Agent pages through the test client: login, agenda, the booking form, the rdv page."""

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import func, select

from gateway import create_app
from gateway.extensions import db
from gateway.models import Rdv, Usager

from ..factories import book_rdv, make_agent, make_org

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 6, 1, 10, 0, tzinfo=PARIS)


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.mark.parametrize("path", ["/agenda", "/rdvs/new", "/rdvs/1", "/"])
def test_agent_pages_need_login(client, world, path):
    r = client.get(path)
    assert r.status_code == 302 and "/login" in r.headers["Location"]


def test_login_with_wrong_password_is_refused_with_an_error_beside_the_field(client, world):
    r = client.post("/login", data={"email": world.agent.email, "password": "wrong"})
    assert r.status_code == 422
    assert "E-mail ou mot de passe incorrect." in r.get_data(as_text=True)
    assert client.get("/agenda").status_code == 302


def test_login_never_redirects_off_site(client, world):
    r = client.post(
        "/login?next=//evil.example/x",
        data={"email": world.agent.email, "password": world.password},
    )
    assert r.headers["Location"] == "/agenda"


def test_booking_through_the_form_for_a_new_usager(login, world):
    page = login.get("/rdvs/new").get_data(as_text=True)
    assert "Consultation PMI" in page
    page = login.get(f"/rdvs/new?motif_id={world.motif.id}").get_data(as_text=True)
    assert "MDS Calais" in page
    page = login.get(f"/rdvs/new?motif_id={world.motif.id}&lieu_id={world.lieu.id}").get_data(
        as_text=True
    )
    slot_links = re.findall(r'href="(/rdvs/new\?[^"]*starts_at=[^"]+)"', page)
    assert slot_links, "free slots are listed as links"
    form_url = slot_links[0].replace("&amp;", "&")
    page = login.get(form_url).get_data(as_text=True)
    assert "Créer l&#39;usager et réserver" in page or "Créer l'usager et réserver" in page
    from urllib.parse import parse_qs, urlsplit

    params = {k: v[0] for k, v in parse_qs(urlsplit(form_url).query).items()}
    bad = login.post(
        "/rdvs/new",
        data={
            **params,
            "first_name": "Inès",
            "last_name": "Petit",
            "phone": "01 44 55 66 77",
            "notify_sms": "y",
        },
    )
    assert bad.status_code == 422
    assert "il ne peut pas recevoir de SMS" in bad.get_data(as_text=True)
    assert db.session.scalar(select(func.count(Rdv.id))) == 0
    assert db.session.scalar(select(func.count(Usager.id))) == 2  # nothing half-written
    ok = login.post(
        "/rdvs/new",
        data={
            **params,
            "first_name": "Inès",
            "last_name": "Petit",
            "phone": "06 11 22 33 44",
            "notify_sms": "y",
        },
    )
    assert ok.status_code == 302
    rdv = db.session.scalar(select(Rdv))
    assert ok.headers["Location"] == f"/rdvs/{rdv.id}"
    assert rdv.usagers[0].phone == "+33611223344" and rdv.usagers[0].notify_email is False
    page = login.get(f"/rdvs/{rdv.id}").get_data(as_text=True)
    assert "Confirmation" in page and "Programmé" in page


def test_booking_for_a_known_usager_found_by_phone(login, world):
    starts = "2026-06-05T10:00:00+02:00"
    base = (
        f"/rdvs/new?motif_id={world.motif.id}&lieu_id={world.lieu.id}"
        f"&agent_id={world.agent.id}&starts_at={starts}"
    )
    page = login.get(base.replace("+", "%2B") + "&q=06+12+34+56+78").get_data(as_text=True)
    assert "Réserver pour Léa Dupont" in page
    r = login.post(
        "/rdvs/new",
        data={
            "motif_id": world.motif.id,
            "lieu_id": world.lieu.id,
            "agent_id": world.agent.id,
            "starts_at": starts,
            "usager_id": world.usager.id,
        },
    )
    assert r.status_code == 302
    again = login.post(
        "/rdvs/new",
        data={
            "motif_id": world.motif.id,
            "lieu_id": world.lieu.id,
            "agent_id": world.agent.id,
            "starts_at": starts,
            "usager_id": world.email_usager.id,
        },
    )
    assert again.status_code == 409
    assert "plus libre" in again.get_data(as_text=True)


def test_rdv_page_actions_cancel_and_agenda(login, world):
    r = login.post(
        "/rdvs/new",
        data={
            "motif_id": world.motif.id,
            "lieu_id": world.lieu.id,
            "agent_id": world.agent.id,
            "starts_at": "2026-06-01T14:00:00+02:00",
            "usager_id": world.usager.id,
        },
    )
    rdv_id = int(r.headers["Location"].rsplit("/", 1)[1])
    agenda = login.get("/agenda?date=2026-06-01").get_data(as_text=True)
    assert "Léa Dupont" in agenda and "14:00" in agenda
    login.post(f"/rdvs/{rdv_id}/cancel")
    page = login.get(f"/rdvs/{rdv_id}").get_data(as_text=True)
    assert "Annulé par le service" in page and "un agent" in page


def test_an_agent_never_sees_another_organisation(client, world):
    other = make_org(name="Autre département")
    make_agent(other, "intrus@example.org", password="another long password")
    db.session.commit()
    r = client.post("/api/v1/rdvs", json={}, headers={"Authorization": f"Bearer {world.token}"})
    assert r.status_code == 422
    client.post("/login", data={"email": "intrus@example.org", "password": "another long password"})
    booked = client.application.test_client()
    booked.post("/login", data={"email": world.agent.email, "password": world.password})
    r = booked.post(
        "/rdvs/new",
        data={
            "motif_id": world.motif.id,
            "lieu_id": world.lieu.id,
            "agent_id": world.agent.id,
            "starts_at": "2026-06-05T10:00:00+02:00",
            "usager_id": world.usager.id,
        },
    )
    assert r.status_code == 302, r.get_data(as_text=True)
    rdv_id = int(r.headers["Location"].rsplit("/", 1)[1])
    assert client.get(f"/rdvs/{rdv_id}").status_code == 404
    assert client.post(f"/rdvs/{rdv_id}/cancel").status_code == 404
    assert client.get(f"/rdvs/new?motif_id={world.motif.id}").status_code == 404
    assert "Léa Dupont" not in client.get("/agenda?date=2026-06-05&agent=all").get_data(
        as_text=True
    )


def test_csrf_is_enforced_on_forms(app_config, _migrated, world):
    csrf_app = create_app({**app_config, "WTF_CSRF_ENABLED": True})
    c = csrf_app.test_client()
    assert (
        c.post("/login", data={"email": world.agent.email, "password": world.password}).status_code
        == 400
    )
    page = c.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    assert (
        c.post(
            "/login",
            data={"email": world.agent.email, "password": world.password, "csrf_token": token},
        ).status_code
        == 302
    )


def test_security_headers_on_pages(client, world):
    r = client.get("/login")
    assert r.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
    assert r.headers["X-Content-Type-Options"] == "nosniff"


def test_health(client, app):
    r = client.get("/health")
    assert r.status_code == 200
    assert r.json["database"]["status"] == "ok"
    assert r.json["queue"]["status"] == "ok"


def test_moving_an_rdv_marked_absent_is_refused_with_a_french_message(login, world):
    """Issue 11, defect 5, on the agent form: the rdv was moved and the usager texted."""
    from gateway.booking import record_outcome

    rdv = book_rdv(
        world,
        datetime(2026, 6, 1, 11, 0, tzinfo=PARIS),
        now=datetime(2026, 5, 29, 10, 0, tzinfo=PARIS),
    )
    record_outcome(rdv, "noshow", now=NOW + timedelta(hours=2))
    with time_machine.travel(NOW + timedelta(hours=3), tick=False):
        r = login.post(
            f"/rdvs/{rdv.id}/move",
            data={"starts_at": "2026-06-03T10:00", "lieu_id": world.lieu.id},
            follow_redirects=True,
        )
    page = r.get_data(as_text=True)
    assert "Ce rendez-vous a déjà eu lieu : il ne peut plus être déplacé." in page
    db.session.expire_all()
    assert db.session.get(Rdv, rdv.id).starts_at == datetime(2026, 6, 1, 11, 0, tzinfo=PARIS)


def test_the_move_form_offers_the_free_slots_of_the_agent_a_few_days_at_a_time(login, world):
    """Issue 14: the move form took any time; it now lists the free slots to choose from."""
    rdv = book_rdv(world, datetime(2026, 6, 2, 9, 0, tzinfo=PARIS), now=NOW)
    book_rdv(world, datetime(2026, 6, 2, 10, 0, tzinfo=PARIS), usager=world.email_usager, now=NOW)
    page = login.get(f"/rdvs/{rdv.id}").get_data(as_text=True)
    offered = re.findall(r'name="starts_at" value="([^"]+)"', page)
    assert 'type="datetime-local"' not in page
    assert "2026-06-02T09:30:00+02:00" in offered and "2026-06-02T10:30:00+02:00" in offered
    assert "2026-06-02T10:00:00+02:00" not in offered  # taken
    assert "2026-06-02T09:00:00+02:00" not in offered  # where the rdv already is
    assert "2026-06-01T14:00:00+02:00" in offered  # today, still ahead
    assert all("2026-06-01" <= v[:10] <= "2026-06-07" for v in offered)
    later = login.get(f"/rdvs/{rdv.id}?move_from=2026-06-08&move_lieu_id={world.other_lieu.id}")
    later_page = later.get_data(as_text=True)
    later_offered = re.findall(r'name="starts_at" value="([^"]+)"', later_page)
    assert later_offered and all("2026-06-08" <= v[:10] <= "2026-06-14" for v in later_offered)
    assert f'name="lieu_id" value="{world.other_lieu.id}"' in later_page

    r = login.post(
        f"/rdvs/{rdv.id}/move",
        data={"starts_at": later_offered[0], "lieu_id": world.other_lieu.id},
        follow_redirects=True,
    )
    assert "Rendez-vous déplacé" in r.get_data(as_text=True)
    db.session.expire_all()
    moved = db.session.get(Rdv, rdv.id)
    assert moved.starts_at == datetime.fromisoformat(later_offered[0])
    assert moved.lieu_id == world.other_lieu.id


def test_a_move_form_posted_off_the_grid_says_why_in_french(login, world):
    rdv = book_rdv(world, datetime(2026, 6, 2, 9, 0, tzinfo=PARIS), now=NOW)
    r = login.post(
        f"/rdvs/{rdv.id}/move",
        data={"starts_at": "2026-06-03T15:10:00+02:00", "lieu_id": world.lieu.id},
        follow_redirects=True,
    )
    page = r.get_data(as_text=True)
    assert "ne correspond à aucun créneau" in page and "15:00 ou 15:30" in page
    db.session.expire_all()
    assert db.session.get(Rdv, rdv.id).starts_at == datetime(2026, 6, 2, 9, 0, tzinfo=PARIS)
