"""``/metrics``: fail-closed token, and the values after a known sequence of sends."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from gateway.webhook_endpoints import create_endpoint
from providers import status as S
from providers.base import InboundSms, Receipt
from scheduler.dispatch import dispatch_due
from scheduler.queue import run_pending
from scheduler.webhook_delivery import dispatch_webhooks
from webhooks.inbound import receive
from webhooks.receipts import apply_receipt

from ..fakes.webhook_receiver import WebhookReceiver
from ..scheduler.conftest import MORNING, book_for, sms_usager


def value(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def scrape(client, token="s3cret") -> dict[str, float]:
    r = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.mimetype == "text/plain"
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(r.get_data(as_text=True))
        for sample in family.samples
        if not sample.labels
    }


def test_metrics_are_404_without_a_token_configured(client):
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 404


def test_metrics_need_the_bearer_token(app, client):
    app.config["METRICS_TOKEN"] = "s3cret"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Basic s3cret"}).status_code == 401
    assert "lapin_queue_jobs" in scrape(client)


@pytest.fixture
def receiver():
    r = WebhookReceiver()
    yield r
    r.close()


def test_values_after_a_known_sequence(app, app_config, client, world, receiver):
    app.config["METRICS_TOKEN"] = "s3cret"
    app.config["SIMULATOR_RECEIPTS"] = False
    sms = {"channel": "sms"}
    names = {
        "scheduled": ("lapin_messages_total", {"status": "scheduled", **sms, "provider": ""}),
        "sent": ("lapin_messages_total", {"status": "sent", **sms, "provider": "simulator"}),
        "delivered": (
            "lapin_messages_total",
            {"status": "delivered", **sms, "provider": "simulator"},
        ),
        "latency": (
            "lapin_send_duration_seconds_count",
            {"provider": "simulator", "channel": "sms", "result": "accepted"},
        ),
        "receipts": ("lapin_receipts_total", {"provider": "simulator", "status": "delivered"}),
        "inbound": ("lapin_inbound_sms_total", {"provider": "simulator"}),
        "webhooks": ("lapin_webhook_deliveries_total", {"outcome": "success"}),
        "webhooks_failed": ("lapin_webhook_deliveries_total", {"outcome": "http_error"}),
    }
    before = {key: value(name, **labels) for key, (name, labels) in names.items()}
    with time_machine.travel(MORNING, tick=False) as clock:
        _, secret = create_endpoint(world.org, receiver.url, ["rdv.created"])
        receiver.secret = secret
        first = book_for(world, sms_usager(world), days=3)
        book_for(world, sms_usager(world, phone="+33622222222"), days=3, hour=11)
        assert dispatch_due() == 2  # the two confirmations
        run_pending(app)
        confirmation = next(m for m in first.messages if m.kind == "confirmation")
        # From the provider that sent it: a receipt only touches its own provider's messages.
        apply_receipt(
            Receipt("simulator", "SIM1", str(confirmation.id), "delivered", S.DELIVERED, None, None)
        )
        receive(InboundSms("simulator", "in-1", "+33611111111", "+33700000000", "OUI"))
        dispatch_webhooks()
        run_pending(app)
        receiver.mode = "down"
        book_for(world, sms_usager(world, phone="+33633333333"), days=4)
        dispatch_webhooks()
        run_pending(app)
        after = {key: value(name, **labels) for key, (name, labels) in names.items()}
        delta = {key: after[key] - before[key] for key in names}
        assert delta == {
            "scheduled": 6 + 1,  # confirmation + reminder of 3 rdvs, the reply to OUI
            "sent": 2,
            "delivered": 1,
            "latency": 2,
            "receipts": 1,
            "inbound": 1,
            "webhooks": 2,
            "webhooks_failed": 1,
        }
        figures = scrape(client)
        # due now: the reply to OUI, the confirmation of the third rdv
        assert figures["lapin_messages_due"] == 2
        assert figures["lapin_oldest_due_message_age_seconds"] == 0
        assert figures["lapin_webhooks_due"] == 0  # the failed one waits 5 s
        # Ten minutes after the first reminders fell due, with nothing dispatched:
        clock.move_to(MORNING + timedelta(days=1, minutes=10))
        figures = scrape(client)
        assert figures["lapin_messages_due"] == 3  # and the first reminder (10:00)
        assert figures["lapin_oldest_due_message_age_seconds"] == 24 * 3600 + 600
        assert figures["lapin_webhooks_due"] == 1
        assert figures["lapin_oldest_due_webhook_age_seconds"] == 24 * 3600 + 600 - 5
        assert figures["lapin_queue_jobs"] == 0
