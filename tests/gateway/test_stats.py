"""Public statistics: the figures, their month buckets, and the two routes."""

import json
import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine

from gateway.extensions import db
from gateway.models import Message, Rdv
from gateway.stats import compute_stats

from ..factories import make_agent, make_org

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 6, 15, 12, 0, tzinfo=PARIS)


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


def add_rdv(world, starts_at, status="unknown", via=None, org=None, agent=None, booked_via="agent"):
    org = org or world.org
    rdv = Rdv(
        organisation_id=org.id,
        motif_id=world.motif.id,
        lieu_id=world.lieu.id,
        agent_id=(agent or world.agent).id,
        starts_at=starts_at,
        ends_at=starts_at + timedelta(minutes=30),
        duration_minutes=30,
        status=status,
        cancelled_via=via,
        cancelled_at=starts_at - timedelta(days=1) if via else None,
        booked_via=booked_via,
    )
    db.session.add(rdv)
    db.session.flush()
    return rdv


def add_message(
    world,
    rdv,
    *,
    channel="sms",
    status="delivered",
    provider="twilio",
    segments=1,
    sent_at=None,
    org=None,
):
    message = Message(
        organisation_id=(org or world.org).id,
        rdv_id=rdv.id,
        channel=channel,
        kind="reminder",
        status=status,
        send_at=sent_at or NOW,
        recipient="+33612345678",
        provider=provider,
        segments=segments if channel == "sms" else None,
        sent_at=sent_at,
    )
    db.session.add(message)
    return message


def month(data, key, name="rdvs"):
    return next(m for m in data[name]["by_month"] if m["month"] == key)


def test_rdvs_by_month_and_status_and_the_noshow_rate(world):
    may = datetime(2026, 5, 10, 10, 0, tzinfo=PARIS)
    statuses = ["seen"] * 6 + ["noshow"] * 2 + ["unknown"] + ["excused", "revoked"]
    for i, status in enumerate(statuses):
        # One agent's rdvs never overlap (PostgreSQL enforces it): one per hour.
        via = {"excused": "link", "revoked": "agent"}.get(status)
        add_rdv(world, may + timedelta(hours=i), status=status, via=via)
    add_rdv(world, datetime(2026, 6, 20, 10, 0, tzinfo=PARIS))  # upcoming: not "past unrecorded"
    db.session.commit()

    data = compute_stats(world.org, now=NOW)

    may_figures = month(data, "2026-05")
    assert may_figures | {"noshow_rate": None} == {
        "month": "2026-05",
        "unknown": 1,
        "seen": 6,
        "noshow": 2,
        "excused": 1,
        "revoked": 1,
        "total": 11,
        "past_unrecorded": 1,
        "noshow_rate": None,
        "booked_agent": 11,
        "booked_online": 0,
        "booked_api": 0,
        "online_share": 0.0,
    }
    # noshow ÷ (seen + noshow): cancelled and unrecorded rdvs are left out.
    assert may_figures["noshow_rate"] == 0.25
    june = month(data, "2026-06")
    assert june["unknown"] == 1 and june["past_unrecorded"] == 0 and june["noshow_rate"] is None
    assert data["rdvs"]["totals"]["total"] == 12 and data["rdvs"]["totals"]["noshow_rate"] == 0.25
    assert data["cancellations"]["by_via"] == {"agent": 1, "link": 1, "sms": 0, "api": 0}
    assert month(data, "2026-05", "cancellations")["link"] == 1


def test_share_of_rdvs_booked_online_per_month(client, world):
    may = datetime(2026, 5, 10, 10, 0, tzinfo=PARIS)
    vias = ["online"] * 3 + ["agent"] * 4 + ["api"]
    for i, booked_via in enumerate(vias):
        status = "excused" if i == 0 else "seen"  # a cancelled online rdv still counts
        add_rdv(world, may + timedelta(hours=i), status=status, booked_via=booked_via)
    add_rdv(world, datetime(2026, 6, 20, 10, 0, tzinfo=PARIS), booked_via="online")
    db.session.commit()
    data = compute_stats(world.org, now=NOW)
    may_figures = month(data, "2026-05")
    assert (
        may_figures["booked_online"],
        may_figures["booked_agent"],
        may_figures["booked_api"],
    ) == (
        3,
        4,
        1,
    )
    assert may_figures["online_share"] == 0.375 and month(data, "2026-06")["online_share"] == 1.0
    assert data["rdvs"]["totals"]["online_share"] == round(4 / 9, 4)
    assert month(data, "2026-04")["online_share"] is None  # no rdv: no share
    page = client.get(f"/stats?organisation_id={world.org.id}").get_data(as_text=True)
    assert '<td class="num online-share">37,5 %</td>' in page
    as_json = client.get(f"/stats.json?organisation_id={world.org.id}").get_json()
    assert month(as_json, "2026-05")["online_share"] == 0.375


def test_months_are_those_of_the_organisations_time_zone(world):
    # 00:30 in Paris on 1 March is still February in UTC; 23:30 on 31 May is 21:30 UTC.
    add_rdv(world, datetime(2026, 3, 1, 0, 30, tzinfo=PARIS), status="seen")
    add_rdv(world, datetime(2026, 5, 31, 23, 30, tzinfo=PARIS), status="noshow")
    db.session.commit()
    data = compute_stats(world.org, now=NOW)
    assert month(data, "2026-02")["total"] == 0
    assert month(data, "2026-03")["seen"] == 1
    assert month(data, "2026-05")["noshow"] == 1 and month(data, "2026-06")["noshow"] == 0
    overall = compute_stats(None, now=NOW)  # all organisations: months in Paris time
    assert month(overall, "2026-03")["seen"] == 1


def test_window_is_the_past_months_and_the_next_one(world):
    data = compute_stats(world.org, now=NOW, past_months=3)
    assert data["months"] == ["2026-04", "2026-05", "2026-06", "2026-07"]
    add_rdv(world, datetime(2026, 3, 31, 23, 0, tzinfo=PARIS), status="seen")  # before the window
    add_rdv(world, datetime(2026, 8, 1, 9, 0, tzinfo=PARIS))  # after it
    db.session.commit()
    assert compute_stats(world.org, now=NOW, past_months=3)["rdvs"]["totals"]["total"] == 0


def test_messages_per_channel_and_provider_delivery_rate_and_segments(world):
    rdv = add_rdv(world, datetime(2026, 6, 20, 10, 0, tzinfo=PARIS))
    sent = datetime(2026, 6, 10, 9, 0, tzinfo=PARIS)
    add_message(world, rdv, status="delivered", segments=2, sent_at=sent)
    add_message(world, rdv, status="delivered", segments=1, sent_at=sent)
    add_message(world, rdv, status="undelivered", segments=1, sent_at=sent)
    add_message(world, rdv, status="sent", provider="vonage", segments=3, sent_at=sent)
    # Never reached the provider: not counted as sent, segments not billed.
    add_message(world, rdv, status="failed", segments=5, sent_at=None)
    add_message(world, rdv, status="scheduled", segments=1, sent_at=None)
    add_message(world, rdv, channel="email", status="delivered", provider="smtp", sent_at=sent)
    db.session.commit()

    data = compute_stats(world.org, now=NOW)["messages"]

    assert data["by_channel_provider"] == [
        {
            "channel": "email",
            "provider": "smtp",
            "sent": 1,
            "delivered": 1,
            "undelivered": 0,
            "failed": 0,
            "delivery_rate": 1.0,
        },
        {
            "channel": "sms",
            "provider": "twilio",
            "sent": 3,
            "delivered": 2,
            "undelivered": 1,
            "failed": 0,
            "segments": 4,
            "delivery_rate": 0.6667,
        },
        {
            "channel": "sms",
            "provider": "vonage",
            "sent": 1,
            "delivered": 0,
            "undelivered": 0,
            "failed": 0,
            "segments": 3,
            "delivery_rate": 0.0,
        },
    ]
    assert data["totals"] == {"sent": 5, "delivered": 3, "delivery_rate": 0.6, "sms_segments": 7}
    june = month({"messages": data}, "2026-06", "messages")
    assert (
        june["sms"]["sent"] == 4
        and june["sms"]["segments"] == 7
        and june["email"]["delivered"] == 1
    )


def test_one_organisation_or_all_of_them(world):
    other = make_org(name="Autre département")
    other_agent = make_agent(other, "autre@example.org")
    day = datetime(2026, 5, 5, 9, 0, tzinfo=PARIS)
    add_rdv(world, day, status="noshow")
    add_rdv(world, day, status="seen", org=other, agent=other_agent)
    db.session.commit()
    assert compute_stats(world.org, now=NOW)["rdvs"]["totals"]["noshow"] == 1
    assert compute_stats(other, now=NOW)["rdvs"]["totals"]["noshow"] == 0
    overall = compute_stats(None, now=NOW)
    assert overall["organisation"] is None
    assert (
        overall["rdvs"]["totals"]["total"] == 2 and overall["rdvs"]["totals"]["noshow_rate"] == 0.5
    )


def test_stats_json_is_public_and_cacheable(client, world):
    add_rdv(world, datetime(2026, 5, 5, 9, 0, tzinfo=PARIS), status="revoked", via="api")
    db.session.commit()
    r = client.get(f"/stats.json?organisation_id={world.org.id}")
    assert r.status_code == 200
    assert r.headers["Cache-Control"] == "public, max-age=300"
    assert r.json["organisation"] == {"id": world.org.id, "name": world.org.name}
    assert r.json["cancellations"]["by_via"]["api"] == 1
    assert client.get("/stats.json").json["rdvs"]["totals"]["revoked"] == 1


@pytest.mark.parametrize(
    "query, status",
    [
        ("organisation_id=abc", 400),
        ("organisation_id=999999", 404),
        ("months=0", 400),
        ("months=37", 400),
        ("months=-1", 400),
    ],
)
def test_bad_parameters_are_clear_4xx(client, world, query, status):
    r = client.get(f"/stats.json?{query}")
    assert r.status_code == status
    assert r.json["error"]["message"]
    assert client.get(f"/stats?{query}").status_code == status


def test_stats_page_shows_every_figure_without_javascript(client, world):
    add_rdv(world, datetime(2026, 5, 5, 9, 0, tzinfo=PARIS), status="noshow")
    add_rdv(world, datetime(2026, 5, 5, 10, 0, tzinfo=PARIS), status="seen")
    add_rdv(world, datetime(2026, 5, 6, 10, 0, tzinfo=PARIS), status="excused", via="sms")
    db.session.commit()
    r = client.get("/stats")
    page = r.get_data(as_text=True)
    assert r.status_code == 200 and r.headers["Cache-Control"] == "public, max-age=300"
    assert "Taux de lapins" in page and "50,0 %" in page  # the headline, in the HTML itself
    assert "mai 2026" in page and "Réponse SMS" in page
    # Charts are an enhancement: the script is external (CSP), the data a JSON block.
    assert "vendor/chartjs/chart.umd.min.js" in page and "stats.js" in page
    block = re.search(
        r'<script type="application/json" id="stats-data">(.*?)</script>', page, re.DOTALL
    )
    assert json.loads(block.group(1))["stats"]["cancellations"]["by_via"]["sms"] == 1
    assert "<script>" not in page


def test_vendored_chart_library_is_served_by_the_app(client):
    r = client.get("/static/vendor/chartjs/chart.umd.min.js")
    assert r.status_code == 200 and b"Chart.js v4" in r.data[:200]
    r.close()
