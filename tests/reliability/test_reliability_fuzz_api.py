"""Fuzzing the JSON API: whatever the payload, never a 500 and never a partial write."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest
import time_machine
from hypothesis import given
from hypothesis import strategies as st

from .helpers import WriteGuard, assert_api_error_shape, committed_counts
from .strategies import date_strings, form_text, huge_ints, json_values

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 6, 1, 10, 0, tzinfo=PARIS)


@pytest.fixture
def api(client, world):
    headers = {"Authorization": f"Bearer {world.token}"}
    with time_machine.travel(NOW, tick=False):
        yield client, headers


@pytest.fixture
def guard(api):
    return WriteGuard()


def _field(draw, valid):
    """Most of the time a hostile value, sometimes the valid one, sometimes absent."""
    return draw(
        st.one_of(st.just(valid), json_values, huge_ints, st.just(str(valid)), st.just(...))
    )


def _payload(data, fields: dict) -> dict:
    payload = {}
    for name, valid in fields.items():
        value = _field(data.draw, valid)
        if value is not ...:
            payload[name] = value
    return payload


def _check(guard, response, what):
    guard.check(response, what)
    if response.status_code >= 400:
        assert_api_error_shape(response)


@given(data=st.data())
def test_post_usagers_never_500_nor_partial(api, guard, data):
    client, headers = api
    payload = _payload(
        data,
        {
            "first_name": "Léa",
            "last_name": "Dupont",
            "phone": "0612345678",
            "email": "lea@example.org",
            "notify_sms": True,
            "notify_email": False,
        },
    )
    if data.draw(st.booleans()):
        payload["phone"] = data.draw(
            date_strings | st.from_regex(r"\+?[0-9 .]{0,20}", fullmatch=True)
        )
    response = client.post("/api/v1/usagers", json=payload, headers=headers)
    _check(guard, response, f"POST /usagers {payload!r}")


@given(data=st.data())
def test_post_rdvs_never_500_nor_partial(api, guard, world, data):
    client, headers = api
    payload = _payload(
        data,
        {
            "motif_id": world.motif.id,
            "lieu_id": world.lieu.id,
            "agent_id": world.agent.id,
            "usager_id": world.usager.id,
        },
    )
    payload["starts_at"] = data.draw(
        st.one_of(date_strings, json_values, st.just("2026-06-05T10:00:00+02:00"))
    )
    if data.draw(st.booleans()):
        payload["usager_ids"] = data.draw(
            st.one_of(
                json_values,
                st.lists(st.one_of(st.just(world.usager.id), huge_ints, json_values), max_size=30),
            )
        )
    response = client.post("/api/v1/rdvs", json=payload, headers=headers)
    _check(guard, response, f"POST /rdvs {payload!r}")


@given(body=json_values)
def test_any_json_body_on_every_write_route(api, guard, world, body):
    client, headers = api
    from gateway.booking import book

    rdv = _existing_rdv(world, book)
    guard.baseline = committed_counts()
    for method, path in (
        ("post", "/api/v1/usagers"),
        ("post", "/api/v1/rdvs"),
        ("patch", f"/api/v1/rdvs/{rdv}"),
        ("post", f"/api/v1/rdvs/{rdv}/status"),
    ):
        response = getattr(client, method)(path, json=body, headers=headers)
        _check(guard, response, f"{method.upper()} {path} {body!r}")


@given(data=st.data())
def test_patch_rdv_never_500_nor_partial(api, guard, world, data):
    client, headers = api
    from gateway.booking import book

    rdv = _existing_rdv(world, book)
    guard.baseline = committed_counts()
    payload = {}
    if data.draw(st.booleans()):
        payload["starts_at"] = data.draw(
            st.one_of(date_strings, json_values, st.just("2026-06-06T10:00:00+02:00"))
        )
    if data.draw(st.booleans()):
        payload["lieu_id"] = data.draw(
            st.one_of(st.just(world.other_lieu.id), huge_ints, json_values)
        )
    if data.draw(st.booleans()):
        payload[data.draw(st.text(max_size=8))] = data.draw(json_values)
    response = client.patch(f"/api/v1/rdvs/{rdv}", json=payload, headers=headers)
    _check(guard, response, f"PATCH {payload!r}")


@given(
    status=json_values,
    rdv_path=st.one_of(
        st.just(None), huge_ints.map(str), st.sampled_from(["0", "-1", "abc", "1.5", "%00"])
    ),
)
def test_rdv_status_and_ids_never_500(api, guard, world, status, rdv_path):
    client, headers = api
    from gateway.booking import book

    rdv = _existing_rdv(world, book)
    guard.baseline = committed_counts()
    target = rdv if rdv_path is None else rdv_path
    for method, path, body in (
        ("post", f"/api/v1/rdvs/{target}/status", {"status": status}),
        ("get", f"/api/v1/rdvs/{target}", None),
        ("post", f"/api/v1/rdvs/{target}/cancel", None),
        ("get", f"/api/v1/usagers/{target}", None),
    ):
        response = getattr(client, method)(path, json=body, headers=headers)
        guard.check(response, f"{method.upper()} {path} {body!r}")


@given(data=st.data())
def test_slots_query_never_500(api, guard, world, data):
    client, headers = api
    params = {}
    for name, valid in (
        ("motif_id", world.motif.id),
        ("lieu_id", world.lieu.id),
        ("agent_id", world.agent.id),
    ):
        value = data.draw(
            st.one_of(st.just(str(valid)), form_text, huge_ints.map(str), st.just(None))
        )
        if value is not None:
            params[name] = value
    for name in ("from", "to"):
        value = data.draw(st.one_of(date_strings, st.just(None)))
        if value is not None:
            params[name] = value
    # Lone surrogates cannot travel in a URL: they arrive as "?" like any undecodable byte.
    response = client.get(
        "/api/v1/slots?" + urlencode(params, encoding="utf-8", errors="replace"), headers=headers
    )
    _check(guard, response, f"GET /slots {params!r}")
    if response.status_code == 200:
        assert isinstance(response.get_json()["items"], list)


def test_deeply_nested_json_is_a_400(api, guard):
    client, headers = api
    body = "[" * 50_000 + "]" * 50_000
    response = client.post(
        "/api/v1/usagers", data=body, content_type="application/json", headers=headers
    )
    _check(guard, response, "nested JSON")
    assert response.status_code == 400


def test_invalid_utf8_and_huge_numbers_are_400(api, guard):
    client, headers = api
    for raw in (
        b'{"first_name": "\xff\xfe"}',
        b'{"motif_id": 1' + b"0" * 5000 + b"}",
        b"",
        b"null",
        b"[]",
    ):
        response = client.post(
            "/api/v1/rdvs", data=raw, content_type="application/json", headers=headers
        )
        _check(guard, response, repr(raw[:40]))
        assert response.status_code == 400


def _existing_rdv(world, book) -> int:
    """An rdv to aim PATCH/status/cancel at (booked once per test)."""
    from sqlalchemy import select

    from gateway.extensions import db
    from gateway.models import Rdv

    existing = db.session.scalar(select(Rdv.id).order_by(Rdv.id).limit(1))
    if existing is not None:
        return existing
    rdv = book(
        world.org,
        motif_id=world.motif.id,
        lieu_id=world.lieu.id,
        agent_id=world.agent.id,
        usager_ids=[world.usager.id],
        starts_at=datetime(2026, 6, 5, 10, 0, tzinfo=PARIS),
    )
    return rdv.id


HOSTILE = [
    "a\x00b",
    "\ud800",
    "\u202eevil",
    "x" * 5000,
    "Robert'); DROP TABLE usagers;--",
    "%_%",
    "\\",
    " ",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_strings_in_every_usager_field(api, guard, value):
    client, headers = api
    for name in ("first_name", "last_name", "phone", "email"):
        payload = {"first_name": "Léa", "last_name": "Dupont", "phone": "0612345678", name: value}
        response = client.post("/api/v1/usagers", json=payload, headers=headers)
        _check(guard, response, f"{name}={value[:20]!r}")
