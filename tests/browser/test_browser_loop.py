"""The whole loop in real browsers: an agent books, the SMS arrives in the simulator's
outbox, the usager cancels from their phone by the link or by replying ANNULER, and
the agent sees the slot free again, the timeline and the statistics.

The pipeline runs when the test says so (:func:`run_pipeline`, in this process,
on the live server's app and database), so nothing depends on timing.
"""

from __future__ import annotations

import re

from flask import Flask
from playwright.sync_api import Page, expect

from scheduler.dispatch import dispatch_due
from scheduler.queue import run_pending

from .test_browser_agent import choose_slot, log_in

CANCEL_LINK = re.compile(r"https?://\S+/c/[A-Za-z0-9]{10,}")


def run_pipeline(live_app: Flask) -> None:
    """Dispatch what is due and run the queued jobs until nothing is left (replies included)."""
    with live_app.app_context():
        while dispatch_due() + run_pending(live_app):
            pass


def sms_thread(page: Page, number: str):
    """The outbox's conversation with ``number`` (displayed as ``06 11 22 33 44``)."""
    return page.get_by_role("region", name=re.compile(number))


def test_the_link_in_the_sms_cancels_from_a_phone_and_the_slot_is_free_again(
    page: Page, phone: Page, world, live_app
):
    log_in(page, world)
    slot_href = choose_slot(page, world)
    page.get_by_label("Prénom").fill("Inès")
    page.get_by_label("Nom", exact=True).fill("Petit")
    page.get_by_label("Téléphone mobile").fill("06 11 22 33 44")
    page.get_by_role("button", name="Créer l'usager et réserver").click()
    expect(page).to_have_url(re.compile(r"/rdvs/\d+$"))
    rdv_url = page.url

    run_pipeline(live_app)
    page.get_by_role("link", name="Simulateur (SMS et e-mails)").click()
    thread = sms_thread(page, "06 11 22 33 44")
    confirmation = thread.locator(".bubble.in").filter(has_text="répondez ANNULER")
    expect(confirmation).to_contain_text("Confirmation")
    link = CANCEL_LINK.search(confirmation.inner_text()).group(0)

    # The usager, on their phone: the page fits the screen, the button is big enough
    # to tap, reached and pressed with the keyboard; only that POST cancels.
    phone.goto(link)
    expect(phone.get_by_role("heading", level=1)).to_have_text("Votre rendez-vous")
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    button = phone.get_by_role("button", name="Annuler ce rendez-vous")
    assert button.bounding_box()["height"] >= 44
    button.focus()
    phone.keyboard.press("Enter")
    expect(phone.get_by_role("heading", level=1)).to_have_text("Votre rendez-vous est annulé")
    expect(phone.get_by_role("status")).to_contain_text("le créneau est de nouveau libre")

    # The agent: the slot is offered again, the timeline says how, the stats count it.
    page.goto(slot_href.split("&agent_id")[0])
    expect(page.locator(f'a.slot[href="{slot_href}"]')).to_have_count(1)
    page.goto(rdv_url)
    expect(page.locator("#timeline")).to_contain_text("Rendez-vous annulé par le lien d'annulation")
    page.get_by_role("link", name="Statistiques", exact=True).click()
    expect(page.locator('#cancellations-table tfoot td[data-via="link"]')).to_have_text("1")

    # And the usager's phone gets the cancellation SMS.
    run_pipeline(live_app)
    page.goto("/simulator/outbox")
    expect(sms_thread(page, "06 11 22 33 44").locator(".bubble.in")).to_have_count(2)
    expect(sms_thread(page, "06 11 22 33 44").locator(".bubble.in").last).to_contain_text(
        "Annulation"
    )


def test_a_reply_annuler_typed_in_the_outbox_cancels_the_rdv(page: Page, world, live_app):
    log_in(page, world)
    choose_slot(page, world)
    page.get_by_label("Rechercher un usager").fill("Dupont")
    page.get_by_label("Rechercher un usager").press("Enter")
    page.get_by_role("button", name=re.compile("Réserver pour Léa Dupont")).click()
    expect(page).to_have_url(re.compile(r"/rdvs/\d+$"))
    rdv_url = page.url

    run_pipeline(live_app)
    page.goto("/simulator/outbox")
    thread = sms_thread(page, "06 12 34 56 78")
    expect(thread.locator(".bubble.in")).to_contain_text("répondez ANNULER")
    thread.get_by_label("Répondre depuis le 06 12 34 56 78").fill("annuler")
    thread.get_by_role("button", name="Envoyer").click()
    expect(page.get_by_role("status")).to_contain_text(
        "Réponse « annuler » envoyée depuis le 06 12 34 56 78"
    )

    run_pipeline(live_app)
    page.reload()
    thread = sms_thread(page, "06 12 34 56 78")
    expect(thread.locator(".bubble.out")).to_contain_text("annuler")
    expect(thread.locator(".bubble.out")).to_contain_text("rendez-vous annulé")
    expect(thread.locator(".bubble.in").last).to_contain_text(
        "est annulé. Merci de nous avoir prévenus"
    )

    page.goto(rdv_url)
    timeline = page.locator("#timeline")
    expect(timeline).to_contain_text("SMS reçu de 06 12 34 56 78 : « annuler »")
    expect(timeline).to_contain_text("Rendez-vous annulé par une réponse SMS")
