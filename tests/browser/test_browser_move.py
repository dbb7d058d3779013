"""Moving an rdv in a real browser with JavaScript off: the form offers free slots only."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
from playwright.sync_api import Page, expect

from gateway.extensions import db
from gateway.models import Rdv
from gateway.timeutil import utcnow

from ..factories import book_rdv
from .conftest import _open_page
from .test_browser_agent import log_in


@pytest.fixture
def page_without_js(browser, live_server, request):
    yield from _open_page(browser, live_server, request, java_script_enabled=False)


def test_an_agent_moves_an_rdv_by_choosing_a_free_slot_without_javascript(
    page_without_js: Page, world
):
    tz = world.org.tz
    day = (utcnow().astimezone(tz) + timedelta(days=2)).date()
    rdv = book_rdv(world, datetime.combine(day, datetime.min.time(), tz).replace(hour=10))
    page = page_without_js
    log_in(page, world)
    page.goto(f"/rdvs/{rdv.id}")
    move = page.locator("#deplacer")
    expect(move.locator('input[type="datetime-local"]')).to_have_count(0)
    expect(move.locator('input[type="radio"][name="starts_at"]').first).to_be_visible()

    move.get_by_label("Lieu").select_option(label=world.other_lieu.name)
    move.get_by_role("button", name="Voir les créneaux").click()
    move.get_by_role("link", name="Jours suivants").click()
    expect(move).to_contain_text(world.other_lieu.name)
    first = move.locator('input[type="radio"][name="starts_at"]').first
    chosen = first.get_attribute("value")
    first.check()
    move.get_by_role("button", name="Déplacer au créneau choisi").click()

    expect(page).to_have_url(re.compile(rf"/rdvs/{rdv.id}$"))
    expect(page.get_by_role("status")).to_contain_text("Rendez-vous déplacé")
    db.session.expire_all()
    moved = db.session.get(Rdv, rdv.id)
    assert moved.starts_at == datetime.fromisoformat(chosen)
    assert moved.lieu_id == world.other_lieu.id
    assert moved.starts_at.astimezone(tz).date() >= day + timedelta(days=5)
