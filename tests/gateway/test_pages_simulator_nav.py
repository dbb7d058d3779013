"""The navigation links to the simulator's outbox only when the simulator is configured."""

from __future__ import annotations

import pytest

OUTBOX_LINK = 'href="/simulator/outbox"'


def test_the_nav_links_to_the_outbox_when_the_simulator_is_configured(login):
    assert OUTBOX_LINK in login.get("/agenda").get_data(as_text=True)
    assert 'aria-current="page">Simulateur' in login.get("/simulator/outbox").get_data(as_text=True)


@pytest.fixture
def no_simulator(app_config):
    app_config.update(
        SMS_PROVIDERS=["twilio"],
        EMAIL_PROVIDER="smtp",
        PROVIDER_SETTINGS={
            "TWILIO_ACCOUNT_SID": "ACx",
            "TWILIO_AUTH_TOKEN": "t",
            "TWILIO_FROM": "+33600000000",
            "SMTP_HOST": "127.0.0.1",
        },
    )


def test_no_outbox_link_without_the_simulator(no_simulator, login):
    assert OUTBOX_LINK not in login.get("/agenda").get_data(as_text=True)
    assert login.get("/simulator/outbox").status_code == 404
