"""Booking, moving, cancelling and recording the outcome of rdvs.

Each function is one transaction: it validates, changes the rdv, plans the
messages that announce the change (:mod:`gateway.planning`) and commits, or
raises a :class:`~gateway.errors.DomainError` having changed nothing.

No two rdvs of one agent overlap, even when two bookings race: every booking
or move first bumps the agent's ``booking_version`` with an UPDATE, which
takes the agent's row lock on PostgreSQL and the database write lock on
SQLite, so the overlap check that follows sees every committed rdv and no
other booking of that agent can commit in between. On PostgreSQL an exclusion
constraint enforces the same rule in the database as a second line.

A slot held by an online booking waiting for its code (a pending
:class:`~gateway.models.VerificationCode`, :mod:`gateway.online`) is taken
for everyone else until the hold expires: the check runs under the same lock.

Changes to one rdv (move, cancel, outcome) are serialised on the rdv's row and
decided after the lock, from the row as it is then (:func:`_lock_rdv`): a move
racing a cancel either moves first and is then cancelled (the usager gets the
``cancelled`` notice, naming the new date), or finds the rdv cancelled and is
refused (409). Locks are always taken rdv first, agent second: no deadlock.
An rdv that took place (``seen``, ``noshow``) or was cancelled (``excused``,
``revoked``) cannot be moved (409 ``rdv_not_movable``), and a move to a new
time must land on the slot grid (422 ``off_grid``, :mod:`gateway.slots`).
Booking does not check the grid yet: the agent form offers grid slots only,
and API clients book what ``GET /slots`` gave them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import exists, select, update
from sqlalchemy.exc import IntegrityError

from . import events
from . import waitlist as waiting_list
from .errors import Conflict, DomainError, NotFound, ValidationFailed
from .extensions import db
from .models import (
    BOOKED_VIA,
    RDV_CANCELLED_STATUSES,
    RDV_EXCUSED,
    RDV_NOSHOW,
    RDV_REVOKED,
    RDV_SEEN,
    RDV_UNKNOWN,
    Agent,
    Lieu,
    Motif,
    Organisation,
    Participation,
    Rdv,
    Usager,
    VerificationCode,
    is_db_id,
)
from .planning import plan_booking, plan_cancel, plan_move
from .slots import grid_starts_near, is_within_opening_hours
from .timeutil import require_aware, utcnow

USAGER_CHANNELS = ("link", "sms")


def _owned(model, obj_id, organisation: Organisation, field: str, label: str):
    obj = db.session.get(model, obj_id) if is_db_id(obj_id) else None
    if obj is None or obj.organisation_id != organisation.id:
        raise ValidationFailed(f"{label} introuvable.", fields={field: f"{label} introuvable."})
    return obj


def _lock_agent(agent: Agent) -> None:
    db.session.execute(
        update(Agent).where(Agent.id == agent.id).values(booking_version=Agent.booking_version + 1)
    )


def _lock_rdv(rdv: Rdv) -> Rdv:
    """Take the rdv's row lock, then re-read the row: decide from what is true now.

    PostgreSQL: ``SELECT ... FOR NO KEY UPDATE`` (other changes of this rdv wait;
    rows that merely reference it, such as new messages, do not). SQLite: a no-op
    UPDATE of the row, which takes the database write lock, as :func:`_lock_agent`.
    """
    query = select(Rdv).where(Rdv.id == rdv.id)
    if db.session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(key_share=True)
    else:
        db.session.execute(
            update(Rdv)
            .where(Rdv.id == rdv.id)
            .values(plan_generation=Rdv.plan_generation, updated_at=Rdv.updated_at)
            .execution_options(synchronize_session=False)
        )
    return db.session.scalars(query.execution_options(populate_existing=True)).one()


def _refuse_unless_movable(rdv: Rdv) -> None:
    if rdv.status in (RDV_SEEN, RDV_NOSHOW):
        what = "a déjà eu lieu"
    elif rdv.is_cancelled:
        what = "est annulé"
    else:
        return
    raise Conflict(
        f"Ce rendez-vous {what} : il ne peut plus être déplacé. "
        "Prenez un nouveau rendez-vous si besoin.",
        code="rdv_not_movable",
    )


def _overlapping(agent_id: int, starts_at: datetime, ends_at: datetime, exclude_id: int | None):
    query = select(Rdv.id).where(
        Rdv.agent_id == agent_id,
        Rdv.status.not_in(RDV_CANCELLED_STATUSES),
        Rdv.starts_at < ends_at,
        Rdv.ends_at > starts_at,
    )
    if exclude_id is not None:
        query = query.where(Rdv.id != exclude_id)
    return db.session.scalar(select(exists(query)))


def _held(agent_id: int, starts_at: datetime, ends_at: datetime) -> bool:
    """Whether a pending online booking holds part of [starts_at, ends_at) of this agent."""
    query = select(VerificationCode.id).where(
        VerificationCode.agent_id == agent_id,
        VerificationCode.status == "pending",
        VerificationCode.expires_at > utcnow(),
        VerificationCode.starts_at < ends_at,
        VerificationCode.ends_at > starts_at,
    )
    return db.session.scalar(select(exists(query)))


def lock_free_slot(org, motif, agent, lieu, starts_at: datetime) -> datetime:
    """Lock the agent's bookings and check the slot is free (rdvs and holds) and on the
    slot grid; its end.

    For callers that take the slot in their own way (an online hold): they must
    write their row and commit in the same transaction.
    """
    return _check_slot(org, motif, agent, lieu, starts_at, grid=True)


def _check_grid(org, motif, agent, lieu, starts_at) -> None:
    near = grid_starts_near(org, motif, agent.id, lieu.id, starts_at)
    if near == [starts_at]:
        return
    times = " ou ".join(t.astimezone(org.tz).strftime("%H:%M") for t in near)
    hint = f"Créneaux les plus proches : {times}." if times else "Choisissez un créneau libre."
    raise ValidationFailed(
        f"Cet horaire ne correspond à aucun créneau : les créneaux de ce motif durent "
        f"{motif.duration_minutes} min à partir du début de chaque plage. {hint}",
        fields={"starts_at": f"Hors de la grille des créneaux. {hint}"},
        code="off_grid",
    )


def _check_slot(org, motif, agent, lieu, starts_at, exclude_id=None, grid=False) -> datetime:
    ends_at = starts_at + timedelta(minutes=motif.duration_minutes)
    if not is_within_opening_hours(org, motif, agent.id, lieu.id, starts_at):
        raise ValidationFailed(
            "Ce créneau est en dehors des plages d'ouverture de l'agent pour ce motif et ce lieu.",
            fields={"starts_at": "Créneau hors des plages d'ouverture."},
        )
    if grid:
        _check_grid(org, motif, agent, lieu, starts_at)
    _lock_agent(agent)
    if _overlapping(agent.id, starts_at, ends_at, exclude_id):
        raise Conflict(
            "Ce créneau n'est plus libre : l'agent a déjà un rendez-vous à cette heure.",
            fields={"starts_at": "Créneau déjà pris."},
            code="slot_taken",
        )
    if _held(agent.id, starts_at, ends_at):
        raise Conflict(
            "Ce créneau est réservé en ce moment par un usager qui confirme sa demande en ligne.",
            fields={"starts_at": "Créneau réservé."},
            code="slot_taken",
        )
    return ends_at


def _commit_or_conflict() -> None:
    try:
        db.session.commit()
    except IntegrityError:
        # The PostgreSQL exclusion constraint caught an overlap the lock did not.
        db.session.rollback()
        raise Conflict(
            "Ce créneau n'est plus libre.",
            fields={"starts_at": "Créneau déjà pris."},
            code="slot_taken",
        ) from None


def book(
    organisation: Organisation,
    *,
    motif_id,
    lieu_id,
    agent_id,
    usager_ids,
    starts_at: datetime,
    now: datetime | None = None,
    booked_via: str = "agent",
    on_created: Callable[[Rdv], None] | None = None,
    waitlist: bool = False,
) -> Rdv:
    """Book an rdv in a free slot and plan its confirmation and reminders.

    ``booked_via`` records who booked: ``agent`` (the form), ``api`` or ``online``.
    ``on_created(rdv)``, if given, runs before the commit, so what it records
    about the new rdv is committed with it, or not at all.
    ``waitlist``: the usager asks to be offered an earlier slot (:mod:`gateway.waitlist`).
    """
    now = require_aware(now or utcnow())
    if booked_via not in BOOKED_VIA:
        raise ValueError(f"booked_via must be one of {BOOKED_VIA}")
    try:
        motif = _owned(Motif, motif_id, organisation, "motif_id", "Motif")
        lieu = _owned(Lieu, lieu_id, organisation, "lieu_id", "Lieu")
        agent = _owned(Agent, agent_id, organisation, "agent_id", "Agent")
        if not usager_ids or not isinstance(usager_ids, list) or len(usager_ids) > 20:
            raise ValidationFailed(
                "Choisissez au moins un usager.", fields={"usager_id": "Usager obligatoire."}
            )
        usagers = [
            _owned(Usager, uid, organisation, "usager_id", "Usager")
            for uid in dict.fromkeys(usager_ids)
        ]
        starts_at = require_aware(starts_at).replace(microsecond=0)
        if starts_at <= now:
            raise ValidationFailed(
                "Ce créneau est déjà passé.", fields={"starts_at": "Créneau passé."}
            )
        ends_at = _check_slot(organisation, motif, agent, lieu, starts_at)
        rdv = Rdv(
            organisation=organisation,
            motif=motif,
            lieu=lieu,
            agent=agent,
            starts_at=starts_at,
            ends_at=ends_at,
            duration_minutes=motif.duration_minutes,
            status=RDV_UNKNOWN,
            waitlist=bool(waitlist),
            booked_via=booked_via,
            participations=[Participation(usager=u) for u in usagers],
            messages=[],  # a new rdv has none: its JSON (webhook event) needs no SELECT
        )
        db.session.add(rdv)
        db.session.flush()
        plan_booking(rdv, now)
        events.rdv_changed(rdv, events.RDV_CREATED, now)
        if on_created is not None:
            on_created(rdv)
    except DomainError:
        db.session.rollback()
        raise
    _commit_or_conflict()
    return rdv


def move(
    rdv: Rdv, *, starts_at: datetime | None = None, lieu_id=None, now: datetime | None = None
) -> Rdv:
    """Change the start (and/or the lieu): pending messages are cancelled, a ``moved`` goes out."""
    now = require_aware(now or utcnow())
    try:
        _lock_rdv(rdv)
        _refuse_unless_movable(rdv)
        org = rdv.organisation
        lieu = _owned(Lieu, lieu_id, org, "lieu_id", "Lieu") if lieu_id is not None else rdv.lieu
        new_start = require_aware(starts_at).replace(microsecond=0) if starts_at else rdv.starts_at
        if new_start == rdv.starts_at and lieu.id == rdv.lieu_id:
            raise ValidationFailed(
                "Rien à changer : même date et même lieu.",
                fields={"starts_at": "Même date et même lieu."},
            )
        if new_start <= now:
            raise ValidationFailed(
                "Ce créneau est déjà passé.", fields={"starts_at": "Créneau passé."}
            )
        previous, previous_lieu_id = rdv.starts_at, rdv.lieu_id
        # A new time must start a slot of the grid; a change of lieu alone keeps the
        # time the rdv was booked at.
        ends_at = _check_slot(
            org,
            rdv.motif,
            rdv.agent,
            lieu,
            new_start,
            exclude_id=rdv.id,
            grid=new_start != previous,
        )
        rdv.starts_at, rdv.ends_at, rdv.lieu = new_start, ends_at, lieu
        rdv.duration_minutes = rdv.motif.duration_minutes
        db.session.flush()
        plan_move(rdv, now, previous)
        events.rdv_changed(rdv, events.RDV_MOVED, now)
        waiting_list.rdv_moved(rdv, previous, previous_lieu_id, now)
    except DomainError:
        db.session.rollback()
        raise
    _commit_or_conflict()
    return rdv


def cancel(
    rdv: Rdv,
    *,
    via: str,
    agent: Agent | None = None,
    now: datetime | None = None,
    reason: str | None = None,
) -> bool:
    """Cancel an rdv; returns False (changing nothing) when it was already cancelled.

    ``reason``: the agent's optional note, kept on the rdv for its timeline (not sent).

    ``via`` is ``agent``, ``api``, ``link`` or ``sms``. A usager (link, SMS)
    cannot cancel once the rdv has started or inside the organisation's
    minimum notice; the service (agent, API) can.
    """
    now = require_aware(now or utcnow())
    _lock_rdv(rdv)  # the caller's transaction ends it (an inbound SMS commits its row with it)
    if rdv.is_cancelled:
        return False
    by_usager = via in USAGER_CHANNELS
    if by_usager:
        notice = timedelta(minutes=rdv.organisation.min_cancel_notice_minutes or 0)
        if now >= rdv.starts_at - notice:
            raise DomainError(
                "Ce rendez-vous ne peut plus être annulé en ligne.", code="too_late", status=409
            )
    elif rdv.status in (RDV_SEEN, RDV_NOSHOW):
        raise Conflict("Ce rendez-vous a déjà eu lieu.", code="rdv_past")
    rdv.status = RDV_EXCUSED if by_usager else RDV_REVOKED
    rdv.cancelled_at = now
    rdv.cancelled_via = via
    rdv.cancelled_by_agent = agent if via == "agent" else None
    rdv.cancel_reason = (reason or "").strip() or None
    db.session.flush()
    plan_cancel(rdv, now, by_usager=by_usager)
    events.rdv_changed(rdv, events.RDV_CANCELLED, now)
    waiting_list.rdv_cancelled(rdv, now)
    db.session.commit()
    return True


def record_outcome(rdv: Rdv, status: str, *, now: datetime | None = None) -> Rdv:
    """Record that the usager came (``seen``) or did not (``noshow``), once the rdv has started."""
    now = require_aware(now or utcnow())
    if status not in (RDV_SEEN, RDV_NOSHOW, RDV_UNKNOWN):
        raise ValidationFailed("Statut invalide.", fields={"status": "Attendu : seen ou noshow."})
    _lock_rdv(rdv)
    if rdv.is_cancelled:
        raise Conflict("Ce rendez-vous est annulé.", code="rdv_cancelled")
    if rdv.starts_at > now:
        raise Conflict("Le rendez-vous n'a pas encore commencé.", code="rdv_not_started")
    rdv.status = status
    rdv.status_recorded_at = now
    events.rdv_changed(rdv, events.RDV_STATUS_CHANGED, now)
    db.session.commit()
    return rdv


def get_rdv(organisation: Organisation, rdv_id) -> Rdv:
    rdv = db.session.get(Rdv, rdv_id) if is_db_id(rdv_id) else None
    if rdv is None or rdv.organisation_id != organisation.id:
        raise NotFound("Rendez-vous introuvable.")
    return rdv


__all__ = [
    "RDV_REVOKED",
    "book",
    "cancel",
    "get_rdv",
    "lock_free_slot",
    "move",
    "record_outcome",
]
