"""Demo data for ``make run``: one organisation, two lieux, three agents,
motifs, opening hours, a few usagers, upcoming rdvs, and past rdvs with their
outcomes (so that ``/stats`` shows a no-show rate and the rdv pages the
seen / no-show workflow). Idempotent: a second run changes nothing."""

from __future__ import annotations

from datetime import datetime, time, timedelta

from sqlalchemy import select

from .booking import book, cancel, record_outcome
from .extensions import db
from .models import Agent, Lieu, Message, Motif, OpeningHours, Organisation, Rdv, Usager
from .timeutil import localize, utcnow

DEMO_PASSWORD = "lapin-demo-2026"
DEMO_AGENTS = (
    ("anne.martin@demo.lapin.fr", "Anne", "Martin"),
    ("karim.benali@demo.lapin.fr", "Karim", "Benali"),
    ("sophie.leroy@demo.lapin.fr", "Sophie", "Leroy"),
)


def seed_demo(now: datetime | None = None) -> list[str]:
    """Create the demo organisation once; return the lines to print (logins)."""
    now = now or utcnow()
    org = db.session.scalar(
        select(Organisation).where(Organisation.name == "Département de démonstration")
    )
    if org is None:
        org = _create(now)
    elif org.slug is None:
        # A demo database made before online booking existed: open it too.
        _open_online_booking(org)
    past = _seed_past(org, now)
    lines = [
        f"Organisation de démonstration : id {org.id}",
        "Comptes agents (mot de passe " + DEMO_PASSWORD + ") :",
    ]
    for email, first, last in DEMO_AGENTS:
        lines.append(f"  {email}" + (" (admin)" if email == DEMO_AGENTS[0][0] else ""))
    if past:
        lines.append(f"{past} rendez-vous passés ajoutés, avec leur issue (venu, absent, annulé)")
    lines.append(
        "Liste d'attente : annulez un rendez-vous PMI à MDS Calais, Camille Roux reçoit "
        "la proposition dans le simulateur (hors heures calmes)."
    )
    lines.append("Ouvrez http://127.0.0.1:5000/login")
    lines.append(f"Prise de rendez-vous en ligne : http://127.0.0.1:5000/prendre-rdv/{org.slug}")
    return lines


DEMO_SLUG = "demo"
# Motifs usagers book themselves; the others stay agent-only (an RSA follow-up, a social
# worker's interview are set up by the service).
DEMO_ONLINE = {
    "Consultation PMI nourrisson": "Suivi de la croissance et de la santé de votre bébé.",
    "Vaccination": "Vaccins obligatoires et recommandés de l'enfant.",
}


def _open_online_booking(org: Organisation) -> None:
    org.slug = DEMO_SLUG
    org.online_booking = True
    for motif in db.session.scalars(select(Motif).where(Motif.organisation_id == org.id)):
        if motif.name in DEMO_ONLINE:
            motif.bookable_online = True
            motif.online_min_notice_minutes = 120
            motif.online_max_delay_days = 60
            motif.public_description = DEMO_ONLINE[motif.name]
    db.session.commit()


def _create(now: datetime) -> Organisation:
    org = Organisation(
        name="Département de démonstration",
        timezone="Europe/Paris",
        phone="+33321000000",
        sms_sender="LapinDemo",
    )
    db.session.add(org)
    db.session.flush()
    calais = Lieu(
        organisation_id=org.id,
        name="MDS Calais",
        address="12 rue Royale, 62100 Calais",
        phone="+33321000001",
    )
    arras = Lieu(
        organisation_id=org.id,
        name="PMI Arras",
        address="3 place des Héros, 62000 Arras",
        phone="+33321000002",
    )
    db.session.add_all([calais, arras])
    agents = []
    for email, first, last in DEMO_AGENTS:
        agent = Agent(organisation_id=org.id, email=email, first_name=first, last_name=last)
        agent.is_admin = email == DEMO_AGENTS[0][0]  # manages the organisation's webhooks
        agent.set_password(DEMO_PASSWORD)
        agents.append(agent)
    db.session.add_all(agents)
    pmi = Motif(
        organisation_id=org.id,
        name="Consultation PMI nourrisson",
        service="PMI",
        duration_minutes=30,
        location_type="on_site",
        instructions="Apportez le carnet de santé de l'enfant.",
    )
    vaccin = Motif(
        organisation_id=org.id,
        name="Vaccination",
        service="Vaccination",
        duration_minutes=15,
        location_type="on_site",
    )
    social = Motif(
        organisation_id=org.id,
        name="Entretien assistante sociale",
        service="Social",
        duration_minutes=45,
        location_type="on_site",
    )
    rsa = Motif(
        organisation_id=org.id,
        name="Suivi RSA par téléphone",
        service="RSA",
        duration_minutes=30,
        location_type="phone",
    )
    db.session.add_all([pmi, vaccin, social, rsa])
    db.session.flush()
    for weekday in range(5):
        for agent, lieu, motifs in (
            (agents[0], calais, [pmi, vaccin]),
            (agents[1], arras, [pmi, vaccin]),
            (agents[2], calais, [social, rsa]),
        ):
            for start, end in ((time(9), time(12)), (time(13, 30), time(17))):
                db.session.add(
                    OpeningHours(
                        organisation_id=org.id,
                        agent_id=agent.id,
                        lieu_id=lieu.id,
                        weekday=weekday,
                        start_time=start,
                        end_time=end,
                        motifs=motifs,
                    )
                )
    usagers = [
        Usager(
            organisation_id=org.id,
            first_name="Léa",
            last_name="Dupont",
            phone="+33612345678",
            email="lea.dupont@example.org",
        ),
        Usager(
            organisation_id=org.id,
            first_name="Mohamed",
            last_name="Haddad",
            phone="+33698765432",
            notify_email=False,
        ),
        Usager(
            organisation_id=org.id,
            first_name="Julie",
            last_name="Lefebvre",
            email="julie.lefebvre@example.org",
            notify_sms=False,
        ),
        Usager(
            organisation_id=org.id, first_name="Nadia", last_name="Moreau", phone="+262692123456"
        ),
        # On the waiting list (below): cancelling a PMI rdv at MDS Calais offers her its slot.
        Usager(
            organisation_id=org.id, first_name="Camille", last_name="Roux", phone="+33611223344"
        ),
    ]
    db.session.add_all(usagers)
    db.session.commit()
    _open_online_booking(org)

    # A few upcoming rdvs on the next working days, in free slots.
    tz = org.tz
    day = now.astimezone(tz).date() + timedelta(days=1)
    booked = 0
    while booked < 4:
        if day.weekday() < 5:
            for hour, usager, agent, motif, lieu in (
                (10, usagers[booked % 4], agents[0], pmi, calais),
                (14, usagers[(booked + 1) % 4], agents[2], social, calais),
            ):
                book(
                    org,
                    motif_id=motif.id,
                    lieu_id=lieu.id,
                    agent_id=agent.id,
                    usager_ids=[usager.id],
                    starts_at=localize(datetime.combine(day, time(hour)), tz),
                    now=now,
                )
            booked += 2
        day += timedelta(days=1)

    # Camille Roux waits for an earlier PMI slot at MDS Calais: her rdv is a week after
    # the demo ones, so cancelling one of them offers her its slot (docs/waitlist.md).
    day += timedelta(days=7)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    book(
        org,
        motif_id=pmi.id,
        lieu_id=calais.id,
        agent_id=agents[0].id,
        usager_ids=[usagers[4].id],
        starts_at=localize(datetime.combine(day, time(10)), tz),
        now=now,
        waitlist=True,
    )
    return org


PAST_WEEKS = 5
# What became of the past rdvs, in turn: mostly seen, about one in seven a no-show (the
# rate the product's reminders aim below), some cancelled by the usager beforehand.
PAST_OUTCOMES = (
    "seen", "seen", "noshow", "seen", "seen", "link", "seen",
    "seen", "seen", "seen", "noshow", "seen", "sms", "seen",
)  # fmt: skip
UNRECORDED_DAYS = 2  # the latest past days keep no outcome: the agent records it


def _seed_past(org: Organisation, now: datetime) -> int:
    """Past rdvs of the last ``PAST_WEEKS`` weeks with outcomes; their messages sent and
    delivered when they were due (never sent now). Skipped once the organisation has a
    past rdv. Returns how many were added."""
    has_past = db.session.scalar(
        select(Rdv.id).where(Rdv.organisation_id == org.id, Rdv.starts_at < now).limit(1)
    )
    if has_past is not None:
        return 0
    agents = {
        a.email: a for a in db.session.scalars(select(Agent).where(Agent.organisation_id == org.id))
    }
    motifs = {
        m.name: m for m in db.session.scalars(select(Motif).where(Motif.organisation_id == org.id))
    }
    lieu = db.session.scalar(
        select(Lieu).where(Lieu.organisation_id == org.id, Lieu.name == "MDS Calais")
    )
    usagers = list(
        db.session.scalars(
            select(Usager).where(Usager.organisation_id == org.id).order_by(Usager.id)
        )
    )
    if lieu is None or not usagers or len(agents) < 3:
        return 0
    tz = org.tz
    today = now.astimezone(tz).date()
    plan = (  # hour, agent, motif: inside the demo's opening hours
        (9, agents[DEMO_AGENTS[0][0]], motifs["Consultation PMI nourrisson"]),
        (14, agents[DEMO_AGENTS[2][0]], motifs["Entretien assistante sociale"]),
    )
    count = 0
    day = today - timedelta(weeks=PAST_WEEKS)
    while day < today:
        if day.weekday() < 5:
            for hour, agent, motif in plan:
                starts = localize(datetime.combine(day, time(hour)), tz)
                rdv = book(
                    org,
                    motif_id=motif.id,
                    lieu_id=lieu.id,
                    agent_id=agent.id,
                    usager_ids=[usagers[count % len(usagers)].id],
                    starts_at=starts,
                    now=starts - timedelta(days=7),
                )
                outcome = PAST_OUTCOMES[count % len(PAST_OUTCOMES)]
                if outcome in ("link", "sms"):
                    cancel(rdv, via=outcome, now=starts - timedelta(days=1, hours=3))
                elif (today - day).days > UNRECORDED_DAYS:
                    record_outcome(rdv, outcome, now=starts + timedelta(hours=1))
                _deliver_past_messages(rdv, now)
                count += 1
        day += timedelta(days=1)
    db.session.commit()
    return count


def _deliver_past_messages(rdv: Rdv, now: datetime) -> None:
    """The rdv's messages that were due before ``now``: sent and delivered then."""
    from scheduler.transitions import transition

    due = db.session.scalars(
        select(Message).where(
            Message.rdv_id == rdv.id, Message.status == "scheduled", Message.send_at <= now
        )
    ).all()
    for message in due:
        at = message.send_at
        transition(message, "queued", at=at)
        transition(
            message,
            "sent",
            at=at + timedelta(seconds=1),
            provider="simulator",
            provider_message_id=f"demo-{message.id}",
        )
        transition(message, "delivered", at=at + timedelta(seconds=4))
    db.session.flush()  # committed with the next rdv
