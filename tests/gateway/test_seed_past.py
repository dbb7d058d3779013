"""``gateway seed-demo`` seeds past rdvs with outcomes: ``make run`` shows a no-show rate
on /stats and the seen / no-show workflow on past rdvs, and sends nothing old."""

from __future__ import annotations

from sqlalchemy import func, select

from gateway.extensions import db
from gateway.models import Message, Rdv
from gateway.stats import compute_stats
from gateway.timeutil import utcnow


def test_the_demo_has_past_rdvs_with_outcomes_and_no_old_message_left_to_send(runner, client):
    """Before: the demo had no past rdv, so the no-show rate was "—"."""
    assert runner.invoke(args=["seed-demo"]).exit_code == 0
    now = utcnow()
    past = db.session.scalars(select(Rdv).where(Rdv.starts_at < now)).all()
    statuses = {r.status for r in past}
    assert {"seen", "noshow", "excused", "unknown"} <= statuses
    assert {r.cancelled_via for r in past if r.status == "excused"} == {"link", "sms"}
    # No message of a past rdv waits to be sent when `make run` starts its worker (the
    # upcoming rdvs' confirmations do: they go then).
    stale = db.session.scalars(
        select(Message)
        .join(Rdv, Rdv.id == Message.rdv_id)
        .where(Message.status == "scheduled", Rdv.starts_at < now)
    ).all()
    assert stale == []
    rate = compute_stats(None, past_months=3)["rdvs"]["totals"]["noshow_rate"]
    assert rate is not None and 0.05 < rate < 0.3
    html = client.get("/stats").get_data(as_text=True)
    assert '<p class="kpi-value" id="noshow-rate">—</p>' not in html

    # Idempotent: a second run adds no past rdv.
    before = db.session.scalar(select(func.count(Rdv.id)))
    assert runner.invoke(args=["seed-demo"]).exit_code == 0
    assert db.session.scalar(select(func.count(Rdv.id))) == before
