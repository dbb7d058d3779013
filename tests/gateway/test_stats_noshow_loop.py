"""Statistics of the no-show loop against hand-built data: freed slots re-filled,
the median time to re-fill, the confirmation rate, no-shows of confirmed vs unconfirmed."""

from datetime import datetime, timedelta

import pytest

from gateway.extensions import db
from gateway.models import FreedSlot
from gateway.stats import compute_stats

from .test_stats import NOW, PARIS, add_message, add_rdv, frozen, month  # noqa: F401 (fixture)


def at(m, d, h, minute=0):
    return datetime(2026, m, d, h, minute, tzinfo=PARIS)


def freed(world, starts_at, freed_at, *, by_usager=True, filled_after=None, via=None, agent=None):
    slot = FreedSlot(
        organisation_id=world.org.id,
        motif_id=world.motif.id,
        lieu_id=world.lieu.id,
        agent_id=(agent or world.agent).id,
        starts_at=starts_at,
        ends_at=starts_at + timedelta(minutes=30),
        freed_at=freed_at,
        freed_by_usager=by_usager,
        filled_at=freed_at + filled_after if filled_after else None,
        filled_via=via,
    )
    db.session.add(slot)
    return slot


def booked(world, starts_at, created_at, agent=None):
    rdv = add_rdv(world, starts_at, agent=agent)
    rdv.created_at = created_at
    return rdv


@pytest.fixture
def loop_data(world):
    # May: A by the waiting list after 30 min; B (freed by the service) booked again after
    # 2 h; C never; D "re-filled" only by another agent's rdv, which does not count.
    freed(world, at(5, 20, 10), at(5, 10, 10), filled_after=timedelta(minutes=30), via="waitlist")
    freed(world, at(5, 21, 9), at(5, 11, 9), by_usager=False)
    booked(world, at(5, 21, 9), at(5, 11, 11))
    freed(world, at(5, 22, 10), at(5, 12, 10))
    freed(world, at(5, 23, 10), at(5, 13, 10))
    booked(world, at(5, 23, 10), at(5, 13, 11), agent=world.other_agent)
    # A booking made before the slot was freed is not a re-fill.
    freed(world, at(5, 24, 10), at(5, 14, 10))
    booked(world, at(5, 24, 10, 15), at(5, 1, 8))
    # June: E taken by a move after an hour.
    freed(world, at(6, 20, 10), at(6, 1, 10), filled_after=timedelta(hours=1), via="move")

    # Confirmations (rdvs of May): (reminder kind, delivered?, confirmed?, status)
    cases = [
        ("reminder", True, True, "seen"),
        ("reminder", True, True, "noshow"),
        ("reminder", True, False, "noshow"),
        ("reminder", True, False, "noshow"),
        ("reminder", False, False, "seen"),
        ("second_reminder", True, True, "seen"),
        ("reminder", True, True, "excused"),  # cancelled: left out
    ]
    for i, (kind, delivered, confirmed, status) in enumerate(cases):
        rdv = add_rdv(
            world, at(5, 4, 9 + i), status=status, via="link" if status == "excused" else None
        )
        rdv.confirmed_at = at(5, 3, 12) if confirmed else None
        message = add_message(
            world, rdv, status="delivered" if delivered else "failed", sent_at=at(5, 2, 10)
        )
        message.kind = kind
        add_message(world, rdv, channel="email", status="delivered", sent_at=at(5, 2, 10))
    db.session.commit()


def test_freed_slots_refilled_and_median_time_per_month(world, loop_data):
    data = compute_stats(world.org, now=NOW)
    may = month(data, "2026-05", "waitlist")
    assert may == {
        "month": "2026-05",
        "freed": 5,
        "freed_by_usagers": 4,
        "refilled": 2,
        "refilled_by_waitlist": 1,
        "median_refill_minutes": 75.0,
    }
    june = month(data, "2026-06", "waitlist")
    assert (june["freed"], june["refilled"], june["refilled_by_waitlist"]) == (1, 1, 0)
    assert june["median_refill_minutes"] == 60.0
    totals = data["waitlist"]["totals"]
    assert (totals["freed"], totals["freed_by_usagers"], totals["refilled"]) == (6, 5, 3)
    assert totals["median_refill_minutes"] == 60.0
    assert month(data, "2026-04", "waitlist")["median_refill_minutes"] is None


def test_confirmation_rate_and_noshow_rates_of_confirmed_and_unconfirmed(world, loop_data):
    data = compute_stats(world.org, now=NOW)
    may = month(data, "2026-05", "confirmations")
    assert (may["reminded"], may["confirmed_after_reminder"]) == (5, 3)
    assert may["confirmation_rate"] == 0.6
    assert (may["seen_confirmed"], may["noshow_confirmed"]) == (2, 1)
    assert (may["seen_unconfirmed"], may["noshow_unconfirmed"]) == (1, 2)
    assert may["noshow_rate_confirmed"] == round(1 / 3, 4)
    assert may["noshow_rate_unconfirmed"] == round(2 / 3, 4)
    assert data["confirmations"]["totals"]["confirmation_rate"] == 0.6


def test_other_organisations_are_not_counted(world, loop_data):
    from ..factories import make_org

    other = make_org(name="Autre")
    db.session.commit()
    data = compute_stats(other, now=NOW)
    assert data["waitlist"]["totals"]["freed"] == 0
    assert data["confirmations"]["totals"]["reminded"] == 0


def test_stats_page_and_json_show_the_loop(client, world, loop_data):
    payload = client.get(f"/stats.json?organisation_id={world.org.id}").get_json()
    assert payload["waitlist"]["totals"]["refilled_by_waitlist"] == 1
    assert payload["confirmations"]["totals"]["confirmation_rate"] == 0.6
    page = client.get(f"/stats?organisation_id={world.org.id}").get_data(as_text=True)
    assert 'id="refilled">3<' in page
    assert "dont 1 par la liste d" in page
    assert 'id="confirmation-rate">60,0 %<' in page
    assert 'id="median-refill">60 min<' in page
