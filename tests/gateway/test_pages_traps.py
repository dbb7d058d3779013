"""What a new agent stumbled on (issue 14): the booking form creating the same usager
again, forms reporting one error at a time, an agenda hiding cancellations,
confirmations and SMS opt-outs."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select

from gateway.booking import book, cancel
from gateway.extensions import db
from gateway.models import Rdv, Usager

from .test_pages import NOW, PARIS, frozen  # noqa: F401  (the same frozen Monday 10:00)


def _slot(world, hour=14) -> dict:
    return {
        "motif_id": world.motif.id,
        "lieu_id": world.lieu.id,
        "agent_id": world.agent.id,
        "starts_at": f"2026-06-02T{hour}:00:00+02:00",
    }


def _usagers() -> int:
    return db.session.scalar(select(func.count()).select_from(Usager))


def test_the_same_usager_again_is_proposed_not_created(login, world):
    """Before: a second "Léa Dupont, 06 12 34 56 78" was created at each booking."""
    before = _usagers()
    r = login.post(
        "/rdvs/new",
        data={
            **_slot(world),
            "first_name": " léa ",
            "last_name": "DUPONT",
            "phone": "06 12 34 56 78",
        },
    )
    html = r.get_data(as_text=True)
    assert r.status_code == 409
    assert "Cet usager existe déjà" in html
    assert f'name="usager_id" value="{world.usager.id}"' in html
    assert _usagers() == before
    assert db.session.scalar(select(func.count()).select_from(Rdv)) == 0

    # Booking for the proposed one.
    r = login.post("/rdvs/new", data={**_slot(world), "usager_id": world.usager.id})
    assert r.status_code == 302 and _usagers() == before

    # Or, on purpose, a homonym with the same number (twins sharing a phone).
    r = login.post(
        "/rdvs/new",
        data={
            **_slot(world, hour=11),
            "first_name": "Léa",
            "last_name": "Dupont",
            "phone": "06 12 34 56 78",
            "allow_duplicate": "1",
        },
    )
    assert r.status_code == 302 and _usagers() == before + 1


def test_the_booking_form_reports_every_invalid_field_at_once(login, world):
    r = login.post(
        "/rdvs/new",
        data={**_slot(world), "first_name": "", "last_name": "", "phone": "12", "email": "pas@"},
    )
    html = r.get_data(as_text=True)
    assert r.status_code == 422
    for message in ("Le prénom est obligatoire.", "Le nom est obligatoire.", "pas@"):
        assert message in html
    assert html.count('class="fr-message fr-message--error"') == 4
    assert "4 champs sont à corriger" in html
    assert html.count('aria-invalid="true"') == 4
    assert _usagers() == 2  # the world's


def test_the_login_form_reports_both_fields(client, world):
    html = client.post("/login", data={"email": "", "password": ""}).get_data(as_text=True)
    assert "2 champs sont à corriger" in html
    assert html.count('class="fr-message fr-message--error"') == 2


def test_the_agenda_shows_cancellations_confirmations_and_opt_outs(login, world):
    """Before: a cancelled rdv looked like a live one; confirmations and STOP were hidden."""
    booked = {}
    for hour in (9, 10, 11):
        booked[hour] = book(
            world.org,
            motif_id=world.motif.id,
            lieu_id=world.lieu.id,
            agent_id=world.agent.id,
            usager_ids=[world.usager.id if hour != 11 else world.email_usager.id],
            starts_at=datetime(2026, 6, 2, hour, 0, tzinfo=PARIS),
        )
    cancel(booked[9], via="link")
    booked[10].confirmed_at = NOW
    world.email_usager.sms_opted_out = True
    db.session.commit()
    html = login.get("/agenda?date=2026-06-02").get_data(as_text=True)
    rows = {hour: html[html.index(f"{hour:02d}:00–") :].split("</tr>")[0] for hour in (9, 10, 11)}
    assert "(annulé)" in rows[9] and "Annulé par l&#39;usager" in rows[9]
    assert html.count('class="rdv-excused"') == 1
    assert "Venue confirmée" in rows[10] and "Venue confirmée" not in rows[9]
    assert "SMS refusés (STOP)" in rows[11] and "SMS refusés" not in rows[10]
