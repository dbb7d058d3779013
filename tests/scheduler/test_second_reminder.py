"""The reminder invites OUI; the second reminder goes only to the unconfirmed (SPEC section 5)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import time_machine

from gateway.booking import book, cancel, record_outcome
from gateway.extensions import db
from gateway.labels import SKIP_REASON_LABELS
from gateway.rendering import SMS_KINDS, offer_extra, render_reply, render_sms, sample_objects
from providers import status as S
from providers.base import InboundSms
from scheduler.dispatch import dispatch_due
from scheduler.queue import run_pending
from webhooks.inbound import receive

from .conftest import PARIS, messages, simulator_outbox, sms_usager

NOW = datetime(2030, 3, 4, 10, 0, tzinfo=PARIS)  # a Monday
RDV_AT = datetime(2030, 3, 7, 10, 0, tzinfo=PARIS)  # Thursday 10:00

# Segments of each SMS template with ordinary data (sample_objects: "MDS Calais, 12 rue X,
# 62100 Calais", a 2-digit hour) and a production-like base URL.
EXPECTED_SEGMENTS = {
    "confirmation": 1,
    "reminder": 1,
    "second_reminder": 1,
    "moved": 1,
    "cancelled": 1,
    "waitlist_offer": 1,
}


@pytest.fixture
def typical(app):
    app.config["PUBLIC_BASE_URL"] = "https://rdv.lapin.fr"
    rdv, usager = sample_objects()
    rdv.starts_at = rdv.starts_at.replace(hour=13, minute=30)  # 14h30 in Paris, winter
    return rdv, usager


@pytest.mark.parametrize("kind", SMS_KINDS)
def test_segment_count_of_each_sms_template_with_typical_data(typical, kind):
    rdv, usager = typical
    extra = offer_extra(rdv.starts_at, rdv.lieu, "Fg7hJ2kL9mPq", rdv.organisation.tz)
    sms = render_sms(kind, rdv, usager, "Ab3dE9xQ2kRt", previous_starts_at=rdv.starts_at, **extra)
    print(f"{kind}: {len(sms.body)} characters, {sms.segments} segment(s): {sms.body}")
    assert sms.encoding == "GSM-7"
    assert sms.segments == EXPECTED_SEGMENTS[kind]


@pytest.mark.parametrize("reply", ["cancelled", "confirmed", "stop", "start", "free_text"])
def test_segment_count_of_each_sms_reply(typical, reply):
    rdv, _ = typical
    sms = render_reply(
        reply,
        rdv=rdv,
        lieu_phone="03 21 00 00 01",
        organisation=rdv.organisation,
        date_short="mar. 24/11",
        time="14h30",
    )
    assert sms.segments == 1


def test_the_reminder_and_the_second_reminder_invite_the_reply_oui(typical):
    rdv, usager = typical
    for kind in ("reminder", "second_reminder"):
        body = render_sms(kind, rdv, usager, "Ab3dE9xQ2kRt").body
        assert "OUI" in body and "ANNULER" in body and "/c/Ab3dE9xQ2kRt" in body


def _book(world, usager, starts=RDV_AT, now=NOW):
    return book(
        world.org,
        motif_id=world.motif.id,
        lieu_id=world.lieu.id,
        agent_id=world.agent.id,
        usager_ids=[usager.id],
        starts_at=starts,
        now=now,
    )


def _send_due(app, at):
    with time_machine.travel(at, tick=False):
        dispatch_due(at)
        run_pending(app)


@pytest.fixture
def second_24h(world):
    world.org.second_reminder_offset = "24h"
    db.session.commit()
    return world


def test_second_reminder_is_planned_like_a_reminder_per_channel(second_24h):
    usager = sms_usager(second_24h, email="ana@example.org")
    usager.notify_email = True
    db.session.commit()
    _book(second_24h, usager)
    planned = {(m.channel, m.kind): m.send_at for m in messages(status=S.SCHEDULED)}
    assert planned[("sms", "reminder")] == RDV_AT - timedelta(hours=48)
    assert planned[("sms", "second_reminder")] == RDV_AT - timedelta(hours=24)
    assert planned[("email", "second_reminder")] == RDV_AT - timedelta(hours=24)


def test_motif_overrides_and_can_switch_the_second_reminder_off(second_24h):
    second_24h.motif.second_reminder_offset = "off"
    db.session.commit()
    _book(second_24h, sms_usager(second_24h))
    assert messages(kind="second_reminder") == []
    second_24h.motif.second_reminder_offset = "3h"
    db.session.commit()
    _book(
        second_24h, sms_usager(second_24h, phone="+33622222222"), starts=RDV_AT + timedelta(hours=1)
    )
    [second] = messages(kind="second_reminder")
    assert second.send_at == RDV_AT + timedelta(hours=1) - timedelta(hours=3)


def test_second_reminder_in_quiet_hours_goes_earlier_like_a_reminder(world):
    world.org.second_reminder_offset = "12h"  # 22:00 the evening before
    db.session.commit()
    _book(world, sms_usager(world))
    [second] = messages(kind="second_reminder")
    assert second.send_at == datetime(2030, 3, 6, 19, 59, tzinfo=PARIS)


def test_second_reminder_goes_to_a_usager_who_did_not_answer(app, second_24h):
    _book(second_24h, sms_usager(second_24h))
    _send_due(app, RDV_AT - timedelta(hours=24))
    [second] = messages(kind="second_reminder")
    assert second.status in (S.SENT, S.DELIVERED)
    assert second.body in [m.body for m in simulator_outbox(app) if m.reference == str(second.id)]


def test_second_reminder_is_skipped_after_oui(app, second_24h):
    usager = sms_usager(second_24h)
    _book(second_24h, usager)
    _send_due(app, RDV_AT - timedelta(hours=48))  # the first reminder
    with time_machine.travel(RDV_AT - timedelta(hours=47), tick=False):
        receive(InboundSms("simulator", "in-1", usager.phone, "+33700000000", " oui "))
        run_pending(app)
    _send_due(app, RDV_AT - timedelta(hours=24))
    [second] = messages(kind="second_reminder")
    assert second.status == S.SKIPPED
    assert second.status_changes[-1].detail == SKIP_REASON_LABELS["confirmed_by_oui"]
    assert all(m.reference != str(second.id) for m in simulator_outbox(app))


def test_second_reminder_never_goes_after_a_cancellation(app, second_24h):
    rdv = _book(second_24h, sms_usager(second_24h))
    cancel(rdv, via="link", now=NOW + timedelta(hours=1))
    _send_due(app, RDV_AT - timedelta(hours=24))
    [second] = messages(kind="second_reminder")
    assert second.status == S.CANCELLED
    assert all(m.reference != str(second.id) for m in simulator_outbox(app))


def test_second_reminder_cancelled_at_send_time_even_if_planning_missed_it(app, second_24h):
    """A cancellation committed between dispatch and send: the send-time check catches it."""
    rdv = _book(second_24h, sms_usager(second_24h))
    at = RDV_AT - timedelta(hours=24)
    with time_machine.travel(at, tick=False):
        dispatch_due(at)
        rdv.status, rdv.cancelled_at, rdv.cancelled_via = "excused", at, "link"
        db.session.commit()
        run_pending(app)
    [second] = messages(kind="second_reminder")
    assert second.status == S.CANCELLED


def test_noshow_only_option_sends_only_to_usagers_with_a_past_noshow(app, second_24h):
    second_24h.org.second_reminder_noshow_only = True
    db.session.commit()
    absent = sms_usager(second_24h, phone="+33633333333")
    past = _book(second_24h, absent, starts=NOW + timedelta(hours=1), now=NOW)
    record_outcome(past, "noshow", now=NOW + timedelta(hours=3))
    diligent = sms_usager(second_24h, phone="+33644444444")
    rdv_absent = _book(second_24h, absent, now=NOW + timedelta(hours=4))
    rdv_diligent = _book(
        second_24h, diligent, starts=RDV_AT + timedelta(hours=1), now=NOW + timedelta(hours=4)
    )
    _send_due(app, RDV_AT + timedelta(hours=1) - timedelta(hours=24))
    by_rdv = {m.rdv_id: m for m in messages(kind="second_reminder")}
    assert by_rdv[rdv_absent.id].status in (S.SENT, S.DELIVERED)
    assert by_rdv[rdv_diligent.id].status == S.SKIPPED
    assert by_rdv[rdv_diligent.id].status_changes[-1].detail == SKIP_REASON_LABELS["no_past_noshow"]


def test_second_reminder_respects_consent_and_stop(app, second_24h):
    usager = sms_usager(second_24h)
    _book(second_24h, usager)
    usager.sms_opted_out = True
    db.session.commit()
    _send_due(app, RDV_AT - timedelta(hours=24))
    [second] = messages(kind="second_reminder")
    assert second.status == S.SKIPPED and "STOP" in second.status_changes[-1].detail


def test_rdv_page_says_why_a_second_reminder_was_skipped(app, second_24h, login):
    usager = sms_usager(second_24h)
    rdv = _book(second_24h, usager)
    rdv.confirmed_at = NOW + timedelta(hours=1)
    db.session.commit()
    _send_due(app, RDV_AT - timedelta(hours=24))
    page = login.get(f"/rdvs/{rdv.id}").get_data(as_text=True)
    assert "Second rappel" in page
    assert "confirmé par OUI : second rappel inutile" in page
