"""The DSFR layout (templates/pages/base.html) and the BRAND setting."""

from __future__ import annotations

from datetime import datetime, time, timedelta

import pytest

from gateway.booking import book
from gateway.config import from_environment
from gateway.timeutil import localize, utcnow


def book_tomorrow(world, hour: int = 10):
    """A rdv tomorrow at ``hour`` (the world opens 9:00–12:00 every day)."""
    tz = world.org.tz
    day = utcnow().astimezone(tz).date() + timedelta(days=1)
    return book(
        world.org,
        motif_id=world.motif.id,
        lieu_id=world.lieu.id,
        agent_id=world.agent.id,
        usager_ids=[world.usager.id],
        starts_at=localize(datetime.combine(day, time(hour)), tz),
    )


STATE_BLOCK = '<p class="fr-logo">République<br>Française</p>'


def test_brand_defaults_to_neutral_and_refuses_unknown_values(tmp_path):
    assert from_environment(str(tmp_path), {})["BRAND"] == "neutral"
    assert from_environment(str(tmp_path), {"BRAND": " Etat "})["BRAND"] == "etat"
    with pytest.raises(RuntimeError, match="BRAND"):
        from_environment(str(tmp_path), {"BRAND": "marianne"})


def test_neutral_pages_have_no_state_identity(client):
    html = client.get("/login").get_data(as_text=True)
    assert 'class="brand-neutral"' in html
    assert STATE_BLOCK not in html
    assert "vendor/dsfr/dsfr.min.css" in html
    assert 'class="fr-header"' in html and 'class="fr-footer"' in html


def test_etat_pages_show_the_republique_francaise_block(app_config, app, client):
    app.config["BRAND"] = "etat"
    html = client.get("/login").get_data(as_text=True)
    assert 'class="brand-etat"' in html
    # Header and footer.
    assert html.count(STATE_BLOCK) == 2


def test_the_agent_header_names_the_organisation_and_the_menu_is_collapsible(login, world):
    html = login.get("/agenda").get_data(as_text=True)
    assert f'<p class="fr-header__service-tagline">{world.org.name}</p>' in html
    # On phones the navigation is behind the "Menu" button (DSFR modal).
    assert 'aria-controls="menu-principal"' in html
    assert 'id="menu-principal"' in html


@pytest.mark.parametrize("path", ["/c/AbCdEf1234", "/c/abc-def", "/c/", "/o/AbCdEf1234"])
def test_a_mistyped_usager_link_says_what_to_do_not_the_agent_login(client, world, path):
    """Before: the 404 page offered "Retour à l'accueil" (/ → the agents' login)."""
    response = client.get(path)
    html = response.get_data(as_text=True)
    assert response.status_code == 404
    assert "Ce lien ne fonctionne pas" in html
    assert "appelez le lieu de votre rendez-vous" in html
    assert "ANNULER" in html
    assert "/login" not in html and 'href="/"' not in html
    assert "Connexion des agents" not in html


def test_a_cancellation_page_names_the_organisation_and_hides_the_agent_navigation(client, world):
    rdv = book_tomorrow(world)
    code = rdv.participations[0].cancel_code
    html = client.get(f"/c/{code}").get_data(as_text=True)
    assert f'<p class="fr-header__service-tagline">{world.org.name}</p>' in html
    assert "/login" not in html
    assert 'id="navigation-principale"' not in html
