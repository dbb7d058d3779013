"""Every page of Lapin, for the accessibility and layout tests (test_accessibility.py)
and the screenshots (test_screenshots.py).

**Adding a page?** Append a :class:`Route` to ``ROUTES`` (or to your own list added
to ``ROUTES`` at the bottom): it is then checked by axe-core at desktop and phone
widths and for sideways scrolling at 390 px. ``path`` is a string, or a function of
the :class:`Scenario` (the demo data every test starts from) returning one; use
``setup`` for a page that needs more than a GET (it gets the Playwright page, the
scenario and the world, and leaves the browser on the page to check).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta

from flask import Flask

from gateway.booking import book, cancel, record_outcome
from gateway.extensions import db
from gateway.models import Agent, Motif, Organisation, Participation, WebhookEndpoint
from gateway.timeutil import localize, utcnow


@dataclass
class Scenario:
    """What the pages show: an upcoming rdv with its messages sent and delivered, a rdv
    the agent cancelled with a reason, and a past rdv whose usager did not come."""

    rdv_id: int
    code: str
    cancelled_rdv_id: int
    cancelled_code: str
    past_rdv_id: int
    day: str  # the upcoming rdv's local date, ISO
    motif_id: int
    lieu_id: int
    agent_id: int
    extra: dict = field(default_factory=dict)


def build_scenario(live_app: Flask, world, run_pipeline: Callable[[Flask], None]) -> Scenario:
    """Book, cancel and record in the live app's database, then send what is due."""
    with live_app.app_context():
        org = db.session.get(Organisation, world.org.id)
        agent = db.session.get(Agent, world.agent.id)
        agent.is_admin = True  # sees the webhooks page too
        # Online booking open for the motif, for the public booking pages.
        org.slug, org.online_booking = "demo-a11y", True
        db.session.get(Motif, world.motif.id).bookable_online = True
        db.session.commit()
        tz = org.tz
        tomorrow = utcnow().astimezone(tz).date() + timedelta(days=1)

        def booking(day, hour, usager_id, now=None):
            return book(
                org,
                motif_id=world.motif.id,
                lieu_id=world.lieu.id,
                agent_id=world.agent.id,
                usager_ids=[usager_id],
                starts_at=localize(datetime.combine(day, time(hour)), tz),
                **({"now": now} if now else {}),
            )

        rdv = booking(tomorrow, 10, world.usager.id)
        cancelled = booking(tomorrow, 11, world.email_usager.id)
        cancel(cancelled, via="agent", agent=agent, **_reason("Agent absent ce jour-là"))
        last_week = tomorrow - timedelta(days=8)
        past = booking(
            last_week, 9, world.usager.id, now=localize(datetime.combine(last_week, time(8)), tz)
        )
        record_outcome(past, "noshow")
        # A disabled webhook endpoint (nothing is delivered to it) for the admins' page.
        db.session.add(
            WebhookEndpoint(
                organisation_id=org.id,
                url="https://logiciel.example.org/lapin/webhooks",
                events="rdv.created,rdv.cancelled",
                secret="whsec_" + "A" * 32,
                enabled=False,
                disabled_at=utcnow(),
                disabled_reason="en échec depuis 24 h",
            )
        )
        db.session.commit()
        ids = rdv.id, cancelled.id, past.id
    run_pipeline(live_app)
    with live_app.app_context():
        code, cancelled_code = (
            db.session.query(Participation.cancel_code).filter_by(rdv_id=i).scalar()
            for i in ids[:2]
        )
    return Scenario(
        ids[0],
        code,
        ids[1],
        cancelled_code,
        ids[2],
        tomorrow.isoformat(),
        world.motif.id,
        world.lieu.id,
        world.agent.id,
    )


def _reason(text: str) -> dict:
    """``reason=`` for :func:`gateway.booking.cancel` when it takes one."""
    import inspect

    return {"reason": text} if "reason" in inspect.signature(cancel).parameters else {}


@dataclass(frozen=True)
class Route:
    """A page to check: ``id`` names the test; ``agent``: seen logged in."""

    id: str
    path: str | Callable[[Scenario], str]
    agent: bool = False
    setup: Callable | None = None
    status: int = 200  # the page's expected HTTP status
    brand: str = "neutral"  # BRAND: "etat" adds the State identity

    def url(self, scenario: Scenario) -> str:
        return self.path(scenario) if callable(self.path) else self.path


def _booking_form_errors(page, scenario, world):
    """The usager step of the booking form after a submission with invalid fields."""
    page.get_by_label("Adresse e-mail").fill("pas-une-adresse")
    page.get_by_label("Téléphone mobile").fill("12")
    page.get_by_role("button", name="Créer l'usager et réserver").click()


def _usager_step(scenario: Scenario) -> str:
    return (
        f"/rdvs/new?motif_id={scenario.motif_id}&lieu_id={scenario.lieu_id}"
        f"&agent_id={scenario.agent_id}&starts_at={scenario.day}T10:30"
    )


ROUTES: list[Route] = [
    # Logged out: agents' login, public pages, usagers' links.
    Route("login", "/login"),
    Route("stats-public", "/stats"),
    Route("api-docs", "/api/docs"),
    Route("cancel-link", lambda s: f"/c/{s.code}"),
    Route("cancel-link-cancelled", lambda s: f"/c/{s.cancelled_code}"),
    Route("link-not-found", "/c/Mistyped000", status=404),
    # Online booking (docs/online-booking.md): the steps before the usager's details.
    Route("online-organisations", "/prendre-rdv"),
    Route("online-motifs", "/prendre-rdv/demo-a11y"),
    Route("online-lieux", lambda s: f"/prendre-rdv/demo-a11y/lieu?motif={s.motif_id}"),
    Route(
        "online-slots",
        lambda s: f"/prendre-rdv/demo-a11y/creneau?motif={s.motif_id}&lieu={s.lieu_id}",
    ),
    Route("online-not-found", "/prendre-rdv/nulle-part", status=404),
    Route("not-found", "/nulle-part", status=404),
    # Logged in as an agent.
    Route("agenda-day", lambda s: f"/agenda?date={s.day}", agent=True),
    Route("agenda-week", lambda s: f"/agenda?date={s.day}&view=week&agent=all", agent=True),
    Route("booking-motif", "/rdvs/new", agent=True),
    Route("booking-lieu", lambda s: f"/rdvs/new?motif_id={s.motif_id}", agent=True),
    Route(
        "booking-slot", lambda s: f"/rdvs/new?motif_id={s.motif_id}&lieu_id={s.lieu_id}", agent=True
    ),
    Route("booking-usager", _usager_step, agent=True),
    Route(
        "booking-usager-errors", _usager_step, agent=True, setup=_booking_form_errors, status=422
    ),
    Route("rdv", lambda s: f"/rdvs/{s.rdv_id}", agent=True),
    Route("rdv-cancelled", lambda s: f"/rdvs/{s.cancelled_rdv_id}", agent=True),
    Route("rdv-past", lambda s: f"/rdvs/{s.past_rdv_id}", agent=True),
    Route("outbox", "/simulator/outbox", agent=True),
    Route("stats-agent", "/stats", agent=True),
    Route("webhooks-admin", "/admin/webhooks", agent=True),
    Route("online-admin", "/admin/prise-de-rdv", agent=True),
    # The State identity (BRAND=etat): its logo block and Marianne font.
    Route("login-etat", "/login", brand="etat"),
    Route("cancel-link-etat", lambda s: f"/c/{s.code}", brand="etat"),
    Route("rdv-etat", lambda s: f"/rdvs/{s.rdv_id}", agent=True, brand="etat"),
]
