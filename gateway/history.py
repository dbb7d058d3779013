"""A usager's history for agents (``/usagers/<id>``): every rdv with its outcome,
the messages sent, the confirmations, the waiting-list offers, the no-show count.

Read-only and scoped to one organisation: a usager of another organisation is
"not found", as an unknown one is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from .errors import NotFound
from .extensions import db
from .models import (
    RDV_NOSHOW,
    InboundSms,
    Message,
    Organisation,
    Participation,
    Rdv,
    Usager,
    WaitlistOffer,
    is_db_id,
)

MAX_MESSAGES = 200


@dataclass
class History:
    usager: Usager
    upcoming: list[Rdv]  # soonest first
    past: list[Rdv]  # latest first
    messages: list[Message]  # latest first
    confirmations: list[InboundSms]  # the usager's OUI, latest first
    offers: list[WaitlistOffer]
    noshows: int


def outcome(rdv: Rdv, now: datetime) -> str:
    """The rdv's outcome code: ``seen``, ``noshow``, ``excused``, ``revoked``,
    ``upcoming`` or ``unrecorded`` (started, nothing recorded)."""
    if rdv.status != "unknown":
        return rdv.status
    return "upcoming" if rdv.starts_at > now else "unrecorded"


def noshow_counts(usager_ids: list[int]) -> dict[int, int]:
    """Recorded no-shows per usager (absent ids have none)."""
    if not usager_ids:
        return {}
    rows = db.session.execute(
        select(Participation.usager_id, func.count())
        .join(Rdv, Rdv.id == Participation.rdv_id)
        .where(Participation.usager_id.in_(usager_ids), Rdv.status == RDV_NOSHOW)
        .group_by(Participation.usager_id)
    ).all()
    return dict(rows)


def usager_history(organisation: Organisation, usager_id, now: datetime) -> History:
    """Everything the organisation knows of one of its usagers; NotFound otherwise."""
    usager = db.session.get(Usager, usager_id) if is_db_id(usager_id) else None
    if usager is None or usager.organisation_id != organisation.id:
        raise NotFound("Usager introuvable.")
    rdvs = db.session.scalars(
        select(Rdv)
        .join(Participation, Participation.rdv_id == Rdv.id)
        .where(Participation.usager_id == usager.id, Rdv.organisation_id == organisation.id)
        .options(
            selectinload(Rdv.motif),
            selectinload(Rdv.lieu),
            selectinload(Rdv.agent),
            selectinload(Rdv.cancelled_by_agent),
        )
        .order_by(Rdv.starts_at)
    ).all()
    messages = db.session.scalars(
        select(Message)
        .where(Message.usager_id == usager.id, Message.organisation_id == organisation.id)
        .order_by(Message.send_at.desc(), Message.id.desc())
        .limit(MAX_MESSAGES)
    ).all()
    confirmations = db.session.scalars(
        select(InboundSms)
        .where(InboundSms.usager_id == usager.id, InboundSms.action == "confirmed")
        .order_by(InboundSms.received_at.desc())
    ).all()
    offers = db.session.scalars(
        select(WaitlistOffer)
        .where(WaitlistOffer.usager_id == usager.id)
        .order_by(WaitlistOffer.created_at.desc())
    ).all()
    return History(
        usager=usager,
        upcoming=[r for r in rdvs if r.starts_at > now],
        past=[r for r in reversed(rdvs) if r.starts_at <= now],
        messages=list(messages),
        confirmations=list(confirmations),
        offers=list(offers),
        noshows=sum(1 for r in rdvs if r.status == RDV_NOSHOW),
    )
