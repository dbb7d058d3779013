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
