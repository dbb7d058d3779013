"""Online booking's rules: which motifs, lieux and slots a usager is offered, the
verification code that holds a slot, and the rdv it becomes.

A usager chooses a slot and gives their details; :func:`request_code` then,
in one transaction under the agent's booking lock (:func:`gateway.booking.lock_free_slot`),
checks the slot is still free, writes a :class:`~gateway.models.VerificationCode`
row that *holds* the slot for :data:`CODE_TTL` (the slot engine and every
booking skip it) and plans a ``verification`` message with a 6-digit code.
:func:`check_code` counts the tries with a conditional UPDATE (never more than
:data:`MAX_TRIES`, even when requests race), and on the right code books the rdv
with :func:`gateway.booking.book` (``booked_via="online"``: the same confirmation
and reminders as an agent's booking), reusing the usager when one with the same
name and mobile or email exists. The code is stored as an HMAC keyed with the
app's secret, and the message's body is blanked once the code is used or can no
longer be (superseded, expired, exhausted).

Limits against bots (docs/online-booking.md): at most :data:`MAX_CODES_PER_HOUR`
codes per mobile or email per hour, a rate limit per client address on the
pages that send and check codes (:mod:`gateway.online.pages`), and at most
``ONLINE_MAX_LIVE_RDVS`` upcoming online rdvs per mobile or email.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import func, or_, select, update

from providers import status as S
from scheduler.transitions import transition

from ..booking import book, lock_free_slot
from ..errors import Conflict, DomainError, ValidationFailed
from ..extensions import db
from ..labels import SKIP_REASON_LABELS
from ..models import (
    CHANNEL_EMAIL,
    CHANNEL_SMS,
    RDV_UNKNOWN,
    Agent,
    Lieu,
    Message,
    Motif,
    OpeningHours,
    Organisation,
    Participation,
    Rdv,
    Usager,
    VerificationCode,
    is_db_id,
)
from ..phones import is_mobile
from ..planning import new_message
from ..rendering import Rendered, finish_sms, hour, long_date, short_date
from ..slots import Slot, free_slots
from ..timeutil import require_aware, utcnow
from ..usagers import clean_usager_fields, create_usager, find_duplicate_usager

CODE_TTL = timedelta(minutes=10)
MAX_TRIES = 5
MAX_CODES_PER_HOUR = 3
CODE_DIGITS = 6

PENDING, USED, EXHAUSTED, SUPERSEDED, EXPIRED = (
    "pending",
    "used",
    "exhausted",
    "superseded",
    "expired",
)

WEEKDAYS = ("lun.", "mar.", "mer.", "jeu.", "ven.", "sam.", "dim.")
_POSTCODE = re.compile(r"\b(\d{5})\b")


# --- what is offered --------------------------------------------------------


def public_organisations() -> list[Organisation]:
    """The organisations taking online bookings, by name."""
    return list(
        db.session.scalars(
            select(Organisation)
            .where(Organisation.online_booking.is_(True), Organisation.slug.is_not(None))
            .order_by(Organisation.name)
        )
    )


def public_organisation(slug: str) -> Organisation | None:
    """The organisation at ``/prendre-rdv/<slug>`` if it takes online bookings."""
    if not slug or len(slug) > 64:
        return None
    return db.session.scalar(
        select(Organisation).where(Organisation.slug == slug, Organisation.online_booking.is_(True))
    )


def bookable_motifs(org: Organisation) -> list[Motif]:
    """The motifs of ``org`` usagers may book online, by name."""
    return list(
        db.session.scalars(
            select(Motif)
            .where(Motif.organisation_id == org.id, Motif.bookable_online.is_(True))
            .order_by(Motif.name)
        )
    )


def bookable_motif(org: Organisation, motif_id) -> Motif | None:
    """The motif if it belongs to ``org`` and is bookable online, else None (a 404)."""
    motif = db.session.get(Motif, motif_id) if is_db_id(motif_id) else None
    if motif is None or motif.organisation_id != org.id or not motif.bookable_online:
        return None
    return motif


@dataclass(frozen=True)
class LieuChoice:
    lieu: Lieu
    hours: list[str]  # "lun. 9h-12h, 14h-17h", one line per group of days
    postcode: str | None
    match: int  # 2 same postcode, 1 same département, 0 other


def postcode_of(address: str | None) -> str | None:
    """The French postcode (5 digits) in an address, the last one if several."""
    found = _POSTCODE.findall(address or "")
    return found[-1] if found else None


def _departement(postcode: str) -> str:
    # Corsica (20xxx) and overseas (97x) aside, the first two digits name it.
    return postcode[:3] if postcode.startswith("97") else postcode[:2]


def lieux_for(org: Organisation, motif: Motif, postcode: str | None = None) -> list[LieuChoice]:
    """The lieux where ``motif`` has opening hours, with those hours; with a postcode,
    the lieu in that postcode first, then its département, then the others (by name)."""
    rows = db.session.execute(
        select(
            OpeningHours.lieu_id,
            OpeningHours.weekday,
            OpeningHours.start_time,
            OpeningHours.end_time,
        ).where(
            OpeningHours.organisation_id == org.id,
            OpeningHours.motifs.any(id=motif.id),
        )
    ).all()
    by_lieu: dict[int, dict[int, set]] = {}
    for lieu_id, weekday, start, end in rows:
        by_lieu.setdefault(lieu_id, {}).setdefault(weekday, set()).add((start, end))
    if not by_lieu:
        return []
    lieux = db.session.scalars(select(Lieu).where(Lieu.id.in_(list(by_lieu)))).all()
    wanted = postcode if postcode and re.fullmatch(r"\d{5}", postcode) else None
    choices = []
    for lieu in lieux:
        code = postcode_of(lieu.address)
        match = 0
        if wanted and code:
            match = 2 if code == wanted else 1 if _departement(code) == _departement(wanted) else 0
        choices.append(LieuChoice(lieu, _hours_lines(by_lieu[lieu.id]), code, match))
    return sorted(choices, key=lambda c: (-c.match, c.lieu.name.lower(), c.lieu.id))


def offering_lieu(org: Organisation, motif: Motif, lieu_id) -> Lieu | None:
    """The lieu if it belongs to ``org`` and has opening hours for ``motif``, else None."""
    lieu = db.session.get(Lieu, lieu_id) if is_db_id(lieu_id) else None
    if lieu is None or lieu.organisation_id != org.id:
        return None
    offered = db.session.scalar(
        select(OpeningHours.id)
        .where(OpeningHours.lieu_id == lieu.id, OpeningHours.motifs.any(id=motif.id))
        .limit(1)
    )
    return lieu if offered is not None else None


def _fmt(t) -> str:
    return f"{t.hour}h{t.minute:02d}" if t.minute else f"{t.hour}h"


def _hours_lines(by_weekday: dict[int, set]) -> list[str]:
    """Opening hours grouped: consecutive days with the same ranges share a line."""
    lines: list[tuple[list[int], str]] = []
    for weekday in range(7):
        if weekday not in by_weekday:
            continue
        ranges = ", ".join(f"{_fmt(s)}-{_fmt(e)}" for s, e in sorted(by_weekday[weekday]))
        if lines and lines[-1][1] == ranges and lines[-1][0][-1] == weekday - 1:
            lines[-1][0].append(weekday)
        else:
            lines.append(([weekday], ranges))
    out = []
    for days, ranges in lines:
        label = (
            WEEKDAYS[days[0]] if len(days) == 1 else f"{WEEKDAYS[days[0]]} au {WEEKDAYS[days[-1]]}"
        )
        out.append(f"{label} {ranges}")
    return out


def booking_window(motif: Motif, now: datetime) -> tuple[datetime, datetime]:
    """[now + minimum notice, now + maximum delay]: where online slots of ``motif`` lie."""
    now = require_aware(now)
    return (
        now + timedelta(minutes=motif.online_min_notice_minutes or 0),
        now + timedelta(days=motif.online_max_delay_days or 0),
    )


def online_slots(
    org: Organisation,
    motif: Motif,
    lieu: Lieu,
    start: datetime,
    end: datetime,
    now: datetime | None = None,
    agent_id: int | None = None,
) -> list[Slot]:
    """Free slots of ``motif`` at ``lieu`` in [start, end) clipped to the online window,
    one per start time (the first agent free then; the usager does not choose the agent).

    The same engine as the agents' (:func:`gateway.slots.free_slots`): holds of
    other online bookings are already left out there.
    """
    now = require_aware(now or utcnow())
    first, last = booking_window(motif, now)
    start, end = max(require_aware(start), first), min(require_aware(end), last)
    if start >= end:
        return []
    slots = free_slots(org, motif, start, end, lieu_id=lieu.id, agent_id=agent_id, now=now)
    seen: set[datetime] = set()
    unique = []
    for slot in slots:
        if slot.starts_at not in seen:
            seen.add(slot.starts_at)
            unique.append(slot)
    return unique


def in_window(motif: Motif, starts_at: datetime, now: datetime) -> bool:
    first, last = booking_window(motif, now)
    return first <= starts_at <= last


# --- codes --------------------------------------------------------------------


class OnlineRefusal(DomainError):
    """A refusal the public pages explain in French; ``code`` says which."""


def _hash(public_id: str, code: str) -> str:
    key = current_app.config["SECRET_KEY"].encode()
    return hmac.new(key, f"{public_id}:{code}".encode(), hashlib.sha256).hexdigest()


def _new_code() -> str:
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def clean_details(data: dict) -> dict:
    """The usager's details from the form: names, mobile and/or email, consents.

    The same rules as an agent's form (:func:`gateway.usagers.clean_usager_fields`),
    and a phone, when given, must be a mobile: the code goes there by SMS.
    """
    clean = clean_usager_fields(data)
    if clean["phone"] and not is_mobile(clean["phone"]):
        raise ValidationFailed(
            "Vos coordonnées n'ont pas pu être enregistrées.",
            fields={"phone": "Indiquez un numéro de mobile : le code vous est envoyé par SMS."},
        )
    return clean


def _contact_filter(phone: str | None, email: str | None):
    contacts = []
    if phone:
        contacts.append(Usager.phone == phone)
    if email:
        contacts.append(func.lower(Usager.email) == email.lower())
    return or_(*contacts)


def live_online_rdvs(org: Organisation, phone: str | None, email: str | None, now: datetime) -> int:
    """Upcoming, not cancelled rdvs booked online by a usager with this mobile or email."""
    if not phone and not email:
        return 0
    return db.session.scalar(
        select(func.count(func.distinct(Rdv.id)))
        .join(Participation, Participation.rdv_id == Rdv.id)
        .join(Usager, Usager.id == Participation.usager_id)
        .where(
            Rdv.organisation_id == org.id,
            Rdv.booked_via == "online",
            Rdv.status == RDV_UNKNOWN,
            Rdv.starts_at > now,
            _contact_filter(phone, email),
        )
    )


def _check_cap(org: Organisation, phone, email, now: datetime) -> None:
    cap = current_app.config.get("ONLINE_MAX_LIVE_RDVS", 3)
    if live_online_rdvs(org, phone, email, now) >= cap:
        raise OnlineRefusal(
            f"Vous avez déjà {cap} rendez-vous à venir pris en ligne : c'est le maximum. "
            "Annulez-en un avec le lien reçu par SMS ou e-mail, ou appelez-nous.",
            code="too_many_rdvs",
            status=409,
        )


def codes_sent_last_hour(recipient: str, now: datetime) -> int:
    return db.session.scalar(
        select(func.count(VerificationCode.id)).where(
            VerificationCode.recipient == recipient,
            VerificationCode.created_at > now - timedelta(hours=1),
        )
    )


def _render(
    row: VerificationCode, code: str, org: Organisation, motif: Motif, lieu: Lieu
) -> Rendered:
    tz = org.tz
    context = {
        "code": code,
        "organisation": org,
        "motif": motif,
        "lieu": lieu,
        "first_name": row.first_name,
        "last_name": row.last_name,
        "date_short": short_date(row.starts_at, tz),
        "date_long": long_date(row.starts_at, tz),
        "time": hour(row.starts_at, tz),
        "minutes": int(CODE_TTL.total_seconds() // 60),
    }
    env = current_app.jinja_env
    if row.channel == CHANNEL_SMS:
        return finish_sms(env.get_template("messages/sms/verification.txt").render(context))
    subject = " ".join(
        env.get_template("messages/email/verification.subject.txt").render(context).split()
    )
    text = env.get_template("messages/email/verification.txt").render(context).strip() + "\n"
    html = env.get_template("messages/email/verification.html").render(context)
    return Rendered(body=text, subject=subject, html=html)


def check_templates(sample_rdv) -> None:
    """Render the code's SMS and email once against sample objects (at boot)."""
    row = VerificationCode(
        first_name="Léa", last_name="Dupont", starts_at=sample_rdv.starts_at, channel=CHANNEL_SMS
    )
    args = (row, "123456", sample_rdv.organisation, sample_rdv.motif, sample_rdv.lieu)
    _render(*args)
    row.channel = CHANNEL_EMAIL
    _render(*args)


def _forget_body(message: Message | None, now: datetime) -> None:
    """The code is of no more use: keep no copy of it (SPEC: the body is not kept)."""
    if message is None:
        return
    message.body = ""
    message.html_body = None
    message.subject = None
    if message.status in S.UNSENT_STATUSES:
        transition(message, S.CANCELLED, at=now, detail=SKIP_REASON_LABELS["code_unusable"])


def _close(row: VerificationCode, status: str, now: datetime) -> None:
    row.status = status
    _forget_body(row.message, now)


def _not_offered() -> OnlineRefusal:
    return OnlineRefusal(
        "Ce créneau n'est pas proposé en ligne. Choisissez-en un autre.",
        code="slot_unavailable",
        status=409,
    )


def request_code(
    org: Organisation,
    motif: Motif,
    lieu: Lieu,
    agent_id,
    starts_at: datetime,
    details: dict,
    now: datetime | None = None,
) -> tuple[VerificationCode, str]:
    """Hold the slot and plan the code's message; the row and the code (to test with).

    Raises :class:`~gateway.errors.ValidationFailed` (details), :class:`OnlineRefusal`
    (limits, window) or :class:`~gateway.errors.Conflict` (``slot_taken``), having
    changed nothing.
    """
    now = require_aware(now or utcnow())
    starts_at = require_aware(starts_at).replace(microsecond=0)
    try:
        clean = clean_details(details)
        agent = db.session.get(Agent, agent_id) if is_db_id(agent_id) else None
        if agent is None or agent.organisation_id != org.id or not in_window(motif, starts_at, now):
            raise _not_offered()
        channel = CHANNEL_SMS if clean["phone"] else CHANNEL_EMAIL
        recipient = clean["phone"] or clean["email"]
        if codes_sent_last_hour(recipient, now) >= MAX_CODES_PER_HOUR:
            target = "numéro" if channel == CHANNEL_SMS else "courriel"
            raise OnlineRefusal(
                f"Trop de codes demandés pour ce {target} "
                f"({MAX_CODES_PER_HOUR} par heure au plus). Réessayez dans une heure.",
                code="too_many_codes",
                status=429,
            )
        _check_cap(org, clean["phone"], clean["email"], now)
        # A new code for the same number replaces the earlier ones and frees their slots
        # (the usager went back and chose again).
        for earlier in db.session.scalars(
            select(VerificationCode).where(
                VerificationCode.recipient == recipient, VerificationCode.status == PENDING
            )
        ):
            _close(earlier, SUPERSEDED, now)
        db.session.flush()
        try:
            ends_at = lock_free_slot(org, motif, agent, lieu, starts_at)
        except ValidationFailed:  # outside the agent's opening hours for this motif
            raise _not_offered() from None
        code = _new_code()
        public_id = secrets.token_urlsafe(16)
        row = VerificationCode(
            public_id=public_id,
            organisation_id=org.id,
            motif_id=motif.id,
            lieu_id=lieu.id,
            agent_id=agent.id,
            starts_at=starts_at,
            ends_at=ends_at,
            first_name=clean["first_name"],
            last_name=clean["last_name"],
            phone=clean["phone"],
            email=clean["email"],
            notify_sms=clean["notify_sms"],
            notify_email=clean["notify_email"],
            waitlist=details.get("waitlist") is True,
            channel=channel,
            recipient=recipient,
            code_hash=_hash(public_id, code),
            attempts=0,
            status=PENDING,
            expires_at=now + CODE_TTL,
            created_at=now,
        )
        db.session.add(row)
        row.message = new_message(
            organisation_id=org.id,
            rdv=None,
            usager_id=None,
            channel=channel,
            kind="verification",
            recipient=recipient,
            send_at=now,
            now=now,
            rendered=_render(row, code, org, motif, lieu),
        )
        db.session.commit()
    except DomainError:
        db.session.rollback()
        raise
    return row, code


def find_request(org: Organisation, public_id: str) -> VerificationCode | None:
    if not public_id or len(public_id) > 32:
        return None
    row = db.session.scalar(select(VerificationCode).where(VerificationCode.public_id == public_id))
    return row if row is not None and row.organisation_id == org.id else None


def is_live(row: VerificationCode, now: datetime) -> bool:
    """Whether the code can still be entered (and the slot is held)."""
    return row.status == PENDING and now < row.expires_at


def expire_if_due(row: VerificationCode, now: datetime) -> None:
    """Close a pending row whose time is up (its slot is already free for others)."""
    if row.status == PENDING and now >= row.expires_at:
        _close(row, EXPIRED, now)
        db.session.commit()


def forget_expired_codes(now: datetime | None = None, batch_size: int = 1000) -> int:
    """Close the pending requests whose time is up and blank their codes' bodies.

    Their slots are free already (a hold only counts until ``expires_at``); this
    keeps no code nobody will use. Run by the hourly retention job.
    """
    now = require_aware(now or utcnow())
    closed = 0
    while True:
        rows = db.session.scalars(
            select(VerificationCode)
            .where(VerificationCode.status == PENDING, VerificationCode.expires_at <= now)
            .order_by(VerificationCode.id)
            .limit(batch_size)
        ).all()
        for row in rows:
            _close(row, EXPIRED, now)
        db.session.commit()
        closed += len(rows)
        if len(rows) < batch_size:
            return closed


def check_code(row: VerificationCode, code: str, now: datetime | None = None) -> Rdv:
    """Check ``code``; on the right one, book the rdv (``booked_via="online"``).

    Raises :class:`OnlineRefusal` with ``code`` ``code_wrong`` (tries left in the
    message), ``code_exhausted``, ``code_expired``, ``code_used`` or
    ``too_many_rdvs``, or :class:`~gateway.errors.Conflict` ``slot_taken``.
    """
    now = require_aware(now or utcnow())
    if row.status == USED and row.rdv_id:
        raise OnlineRefusal("Ce code a déjà servi : votre rendez-vous est pris.", code="code_used")
    expire_if_due(row, now)
    if row.status == EXPIRED:
        raise OnlineRefusal(
            "Ce code a expiré (10 minutes) et le créneau a été libéré. Demandez un nouveau code.",
            code="code_expired",
            status=410,
        )
    if row.status != PENDING:
        raise OnlineRefusal(
            "Ce code n'est plus valable. Recommencez votre demande.",
            code="code_exhausted" if row.status == EXHAUSTED else "code_superseded",
            status=410,
        )
    digits = (code or "").strip().replace(" ", "")
    right = hmac.compare_digest(row.code_hash, _hash(row.public_id, digits))
    # Each try is counted by a conditional UPDATE: racing requests cannot try more than
    # MAX_TRIES times, and the right code claims the row (pending -> used) in the same
    # statement, committed with the rdv.
    values = {"attempts": VerificationCode.attempts + 1}
    if right:
        values["status"] = USED
    counted = db.session.execute(
        update(VerificationCode)
        .where(
            VerificationCode.id == row.id,
            VerificationCode.status == PENDING,
            VerificationCode.attempts < MAX_TRIES,
        )
        .values(**values)
    ).rowcount
    if counted == 1 and right:
        return _book(row, now)
    db.session.commit()
    db.session.refresh(row)
    if row.attempts >= MAX_TRIES and row.status == PENDING:
        _close(row, EXHAUSTED, now)
        db.session.commit()
    if row.status == EXHAUSTED:
        raise OnlineRefusal(
            "Code erroné 5 fois : ce code n'est plus valable et le créneau a été libéré. "
            "Recommencez votre demande.",
            code="code_exhausted",
            status=410,
        )
    if row.status == USED:  # the right code, posted twice at once: booked by the other post
        raise OnlineRefusal("Ce code a déjà servi : votre rendez-vous est pris.", code="code_used")
    if row.status != PENDING:  # closed by a racing request
        raise OnlineRefusal(
            "Ce code n'est plus valable. Recommencez votre demande.",
            code="code_superseded",
            status=410,
        )
    left = MAX_TRIES - row.attempts
    raise OnlineRefusal(
        f"Code erroné. Il vous reste {left} essai{'s' if left > 1 else ''}.",
        fields={"code": "Code erroné."},
        code="code_wrong",
        status=422,
    )


def _book(row: VerificationCode, now: datetime) -> Rdv:
    """Book the held slot; the row, already claimed (``used``) in this transaction,
    is committed with the rdv, or the whole is rolled back."""
    org = row.organisation
    try:
        _check_cap(org, row.phone, row.email, now)
        usager = find_duplicate_usager(org, row.first_name, row.last_name, row.phone, row.email)
        if usager is None:
            fields = ("first_name", "last_name", "phone", "email", "notify_sms", "notify_email")
            usager = create_usager(org, {f: getattr(row, f) for f in fields}, commit=False)
        else:
            # Known person: add a contact they did not have, never overwrite one.
            usager.phone = usager.phone or row.phone
            usager.email = usager.email or row.email
        _forget_body(row.message, now)
        db.session.flush()
    except DomainError:
        db.session.rollback()
        raise
    # book() commits the claim, the usager and the rdv together, or rolls all back.
    try:
        rdv = book(
            org,
            motif_id=row.motif_id,
            lieu_id=row.lieu_id,
            agent_id=row.agent_id,
            usager_ids=[usager.id],
            starts_at=row.starts_at,
            now=now,
            booked_via="online",
            on_created=lambda rdv: setattr(row, "rdv", rdv),
            waitlist=bool(row.waitlist),
        )
    except DomainError:
        # The slot went meanwhile (the agent's day changed): this code is done with.
        _close(row, SUPERSEDED, now)
        db.session.commit()
        raise
    return rdv


def resend(row: VerificationCode, now: datetime | None = None) -> tuple[VerificationCode, str]:
    """A new code for the same slot and details (the earlier one is superseded)."""
    details = {
        "first_name": row.first_name,
        "last_name": row.last_name,
        "phone": row.phone,
        "email": row.email,
        "notify_sms": row.notify_sms,
        "notify_email": row.notify_email,
    }
    return request_code(
        row.organisation, row.motif, row.lieu, row.agent_id, row.starts_at, details, now
    )


def manage_code(rdv: Rdv, usager_id: int | None = None) -> str | None:
    """The rdv's manage link code (``/c/<code>``) for its (first) usager."""
    for participation in rdv.participations:
        if usager_id is None or participation.usager_id == usager_id:
            return participation.cancel_code
    return None


__all__ = [
    "CODE_TTL",
    "MAX_CODES_PER_HOUR",
    "MAX_TRIES",
    "Conflict",
    "LieuChoice",
    "OnlineRefusal",
    "bookable_motif",
    "bookable_motifs",
    "booking_window",
    "check_code",
    "find_request",
    "lieux_for",
    "online_slots",
    "public_organisation",
    "public_organisations",
    "request_code",
    "resend",
]


# --- settings (admins) --------------------------------------------------------

_SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
MAX_NOTICE_MINUTES = 60 * 24 * 30
MAX_DELAY_DAYS = 365


def update_organisation_settings(org: Organisation, *, online_booking: bool, slug: str) -> None:
    """Open or close online booking and set the URL name (``/prendre-rdv/<slug>``)."""
    slug = (slug or "").strip().lower()
    errors = {}
    if slug and (not _SLUG.match(slug) or not 2 <= len(slug) <= 64):
        errors["slug"] = (
            "De 2 à 64 caractères : lettres minuscules sans accent, chiffres et tirets "
            "(ex. pas-de-calais)."
        )
    elif slug and db.session.scalar(
        select(Organisation.id).where(Organisation.slug == slug, Organisation.id != org.id)
    ):
        errors["slug"] = "Cette adresse est déjà prise par une autre organisation."
    if online_booking and not slug:
        errors["slug"] = "Choisissez l'adresse des pages de réservation avant de les ouvrir."
    if errors:
        raise ValidationFailed("Les réglages n'ont pas été enregistrés.", fields=errors)
    org.slug = slug or None
    org.online_booking = bool(online_booking)
    db.session.commit()


def update_motif_settings(
    motif: Motif,
    *,
    bookable_online: bool,
    min_notice_minutes,
    max_delay_days,
    public_description: str | None,
) -> None:
    """A motif's online settings: offered or not, its window, its public description."""
    errors = {}
    if not isinstance(min_notice_minutes, int) or not 0 <= min_notice_minutes <= MAX_NOTICE_MINUTES:
        errors["min_notice_minutes"] = "Un délai de prévenance entre 0 et 30 jours (en minutes)."
    if not isinstance(max_delay_days, int) or not 1 <= max_delay_days <= MAX_DELAY_DAYS:
        errors["max_delay_days"] = f"Un délai maximum entre 1 et {MAX_DELAY_DAYS} jours."
    elif not errors and min_notice_minutes >= max_delay_days * 24 * 60:
        errors["max_delay_days"] = "Le délai maximum doit dépasser le délai de prévenance."
    description = " ".join((public_description or "").split()) or None
    if description and len(description) > 500:
        errors["public_description"] = "500 caractères au plus."
    if errors:
        raise ValidationFailed("Les réglages du motif n'ont pas été enregistrés.", fields=errors)
    motif.bookable_online = bool(bookable_online)
    motif.online_min_notice_minutes = min_notice_minutes
    motif.online_max_delay_days = max_delay_days
    motif.public_description = description
    db.session.commit()
