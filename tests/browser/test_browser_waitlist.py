"""The waiting list in real browsers, on the demo data of ``make run``: an agent cancels
a demo rdv, the demo usager on the waiting list gets the offer in the simulator's
outbox, takes the slot from their phone, and the statistics count it re-filled."""

from __future__ import annotations

import re

from flask import Flask
from playwright.sync_api import Page, expect
from sqlalchemy import select

from gateway.extensions import db
from gateway.models import Organisation, Participation, Rdv, Usager
from gateway.seed import DEMO_AGENTS, DEMO_PASSWORD, seed_demo
from gateway.timeutil import utcnow
from gateway.waitlist import dispatch_freed_slots
from scheduler.dispatch import dispatch_due
from scheduler.queue import run_pending

from .test_browser_loop import sms_thread

OFFER_LINK = re.compile(r"https?://\S+/o/[A-Za-z0-9]{10,}")


def run_scheduler(live_app: Flask) -> None:
    """What the embedded scheduler and worker do, until nothing is left."""
    with live_app.app_context():
        while dispatch_freed_slots() + dispatch_due() + run_pending(live_app):
            pass


def test_cancelling_a_demo_rdv_offers_it_and_the_waiting_usager_takes_it(
    page: Page, phone: Page, live_app
):
    with live_app.app_context():
        seed_demo()
        org = db.session.scalar(select(Organisation).where(Organisation.name.like("%monstration")))
        camille = db.session.scalar(select(Usager).where(Usager.last_name == "Roux"))
        waiting = db.session.scalar(
            select(Rdv)
            .join(Participation)
            .where(Participation.usager_id == camille.id, Rdv.waitlist.is_(True))
        )
        first = db.session.scalar(
            select(Rdv)
            .where(
                Rdv.organisation_id == org.id,
                Rdv.motif_id == waiting.motif_id,
                Rdv.lieu_id == waiting.lieu_id,
                Rdv.id != waiting.id,
                Rdv.starts_at > utcnow(),  # the demo also has past rdvs
            )
            .order_by(Rdv.starts_at)
        )
        ids = {"org": org.id, "first": first.id, "waiting": waiting.id}
        freed_start = first.starts_at
        db.session.remove()
    run_scheduler(live_app)  # the demo's confirmations

    # The demo's past rdvs have their own freed and re-filled slots: count from here.
    page.goto(f"/stats?organisation_id={ids['org']}")
    before = {k: int(page.locator(f"#{k}").inner_text()) for k in ("refilled", "freed-by-usagers")}
    page.goto("/login")
    page.get_by_label("Adresse e-mail").fill(DEMO_AGENTS[0][0])
    page.get_by_label("Mot de passe").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Se connecter").click()
    page.goto(f"/rdvs/{ids['first']}")
    page.get_by_role("link", name="Annuler le rendez-vous").click()
    page.get_by_role("button", name="Confirmer l'annulation").click()
    expect(page.get_by_role("status")).to_contain_text("Rendez-vous annulé")

    run_scheduler(live_app)
    page.get_by_role("link", name="Simulateur (SMS et e-mails)").click()
    offer = sms_thread(page, "06 11 22 33 44").locator(".bubble.in").filter(has_text="/o/")
    expect(offer).to_have_count(1)
    expect(offer).to_contain_text("Une place PMI s'est libérée")
    link = OFFER_LINK.search(offer.inner_text()).group(0)

    phone.goto(link)
    expect(phone.get_by_role("heading", level=1)).to_have_text("Un créneau plus tôt s'est libéré")
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    phone.get_by_role("button", name="Prendre ce créneau").click()
    expect(phone.get_by_role("heading", level=1)).to_have_text(
        "C'est fait : votre rendez-vous est avancé"
    )
    phone.goto(link)  # the link again: it says it is done, it changes nothing
    expect(phone.get_by_role("heading", level=1)).to_have_text(
        "C'est fait : votre rendez-vous est avancé"
    )

    with live_app.app_context():
        moved = db.session.get(Rdv, ids["waiting"])
        assert moved.starts_at == freed_start
        db.session.remove()
    run_scheduler(live_app)
    page.goto("/simulator/outbox")
    expect(
        sms_thread(page, "06 11 22 33 44").locator(".bubble.in").filter(has_text="déplacé")
    ).to_have_count(1)
    page.goto(f"/usagers/{camille.id}")
    expect(page.locator("body")).to_contain_text("pris")
    page.goto(f"/stats?organisation_id={ids['org']}")
    expect(page.locator("#refilled")).to_have_text(str(before["refilled"] + 1))
    # Camille left hers
    expect(page.locator("#freed-by-usagers")).to_have_text(str(before["freed-by-usagers"] + 1))
