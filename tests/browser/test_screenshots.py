"""Screenshots of the main pages for the README (``make screenshots``), taken from the
demo data (``gateway seed-demo``) in a real browser, so they never go stale.

Always run with the browser tests (they check what they show); the PNGs go to
``$SCREENSHOTS_DIR`` (``make screenshots``: docs/screenshots/), else to a temporary
folder.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from gateway.extensions import db
from gateway.models import Organisation, Participation, Rdv
from gateway.seed import DEMO_AGENTS, DEMO_PASSWORD, seed_demo
from gateway.timeutil import utcnow

from .test_browser_loop import run_pipeline

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def shots(tmp_path) -> Path:
    folder = Path(os.environ.get("SCREENSHOTS_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def demo(live_app):
    """The demo organisation, its confirmations sent; the first upcoming rdv and its link.

    With the State identity (``BRAND=etat``): the look of the services Lapin serves."""
    live_app.config["BRAND"] = "etat"
    with live_app.app_context():
        seed_demo()
    run_pipeline(live_app)
    with live_app.app_context():
        org = db.session.scalar(
            select(Organisation).where(Organisation.name == "Département de démonstration")
        )
        rdv = db.session.scalar(
            select(Rdv)
            .where(Rdv.organisation_id == org.id, Rdv.starts_at > utcnow())
            .order_by(Rdv.starts_at)
            .limit(1)
        )
        code = db.session.scalar(
            select(Participation.cancel_code).where(Participation.rdv_id == rdv.id)
        )
        return {"rdv_id": rdv.id, "code": code, "day": rdv.starts_at.date().isoformat()}


def shoot(page: Page, shots: Path, name: str, top: str | None = None) -> None:
    """The viewport as a PNG; ``top``: the id of the element to scroll to the top first."""
    # A selector, not a JS predicate: polling a predicate evaluates a string, which the
    # pages' CSP (no unsafe-eval) refuses when the DSFR script is not there yet.
    page.locator("html[data-fr-js='true']").wait_for(state="attached")
    if top:
        page.evaluate(f"document.getElementById('{top}').scrollIntoView()")
    page.screenshot(path=str(shots / f"{name}.png"))


def test_screenshots_of_the_main_pages(page: Page, browser, live_server, demo, shots):
    page.set_viewport_size(DESKTOP)
    page.goto("/login")
    page.get_by_label("Adresse e-mail").fill(DEMO_AGENTS[0][0])
    page.get_by_label("Mot de passe").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Se connecter").click()
    expect(page).to_have_url(re.compile(r"/agenda$"))

    page.goto(f"/agenda?date={demo['day']}&view=week&agent=all")
    expect(page.locator(".agenda-table").first).to_be_visible()
    shoot(page, shots, "agenda")

    page.get_by_role("link", name="Nouveau rendez-vous").click()
    page.get_by_role("link", name=re.compile("Consultation PMI")).click()
    page.get_by_role("link", name=re.compile("MDS Calais")).click()
    expect(page.locator("a.slot").first).to_be_visible()
    shoot(page, shots, "booking")

    page.goto(f"/rdvs/{demo['rdv_id']}")
    expect(page.locator("#timeline")).to_contain_text("Reçu")
    shoot(page, shots, "rdv-timeline", top="chronologie")

    page.goto("/simulator/outbox")
    expect(page.locator(".bubble.in").first).to_be_visible()
    shoot(page, shots, "outbox")

    page.goto("/stats")
    expect(page.locator("#noshow-rate")).not_to_have_text("—")
    expect(page.locator("#chart-noshow")).to_be_visible()
    shoot(page, shots, "stats", top="chiffres-cles")

    # The usager's cancellation link, on a phone.
    phone = browser.new_context(
        base_url=live_server, viewport=PHONE, is_mobile=True, has_touch=True, locale="fr-FR"
    )
    try:
        usager = phone.new_page()
        usager.goto(f"/c/{demo['code']}")
        expect(usager.get_by_role("button", name="Annuler ce rendez-vous")).to_be_visible()
        shoot(usager, shots, "usager-link-phone")
    finally:
        phone.close()
    assert sorted(p.name for p in shots.glob("*.png")) == [
        "agenda.png",
        "booking.png",
        "outbox.png",
        "rdv-timeline.png",
        "stats.png",
        "usager-link-phone.png",
    ]
