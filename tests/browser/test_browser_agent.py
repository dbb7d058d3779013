"""What an agent does, in a real browser: log in, book, see, cancel, and the stats."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect


def log_in(page: Page, world) -> None:
    page.goto("/login")
    page.get_by_label("Adresse e-mail").fill(world.agent.email)
    page.get_by_label("Mot de passe").fill(world.password)
    page.get_by_role("button", name="Se connecter").click()
    expect(page).to_have_url(re.compile(r"/agenda$"))


def choose_slot(page: Page, world) -> str:
    """Motif → lieu → the first free slot; returns the slot link's href."""
    page.get_by_role("link", name="Nouveau rendez-vous").click()
    page.get_by_role("link", name=re.compile(world.motif.name)).click()
    page.get_by_role("link", name=re.compile(world.lieu.name)).click()
    slot = page.locator("a.slot").first
    href = slot.get_attribute("href")
    slot.click()
    return href


def test_book_a_new_usager_see_it_cancel_it_and_the_slot_is_free_again(page: Page, world):
    page.goto("/login")
    page.keyboard.press("Tab")  # the first Tab stop skips to the content
    expect(page.locator(":focus")).to_have_text("Aller au contenu")
    log_in(page, world)

    slot_href = choose_slot(page, world)
    page.get_by_label("Prénom").fill("Inès")
    page.get_by_label("Nom", exact=True).fill("Petit")
    page.get_by_label("Téléphone mobile").fill("06 11 22 33 44")
    page.get_by_role("button", name="Créer l'usager et réserver").click()

    expect(page).to_have_url(re.compile(r"/rdvs/\d+$"))
    expect(page.get_by_role("status")).to_contain_text("Rendez-vous enregistré")
    timeline = page.locator("#timeline")
    expect(timeline).to_contain_text("Rendez-vous pris")
    expect(timeline).to_contain_text("SMS · Confirmation")
    rdv_url = page.url
    day = page.locator("#timeline time").first.get_attribute("datetime")
    assert day

    # The agenda of the rdv's day lists it (whichever agent the slot was with).
    starts_at = re.search(r"starts_at=([0-9-]{10})", slot_href).group(1)
    page.goto(f"/agenda?date={starts_at}&agent=all")
    expect(page.get_by_role("row", name=re.compile("Inès Petit"))).to_be_visible()
    page.get_by_role("row", name=re.compile("Inès Petit")).get_by_role("link").click()
    expect(page).to_have_url(rdv_url)

    # Taken: the slot is no longer offered.
    page.goto(slot_href.split("&agent_id")[0])
    expect(page.locator(f'a.slot[href="{slot_href}"]')).to_have_count(0)

    # Cancelling asks to confirm: "Ne pas annuler" leaves it booked.
    page.goto(rdv_url)
    page.get_by_role("link", name="Annuler le rendez-vous").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Annuler le rendez-vous ?")
    page.get_by_role("link", name="Ne pas annuler").click()
    expect(page).to_have_url(rdv_url)
    expect(page.locator("#timeline")).not_to_contain_text("Rendez-vous annulé")
    page.get_by_role("link", name="Annuler le rendez-vous").click()
    page.get_by_label("Motif de l'annulation (facultatif)").fill("Agent malade")
    page.get_by_role("button", name="Confirmer l'annulation").click()
    expect(page).to_have_url(rdv_url)
    expect(page.get_by_role("status")).to_contain_text("Rendez-vous annulé.")
    expect(page.locator("#timeline")).to_contain_text("Rendez-vous annulé par un agent")
    expect(page.locator("#timeline")).to_contain_text("Motif : « Agent malade »")
    expect(page.get_by_role("link", name="Annuler le rendez-vous")).to_have_count(0)

    # Free again at once.
    page.goto(slot_href.split("&agent_id")[0])
    expect(page.locator(f'a.slot[href="{slot_href}"]')).to_have_count(1)

    # And counted in the public statistics, charts drawn by the vendored library.
    page.get_by_role("link", name="Statistiques", exact=True).click()
    expect(page.locator('#cancellations-table tfoot td[data-via="agent"]')).to_have_text("1")
    expect(page.locator("html")).to_have_class(re.compile(r"\bcharts\b"))
    expect(page.locator("#chart-cancellations")).to_be_visible()


def test_book_for_a_known_usager_in_a_handful_of_clicks(page: Page, world):
    log_in(page, world)
    choose_slot(page, world)  # three clicks: motif, lieu, slot
    page.get_by_label("Rechercher un usager").fill("Dupont")
    page.get_by_label("Rechercher un usager").press("Enter")
    page.get_by_role("button", name=re.compile("Réserver pour Léa Dupont")).click()
    expect(page).to_have_url(re.compile(r"/rdvs/\d+$"))
    expect(page.locator(".facts")).to_contain_text("Léa Dupont")
    expect(page.locator("#timeline")).to_contain_text("E-mail · Confirmation")
