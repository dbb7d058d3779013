"""Fuzzing the agent pages: the booking form, the agenda, login.

Never a 500, never a partial write.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest
import time_machine
from hypothesis import given
from hypothesis import strategies as st

from .helpers import WriteGuard
from .strategies import date_strings, form_text, huge_ints, phone_strings

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 6, 1, 10, 0, tzinfo=PARIS)
_no_surrogates = st.characters(blacklist_categories=("Cs",))


def _url_safe(text: str) -> str:
    return text.encode("utf-8", "replace").decode("utf-8")


@pytest.fixture
def agent(login):
    with time_machine.travel(NOW, tick=False):
        yield login


def _value(draw, valid):
    return draw(st.one_of(st.just(str(valid)), form_text, huge_ints.map(str), st.just(None)))


@given(data=st.data())
def test_booking_form_post_never_500_nor_partial(agent, world, data):
    guard = WriteGuard()
    form = {}
    for name, valid in (
        ("motif_id", world.motif.id),
        ("lieu_id", world.lieu.id),
        ("agent_id", world.agent.id),
        ("starts_at", "2026-06-05T10:00:00+02:00"),
        ("usager_id", world.usager.id),
        ("first_name", "Léa"),
        ("last_name", "Martin"),
        ("phone", "0612345678"),
        ("email", "lea.martin@example.org"),
        ("notify_sms", "y"),
        ("notify_email", "y"),
        ("q", "Dupont"),
    ):
        value = _value(data.draw, valid)
        if name == "starts_at" and data.draw(st.booleans()):
            value = _url_safe(data.draw(date_strings))
        if name == "phone" and data.draw(st.booleans()):
            value = _url_safe(data.draw(phone_strings))
        if value is not None:
            form[name] = value
    response = agent.post("/rdvs/new", data=form)
    guard.check(response, f"POST /rdvs/new {form!r}")


@given(data=st.data())
def test_booking_form_and_agenda_queries_never_500(agent, world, data):
    guard = WriteGuard()
    params = {}
    for name, valid in (
        ("motif_id", world.motif.id),
        ("lieu_id", world.lieu.id),
        ("agent_id", world.agent.id),
        ("week", "2026-06-01"),
        ("starts_at", "2026-06-05T10:00:00+02:00"),
        ("q", "Léa"),
    ):
        value = _value(data.draw, valid)
        if name in ("week", "starts_at") and data.draw(st.booleans()):
            value = _url_safe(data.draw(date_strings))
        if value is not None:
            params[name] = value
    response = agent.get("/rdvs/new?" + urlencode(params))
    guard.check(response, f"GET /rdvs/new {params!r}")
    agenda = {
        "date": _url_safe(data.draw(date_strings)),
        "view": data.draw(st.sampled_from(["day", "week", "x"])),
        "agent": data.draw(st.one_of(st.just("me"), form_text, huge_ints.map(str))),
    }
    response = agent.get("/agenda?" + urlencode(agenda))
    guard.check(response, f"GET /agenda {agenda!r}")


@given(
    rdv_id=huge_ints.filter(lambda n: n >= 0),
    starts_at=date_strings.map(_url_safe),
    lieu_id=form_text,
    status=form_text,
)
def test_rdv_actions_never_500(agent, world, rdv_id, starts_at, lieu_id, status):
    guard = WriteGuard()
    for path, form in (
        (f"/rdvs/{rdv_id}", None),
        (f"/rdvs/{rdv_id}/move", {"starts_at": starts_at, "lieu_id": lieu_id}),
        (f"/rdvs/{rdv_id}/status", {"status": status}),
        (f"/rdvs/{rdv_id}/cancel", {}),
    ):
        response = agent.get(path) if form is None else agent.post(path, data=form)
        guard.check(response, f"{path} {form!r}")


@given(data=st.data())
def test_move_form_of_a_real_rdv_never_500(agent, world, data):
    from gateway.booking import book

    rdv = (
        book(
            world.org,
            motif_id=world.motif.id,
            lieu_id=world.lieu.id,
            agent_id=world.agent.id,
            usager_ids=[world.usager.id],
            starts_at=datetime(2026, 6, 5, 10, 0, tzinfo=PARIS),
        )
        if not hasattr(world, "_rdv_id")
        else None
    )
    if rdv is not None:
        world._rdv_id = rdv.id
    guard = WriteGuard()
    form = {
        "starts_at": _url_safe(data.draw(date_strings)),
        "lieu_id": data.draw(
            st.one_of(st.just(str(world.other_lieu.id)), form_text, huge_ints.map(str))
        ),
    }
    response = agent.post(f"/rdvs/{world._rdv_id}/move", data=form)
    guard.check(response, f"move {form!r}")


@given(
    email=st.text(alphabet=_no_surrogates, max_size=300),
    password=st.text(alphabet=_no_surrogates, max_size=300),
)
def test_login_never_500(client, world, email, password):
    guard = WriteGuard()
    response = client.post("/login", data={"email": email, "password": password})
    guard.check(response, f"login {email!r}")
    assert response.status_code in (302, 400, 422)  # 400: NUL refused at the door
    if response.status_code == 302:
        client.post("/logout")


@pytest.mark.parametrize("value", ["a\x00b", "\u202eevil", "x" * 3000, "%_%", "\\"])
def test_hostile_strings_in_login_search_and_booking_form(agent, client, world, value):
    guard = WriteGuard()
    response = agent.get(
        "/rdvs/new?"
        + urlencode(
            {
                "motif_id": world.motif.id,
                "lieu_id": world.lieu.id,
                "agent_id": world.agent.id,
                "q": value,
                "starts_at": "2026-06-05T10:00:00+02:00",
            }
        )
    )
    guard.check(response, "search")
    form = {
        "motif_id": world.motif.id,
        "lieu_id": world.lieu.id,
        "agent_id": world.agent.id,
        "starts_at": "2026-06-05T10:00:00+02:00",
        "first_name": value,
        "last_name": value,
        "phone": value,
        "email": value,
    }
    guard.check(agent.post("/rdvs/new", data=form), "booking form")
    agent.post("/logout")
    guard.check(client.post("/login", data={"email": value, "password": value}), "login")
