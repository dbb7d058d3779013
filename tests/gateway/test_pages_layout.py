"""The DSFR layout (templates/pages/base.html) and the BRAND setting."""

from __future__ import annotations

import pytest

from gateway.config import from_environment

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
