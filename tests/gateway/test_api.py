"""The JSON API contract of SPEC section 3."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import func, select

from gateway.extensions import db
from gateway.models import ApiToken, Message, Rdv, Usager

from ..factories import make_org

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 6, 1, 10, 0, tzinfo=PARIS)


@pytest.fixture(autouse=True)
def answers_match_the_openapi_document(app):
    """Every JSON answer of this file is checked against the OpenAPI document's schemas."""
    from flask import request

    from gateway.openapi import document

    from .openapi_check import AnswerChecker

    checker = AnswerChecker(document(app))

    @app.after_request
    def _check(response):
        checker.check(request.method, request.path, response)
        return response

    yield checker
    assert checker.problems == []


@pytest.fixture
def api(client, world):
    headers = {"Authorization": f"Bearer {world.token}"}

    class Api:
        def get(self, path, **kw):
            return client.get("/api/v1" + path, headers=headers, **kw)

        def post(self, path, json=None, **kw):
            return client.post("/api/v1" + path, json=json, headers=headers, **kw)

        def patch(self, path, json=None):
            return client.patch("/api/v1" + path, json=json, headers=headers)

        def delete(self, path):
            return client.delete("/api/v1" + path, headers=headers)

    with time_machine.travel(NOW, tick=False):
        yield Api()


def rdv_payload(world, **over):
    payload = {
        "motif_id": world.motif.id,
        "lieu_id": world.lieu.id,
        "agent_id": world.agent.id,
        "usager_id": world.usager.id,
        "starts_at": "2026-06-05T10:00:00+02:00",
    }
    payload.update(over)
    return payload


def test_authentication_is_required(client, world):
    assert client.get("/api/v1/motifs").status_code == 401
    r = client.get("/api/v1/motifs", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and r.json["error"]["code"] == "unauthorized"
    row = db.session.scalar(select(ApiToken))
    assert row.token_hash != world.token and world.token not in row.token_hash  # stored hashed


def test_lists(api, world):
    motifs = api.get("/motifs").json["items"]
    assert {
        "id": world.motif.id,
        "name": "Consultation PMI",
        "duration_minutes": 30,
    }.items() <= motifs[0].items()
    assert {item["name"] for item in api.get("/lieux").json["items"]} == {"MDS Calais", "PMI Arras"}
    assert {item["id"] for item in api.get("/agents").json["items"]} == {
        world.agent.id,
        world.other_agent.id,
    }


def test_slots_for_a_day_and_booked_slots_disappear(api, world):
    query = (
        f"/slots?motif_id={world.motif.id}&lieu_id={world.lieu.id}"
        "&from=2026-06-05T00:00:00&to=2026-06-06T00:00:00"
    )
    items = api.get(query).json["items"]
    # two agents x (09:00-12:00 and 14:00-17:00) in 30 min steps
    assert len(items) == 24
    assert items[0] == {
        "starts_at": "2026-06-05T09:00:00+02:00",
        "ends_at": "2026-06-05T09:30:00+02:00",
        "agent_id": world.agent.id,
        "lieu_id": world.lieu.id,
    }
    assert api.post("/rdvs", rdv_payload(world, starts_at="2026-06-05T09:00:00")).status_code == 201
    after = api.get(query).json["items"]
    assert len(after) == 23
    assert not any(
        i["starts_at"] == "2026-06-05T09:00:00+02:00" and i["agent_id"] == world.agent.id
        for i in after
    )


def test_create_rdv_returns_planned_messages_with_send_at(api, world):
    r = api.post("/rdvs", rdv_payload(world))
    assert r.status_code == 201, r.json
    body = r.json
    assert body["status"] == "unknown" and body["usager_ids"] == [world.usager.id]
    assert (
        body["starts_at"] == "2026-06-05T10:00:00+02:00"
        and body["ends_at"] == "2026-06-05T10:30:00+02:00"
    )
    assert body["cancelled_via"] is None
    sent = {(m["channel"], m["kind"]): m for m in body["messages"]}
    assert sent[("sms", "reminder")]["send_at"] == "2026-06-03T10:00:00+02:00"
    assert sent[("sms", "confirmation")]["send_at"] == "2026-06-01T10:00:00+02:00"
    assert sent[("sms", "confirmation")]["status"] == "scheduled"
    assert sent[("sms", "confirmation")]["recipient"] == "+33612345678"
    assert set(sent[("sms", "reminder")]) >= {
        "id",
        "channel",
        "kind",
        "status",
        "send_at",
        "sent_at",
        "provider",
        "provider_message_id",
        "segments",
        "recipient",
    }
    assert api.get(f"/rdvs/{body['id']}").json == body


def test_move_and_cancel_through_the_api(api, world):
    rdv = api.post("/rdvs", rdv_payload(world)).json
    moved = api.patch(f"/rdvs/{rdv['id']}", {"starts_at": "2026-06-08T11:00:00+02:00"})
    assert moved.status_code == 200, moved.json
    kinds = {
        (m["kind"], m["channel"]): m for m in moved.json["messages"] if m["status"] == "scheduled"
    }
    assert ("moved", "sms") in kinds
    assert kinds[("reminder", "sms")]["send_at"] == "2026-06-06T11:00:00+02:00"
    cancelled = api.post(f"/rdvs/{rdv['id']}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json["status"] == "revoked" and cancelled.json["cancelled_via"] == "api"
    assert not any(
        m["status"] == "scheduled" and m["kind"] == "reminder" for m in cancelled.json["messages"]
    )
    again = api.post(f"/rdvs/{rdv['id']}/cancel")
    assert again.status_code == 200 and len(again.json["messages"]) == len(
        cancelled.json["messages"]
    )


def test_double_booking_gets_409(api, world):
    assert api.post("/rdvs", rdv_payload(world)).status_code == 201
    r = api.post(
        "/rdvs",
        rdv_payload(world, usager_id=world.email_usager.id, starts_at="2026-06-05T10:15:00+02:00"),
    )
    assert r.status_code == 409
    assert r.json["error"]["code"] == "slot_taken" and "starts_at" in r.json["error"]["fields"]


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"motif_id": "abc"}, "motif_id"),
        ({"motif_id": None}, "motif_id"),
        ({"starts_at": "demain"}, "starts_at"),
        ({"starts_at": 12}, "starts_at"),
        ({"usager_id": 999999}, "usager_id"),
        ({"lieu_id": True}, "lieu_id"),
        ({"starts_at": "2026-06-05T13:00:00+02:00"}, "starts_at"),
    ],
)
def test_bad_rdv_input_is_422_and_writes_nothing(api, world, payload, field):
    r = api.post("/rdvs", rdv_payload(world, **payload))
    assert r.status_code == 422, r.json
    assert field in r.json["error"]["fields"]
    assert db.session.scalar(select(func.count(Rdv.id))) == 0
    assert db.session.scalar(select(func.count(Message.id))) == 0


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b""])
def test_non_object_bodies_are_400(api, raw, client, world):
    r = client.post(
        "/api/v1/rdvs",
        data=raw,
        content_type="application/json",
        headers={"Authorization": f"Bearer {world.token}"},
    )
    assert r.status_code == 400 and r.json["error"]["code"] == "bad_request"


def test_oversized_body_is_413_json(api, client, world):
    r = client.post(
        "/api/v1/usagers",
        data=b"{" + b" " * 400_000 + b"}",
        content_type="application/json",
        headers={"Authorization": f"Bearer {world.token}"},
    )
    assert r.status_code == 413 and "error" in r.json


def test_create_usager_normalises_the_phone_and_reports_each_bad_field(api, world):
    r = api.post(
        "/usagers",
        {
            "first_name": "Nadia",
            "last_name": "Moreau",
            "phone": "0692 12 34 56",
            "email": "nadia@example.org",
            "notify_sms": True,
            "notify_email": False,
        },
    )
    assert r.status_code == 201
    assert r.json == {
        "id": r.json["id"],
        "first_name": "Nadia",
        "last_name": "Moreau",
        "phone": "+262692123456",
        "email": "nadia@example.org",
        "notify_sms": True,
        "notify_email": False,
        "sms_opted_out": False,
    }
    count = db.session.scalar(select(func.count(Usager.id)))
    bad = api.post("/usagers", {"first_name": "", "last_name": "X", "phone": "12", "email": "nope"})
    assert bad.status_code == 422
    assert set(bad.json["error"]["fields"]) == {"first_name", "phone", "email"}
    landline = api.post(
        "/usagers", {"first_name": "A", "last_name": "B", "phone": "01 44 55 66 77"}
    )
    assert landline.status_code == 422 and "mobile" in landline.json["error"]["fields"]["phone"]
    assert db.session.scalar(select(func.count(Usager.id))) == count


def test_unknown_and_foreign_ids_are_404(api, world):
    other = make_org(name="Autre")
    foreign = Usager(organisation_id=other.id, first_name="X", last_name="Y", phone="+33611111111")
    db.session.add(foreign)
    db.session.commit()
    assert api.get("/rdvs/424242").status_code == 404
    assert api.get(f"/usagers/{foreign.id}").status_code == 404
    r = api.post("/rdvs", rdv_payload(world, usager_id=foreign.id))
    assert r.status_code == 422 and "usager_id" in r.json["error"]["fields"]


def test_status_seen_only_after_start(api, world):
    rdv = api.post("/rdvs", rdv_payload(world)).json
    r = api.post(f"/rdvs/{rdv['id']}/status", {"status": "seen"})
    assert r.status_code == 409
    assert api.post(f"/rdvs/{rdv['id']}/status", {"status": "late"}).status_code == 422
    with time_machine.travel(NOW + timedelta(days=5), tick=False):
        r = api.post(f"/rdvs/{rdv['id']}/status", {"status": "noshow"})
    assert r.status_code == 200 and r.json["status"] == "noshow"


def test_an_rdv_already_seen_cannot_be_moved_409(api, world):
    """Issue 11, defect 5: PATCH on a ``seen`` rdv moved it (and texted the usager)."""
    rdv = api.post("/rdvs", rdv_payload(world)).json
    with time_machine.travel(NOW + timedelta(days=4, hours=1), tick=False):
        assert api.post(f"/rdvs/{rdv['id']}/status", {"status": "seen"}).status_code == 200
        r = api.patch(f"/rdvs/{rdv['id']}", {"starts_at": "2026-06-08T10:00:00+02:00"})
    assert r.status_code == 409, r.json
    assert r.json["error"]["code"] == "rdv_not_movable"
    assert api.get(f"/rdvs/{rdv['id']}").json["starts_at"] == rdv["starts_at"]


def test_moving_to_a_time_off_the_slot_grid_is_refused_422(api, world):
    """Issue 14: 15:10 on a 30-minute grid was accepted, hiding two slots."""
    rdv = api.post("/rdvs", rdv_payload(world)).json
    r = api.patch(f"/rdvs/{rdv['id']}", {"starts_at": "2026-06-08T15:10:00+02:00"})
    assert r.status_code == 422, r.json
    assert r.json["error"]["code"] == "off_grid"
    assert "15:00 ou 15:30" in r.json["error"]["fields"]["starts_at"]
    after = api.get(f"/rdvs/{rdv['id']}").json
    assert after["starts_at"] == rdv["starts_at"] and after["messages"] == rdv["messages"]
    ok = api.patch(f"/rdvs/{rdv['id']}", {"starts_at": "2026-06-08T15:30:00+02:00"})
    assert ok.status_code == 200, ok.json


def test_every_invalid_field_is_reported_at_once(api, world):
    r = api.post(
        "/rdvs",
        {"motif_id": "abc", "lieu_id": True, "usager_ids": "x", "starts_at": "demain"},
    )
    assert r.status_code == 422
    assert set(r.json["error"]["fields"]) == {
        "motif_id",
        "lieu_id",
        "agent_id",
        "usager_ids",
        "starts_at",
    }
    assert r.json["error"]["fields"]["agent_id"] == "Obligatoire."
    r = api.get("/slots?motif_id=x&lieu_id=0&from=hier")
    assert r.status_code == 422 and set(r.json["error"]["fields"]) == {
        "motif_id",
        "lieu_id",
        "from",
    }
    r = api.patch("/rdvs/1", {"starts_at": "x", "agent_id": 3})
    assert r.status_code in (404, 422)


def test_same_usager_twice_is_409_unless_allowed(api, world):
    body = {"first_name": "Nadia", "last_name": "Moreau", "phone": "06 12 34 56 70"}
    first = api.post("/usagers", body)
    assert first.status_code == 201
    # The same name (case aside) and the same mobile in another form: 409 with the id.
    twin = api.post("/usagers", {**body, "first_name": "NADIA", "phone": "+33612345670"})
    assert twin.status_code == 409, twin.json
    assert twin.json["error"]["code"] == "usager_exists"
    assert twin.json["error"]["existing_id"] == first.json["id"]
    # Unless asked for; a different contact is a different person.
    assert api.post("/usagers", {**body, "allow_duplicate": True}).status_code == 201
    other = {"first_name": "Nadia", "last_name": "Moreau", "email": "n@example.org"}
    assert api.post("/usagers", other).status_code == 201
    by_email = api.post("/usagers", {**other, "email": "N@example.org"})
    assert by_email.status_code == 409 and by_email.json["error"]["code"] == "usager_exists"
    assert api.post("/usagers", {**body, "allow_duplicate": "yes"}).status_code == 422


def test_rdvs_listed_by_pages_in_a_stable_order(api, world):
    starts = ["2026-06-05T09:00:00+02:00", "2026-06-05T09:30:00+02:00", "2026-06-05T10:00:00+02:00"]
    ids = []
    for agent in (world.agent, world.other_agent):
        for start in starts:
            ids.append(
                api.post("/rdvs", rdv_payload(world, agent_id=agent.id, starts_at=start)).json["id"]
            )
    expected = sorted(ids, key=lambda i: (starts.index(api.get(f"/rdvs/{i}").json["starts_at"]), i))
    page = api.get("/rdvs?from=2026-06-05T00:00:00&to=2026-06-06T00:00:00&limit=4")
    assert page.status_code == 200 and len(page.json["items"]) == 4
    # A booking before the cursor does not shift the next page; one after it is included.
    api.post("/rdvs", rdv_payload(world, starts_at="2026-06-05T11:00:00+02:00"))
    later = api.get(
        f"/rdvs?from=2026-06-05T00:00:00&to=2026-06-06T00:00:00&limit=4&cursor={page.json['next_cursor']}"
    )
    assert later.status_code == 200 and later.json["next_cursor"] is None
    seen = [i["id"] for i in page.json["items"] + later.json["items"]]
    assert seen[:6] == expected and len(seen) == 7 and len(set(seen)) == 7
    assert all("messages" in item for item in page.json["items"])
    api.post(f"/rdvs/{ids[0]}/cancel")
    revoked = api.get("/rdvs?status=revoked").json["items"]
    assert [r["id"] for r in revoked] == [ids[0]]
    for bad in ("cursor=nope", "cursor=W10", "status=late", "limit=0", "limit=501", "from=x"):
        r = api.get(f"/rdvs?{bad}")
        assert r.status_code == 422 and bad.split("=")[0] in r.json["error"]["fields"], bad


def test_webhook_endpoints_through_the_api(api, world):
    r = api.post(
        "/webhook-endpoints", {"url": "http://127.0.0.1:9/hook", "events": ["rdv.created"]}
    )
    assert r.status_code == 201 and r.json["secret"].startswith("whsec_")
    assert r.json["events"] == ["rdv.created"] and r.json["enabled"] is True
    listed = api.get("/webhook-endpoints").json["items"]
    assert [e["id"] for e in listed] == [r.json["id"]] and "secret" not in listed[0]
    everything = api.post("/webhook-endpoints", {"url": "https://93.184.216.34/lapin"})
    assert everything.status_code == 201 and len(everything.json["events"]) == 7
    bad = api.post("/webhook-endpoints", {"url": "ftp://x", "events": ["rdv.eaten"]})
    assert bad.status_code == 422 and set(bad.json["error"]["fields"]) == {"url", "events"}
    assert api.delete(f"/webhook-endpoints/{r.json['id']}").status_code == 204
    assert api.delete(f"/webhook-endpoints/{r.json['id']}").status_code == 404
    assert [e["id"] for e in api.get("/webhook-endpoints").json["items"]] == [everything.json["id"]]


def test_webhook_endpoints_refuse_local_addresses_unless_allowed(app, api, world):
    app.config["WEBHOOK_ALLOW_PRIVATE"] = False
    for url in (
        "http://127.0.0.1/hook",
        "http://localhost:8080/",
        "http://10.0.0.5/",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/",
        "http://0x7f000001/",
    ):
        r = api.post("/webhook-endpoints", {"url": url})
        assert r.status_code == 422 and "url" in r.json["error"]["fields"], url
    app.config["PRODUCTION"] = True
    r = api.post("/webhook-endpoints", {"url": "http://93.184.216.34/hook"})
    assert r.status_code == 422 and "https" in r.json["error"]["fields"]["url"]
    assert api.get("/webhook-endpoints").json["items"] == []
