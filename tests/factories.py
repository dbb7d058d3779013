"""Factories for sample objects."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time

from gateway.extensions import db
from gateway.models import Agent, ApiToken, Lieu, Motif, OpeningHours, Organisation, Usager


@dataclass
class World:
    org: Organisation
    lieu: Lieu
    other_lieu: Lieu
    agent: Agent
    other_agent: Agent
    motif: Motif
    long_motif: Motif
    usager: Usager
    email_usager: Usager
    password: str
    token: str


def make_org(name="Département test", tz="Europe/Paris", **kwargs) -> Organisation:
    org = Organisation(name=name, timezone=tz, phone="+33321000000", sms_sender="Lapin", **kwargs)
    db.session.add(org)
    db.session.flush()
    return org


_HASHES: dict[str, str] = {}


def make_agent(org, email, password="correct horse battery", first="Anne", last="Martin") -> Agent:
    agent = Agent(organisation_id=org.id, email=email, first_name=first, last_name=last)
    # scrypt is slow on purpose: hash each test password once per run.
    if password not in _HASHES:
        agent.set_password(password)
        _HASHES[password] = agent.password_hash
    agent.password_hash = _HASHES[password]
    db.session.add(agent)
    db.session.flush()
    return agent


def make_usager(
    org, first="Léa", last="Dupont", phone="+33612345678", email=None, **kwargs
) -> Usager:
    usager = Usager(
        organisation_id=org.id, first_name=first, last_name=last, phone=phone, email=email, **kwargs
    )
    db.session.add(usager)
    db.session.flush()
    return usager


def add_opening(org, agent, lieu, motifs, weekdays=range(7), ranges=((time(9), time(12)),)) -> None:
    for weekday in weekdays:
        for start, end in ranges:
            db.session.add(
                OpeningHours(
                    organisation_id=org.id,
                    agent_id=agent.id,
                    lieu_id=lieu.id,
                    weekday=weekday,
                    start_time=start,
                    end_time=end,
                    motifs=list(motifs),
                )
            )
    db.session.flush()


def make_world(tz="Europe/Paris", opening=((time(9), time(12)),), weekdays=range(7)) -> World:
    """Opening hours every day of the week by default, so tests do not depend on the weekday."""
    org = make_org(tz=tz)
    lieu = Lieu(
        organisation_id=org.id, name="MDS Calais", address="12 rue X, Calais", phone="+33321000001"
    )
    other_lieu = Lieu(organisation_id=org.id, name="PMI Arras", address="3 place des Héros, Arras")
    db.session.add_all([lieu, other_lieu])
    db.session.flush()
    agent = make_agent(org, "anne@example.org")
    other_agent = make_agent(org, "karim@example.org", first="Karim", last="Benali")
    motif = Motif(
        organisation_id=org.id, name="Consultation PMI", service="PMI", duration_minutes=30
    )
    long_motif = Motif(
        organisation_id=org.id, name="Entretien social", service="Social", duration_minutes=60
    )
    db.session.add_all([motif, long_motif])
    db.session.flush()
    for a in (agent, other_agent):
        for place in (lieu, other_lieu):
            add_opening(org, a, place, [motif, long_motif], weekdays=weekdays, ranges=opening)
    usager = make_usager(org, email="lea@example.org")
    email_usager = make_usager(
        org, first="Julie", last="Lefebvre", phone=None, email="julie@example.org"
    )
    token_row, token = ApiToken.issue(org.id, "tests")
    db.session.add(token_row)
    db.session.commit()
    return World(
        org,
        lieu,
        other_lieu,
        agent,
        other_agent,
        motif,
        long_motif,
        usager,
        email_usager,
        "correct horse battery",
        token,
    )


def book_rdv(world: World, starts_at, usager=None, now=None, motif=None):
    """Book ``motif`` (default ``world.motif``) with ``world.agent`` at ``world.lieu``
    for ``usager`` (default Léa)."""
    from gateway.booking import book

    return book(
        world.org,
        motif_id=(motif or world.motif).id,
        lieu_id=world.lieu.id,
        agent_id=world.agent.id,
        usager_ids=[(usager or world.usager).id],
        starts_at=starts_at,
        now=now,
    )
