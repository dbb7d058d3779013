"""Online booking in a real browser, as a usager on a desktop and on a 390 px phone:
from /prendre-rdv to the code read in the simulator's outbox (by an agent, logged
in on another page), to the confirmation; then moving and cancelling from the link.

Every step is plain HTML: the test goes back with the browser's back button once
to show the steps keep their state in the URL.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from gateway.extensions import db
from gateway.models import Rdv

from .conftest import _open_page
from .test_browser_agent import log_in
from .test_browser_loop import run_pipeline, sms_thread

CODE = re.compile(r"\b(\d{6}) est votre code")


@pytest.fixture(params=["desktop", "phone-390"])
def usager(request, browser, live_server):
    """The usager's browser: a desktop window, or a 390 px wide touch phone."""
    options = {}
    if request.param == "phone-390":
        options = {
            "viewport": {"width": 390, "height": 844},
            "device_scale_factor": 2,
            "is_mobile": True,
            "has_touch": True,
        }
    yield from _open_page(browser, live_server, request, **options)


@pytest.fixture
def online_world(world):
    world.org.slug = "test-62"
    world.org.online_booking = True
    world.motif.bookable_online = True
    world.motif.public_description = "Suivi du nourrisson."
    world.lieu.address = "12 rue X, 62100 Calais"
    world.other_lieu.address = "3 place des Héros, 62000 Arras"
    db.session.commit()
    return world


def fits(page: Page) -> None:
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), page.url


def read_code(agent: Page, live_app) -> str:
    """The agent's simulator outbox shows the SMS the usager received: read the code."""
    run_pipeline(live_app)
    agent.goto("/simulator/outbox")
    bubble = sms_thread(agent, "06 11 22 33 44").locator(".bubble.in").filter(has_text="code")
    return CODE.search(bubble.last.inner_text()).group(1)


def test_usager_books_moves_and_cancels_online(usager: Page, page: Page, online_world, live_app):
    world = online_world
    log_in(page, world)

    usager.goto("/prendre-rdv")
    fits(usager)
    usager.get_by_role("link", name="Département test").click()
    expect(usager.locator(".fr-stepper__state")).to_have_text("Étape 1 sur 6")
    usager.get_by_role("link", name="Consultation PMI").click()
    usager.get_by_label(re.compile("Votre code postal")).fill("62000")
    usager.get_by_role("button", name="Trier par proximité").click()
    lieux = usager.locator(".online-lieu a.fr-btn")
    expect(lieux.first).to_have_text("PMI Arras")
    fits(usager)
    usager.get_by_role("link", name="MDS Calais").click()
    expect(usager.locator(".fr-stepper__state")).to_have_text("Étape 3 sur 6")
    fits(usager)
    first_slot = usager.locator(".online-slots a").first
    first_label = first_slot.get_attribute("aria-label")
    first_slot.click()
    expect(usager.locator(".fr-stepper__state")).to_have_text("Étape 4 sur 6")

    # Back and forth: the steps are URLs.
    usager.go_back()
    expect(usager.locator(".fr-stepper__state")).to_have_text("Étape 3 sur 6")
    usager.get_by_role("link", name=first_label, exact=True).click()

    usager.get_by_label("Prénom").fill("Inès")
    usager.get_by_label("Nom", exact=True).fill("Petit")
    usager.get_by_label(re.compile("Téléphone mobile")).fill("06 11 22 33 44")
    fits(usager)
    usager.get_by_role("button", name="Recevoir le code de confirmation").click()
    expect(usager.locator(".fr-stepper__state")).to_have_text("Étape 5 sur 6")
    expect(usager.get_by_text("06 •• •• •• 44")).to_be_visible()

    code = read_code(page, live_app)
    usager.get_by_label(re.compile("Code reçu")).fill("000000" if code != "000000" else "111111")
    usager.get_by_role("button", name="Confirmer le rendez-vous").click()
    expect(usager.get_by_role("alert")).to_contain_text("Code erroné. Il vous reste 4 essais.")
    # The wrong code's page is a 422, which the browser logs: that one is expected.
    assert [e for e in usager.console_errors if "422" in e] == [
        "Failed to load resource: the server responded with a status of 422 (UNPROCESSABLE ENTITY)"
    ]
    usager.console_errors.clear()
    usager.get_by_label(re.compile("Code reçu")).fill(code)
    usager.get_by_role("button", name="Confirmer le rendez-vous").click()
    expect(usager.get_by_role("heading", name="Votre rendez-vous est confirmé")).to_be_visible()
    fits(usager)

    with live_app.app_context():
        rdv = db.session.scalar(select(Rdv))
        assert rdv.booked_via == "online"
        booked_at = rdv.starts_at
    # The confirmation SMS arrives; the agent sees the rdv marked as booked online.
    run_pipeline(live_app)
    page.goto("/simulator/outbox")
    expect(
        sms_thread(page, "06 11 22 33 44").locator(".bubble.in").filter(has_text="ANNULER")
    ).to_have_count(1)
    local_day = booked_at.astimezone(world.org.tz).date().isoformat()
    page.goto(f"/agenda?date={local_day}")
    expect(page.locator(".booked-online")).to_have_count(1)

    # Move from the link, then cancel.
    usager.get_by_role("link", name="Déplacer ou annuler ce rendez-vous").click()
    manage_url = usager.url
    usager.get_by_role("link", name="Déplacer ce rendez-vous").click()
    fits(usager)
    usager.locator(".online-slots a").nth(1).click()
    usager.get_by_role("button", name="Confirmer le déplacement").click()
    expect(usager.get_by_role("heading", level=1)).to_have_text("Votre rendez-vous est déplacé")
    with live_app.app_context():
        moved = db.session.get(Rdv, rdv.id)
        assert moved.starts_at != booked_at and moved.status == "unknown"
    run_pipeline(live_app)
    page.goto("/simulator/outbox")
    expect(
        sms_thread(page, "06 11 22 33 44").locator(".bubble.in").filter(has_text="déplacé au")
    ).to_have_count(1)

    usager.goto(manage_url)
    usager.get_by_role("button", name="Annuler ce rendez-vous").click()
    expect(usager.get_by_role("heading", level=1)).to_have_text("Votre rendez-vous est annulé")
    with live_app.app_context():
        assert db.session.get(Rdv, rdv.id).status == "excused"
