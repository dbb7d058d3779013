"""Inbound SMS: stored once, matched to a usager and an rdv, acted on once.

An SMS is first stored (:func:`receive`, in the webhook's request), then
acted on by a queued job (:func:`process_inbound_job`). The unique
(provider, provider message id) constraint makes a redelivered SMS a no-op,
and the job claims the row (``action`` goes from NULL to a value in one
UPDATE) so that it is acted on once even if the job runs twice.

Matching (SPEC section 2, SMS replies): the usager by phone number (E.164),
the rdv of the most recent SMS we sent to that number within 7 days, else
the usager's next upcoming rdv. Keywords are compared after trimming and
folding accents, case and punctuation (:func:`fold`); a longer message counts
as a keyword only when it is a clear request that starts with it, without
negation or question (:func:`keyword`).

Every answer is a new :class:`~gateway.models.Message` (kind ``reply``,
channel ``sms``, due now: quiet hours do not apply to an answer) made by
:func:`create_reply`, which the sending pipeline sends like any other, so it
is recorded on the timeline. The STOP confirmation is created after the
opt-out is set: the pipeline sends ``reply`` messages even to opted-out
usagers (it is the one answer they asked for).
"""

from __future__ import annotations

import logging
import re
import unicodedata
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from gateway import events, metrics
from gateway.booking import cancel
from gateway.errors import DomainError
from gateway.extensions import db
from gateway.labels import SKIP_REASON_LABELS
from gateway.models import (
    CHANNEL_SMS,
    RDV_UNKNOWN,
    InboundSms,
    Message,
    Organisation,
    Participation,
    Rdv,
    Usager,
)
from gateway.phones import InvalidPhone, display_phone, mask_phone, normalize_phone
from gateway.planning import agent_alert, new_message
from gateway.rendering import hour, render_reply, short_date
from gateway.timeutil import utcnow
from providers import base
from providers import status as S
from scheduler import queue
from scheduler.transitions import transition

from .receipts import opt_out_number

log = logging.getLogger(__name__)

JOB = "webhooks.inbound.process_inbound_job"
MATCH_WINDOW = timedelta(days=7)

CANCEL, CONFIRM, STOP, START = "cancel", "confirm", "stop", "start"
KEYWORDS = {
    "ANNULER": CANCEL,
    "ANNULE": CANCEL,
    "ANNULATION": CANCEL,
    "ANNUL": CANCEL,
    "OUI": CONFIRM,
    "OK": CONFIRM,
    "CONFIRMER": CONFIRM,
    "STOP": STOP,
    "STOP SMS": STOP,
    "ARRET": STOP,
    "START": START,
}

# InboundSms.action values (their French labels: gateway.labels.INBOUND_ACTION_LABELS).
ACTION_PROCESSING = "processing"  # claimed by a job, being acted on
ACTION_CANCELLED = "cancelled"
ACTION_ALREADY_CANCELLED = "already_cancelled"
ACTION_TOO_LATE = "too_late"
ACTION_CONFIRMED = "confirmed"
ACTION_OPTED_OUT = "opted_out"
ACTION_OPTED_IN = "opted_in"
ACTION_FORWARDED = "forwarded"
ACTION_NO_RDV = "no_rdv"
ACTION_UNKNOWN_NUMBER = "unknown_number"
ACTION_PART = "part"  # a part of a long SMS, joined into its first part


class InvalidInbound(ValueError):
    """An inbound SMS webhook without the fields we need (sender, message id)."""


def fold(text: str) -> str:
    """``" annulé ! "`` -> ``"ANNULE"``: no accents, upper case, words split on anything else."""
    decomposed = unicodedata.normalize("NFKD", text or "")
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(re.sub(r"[^A-Za-z0-9]+", " ", plain).upper().split())


# Words that may begin a keyword sentence: "ANNULEZ svp", "je confirme", "arrêtez".
LEADS = {
    **{word: kind for word, kind in KEYWORDS.items() if " " not in word},
    "ANNULEZ": CANCEL,
    "CONFIRME": CONFIRM,
    "ARRETER": STOP,
    "ARRETEZ": STOP,
}
# What may come before the keyword (folded words, longest first): greetings and polite
# openers. "Je dois annuler" is a request; "dois-je annuler" is not (DOIS starts it).
OPENERS = sorted(
    (
        tuple(phrase.split())
        for phrase in (
            "BONJOUR",
            "BONSOIR",
            "SALUT",
            "MADAME",
            "MONSIEUR",
            "SVP",
            "STP",
            "S IL VOUS PLAIT",
            "MERCI D",
            "MERCI DE",
            "MERCI DE BIEN VOULOIR",
            "VEUILLEZ",
            "JE",
            "J",
            "JE SOUHAITE",
            "JE SOUHAITERAIS",
            "JE VOUDRAIS",
            "JE VEUX",
            "JE DESIRE",
            "JE DESIRERAIS",
            "J AIMERAIS",
            "JE DOIS",
            "JE PREFERE",
            "JE PREFERERAIS",
        )
    ),
    key=len,
    reverse=True,
)
# A negation in the keyword's clause ("j'annule pas", "annuler je ne sais pas").
NEGATIONS = frozenset({"NE", "N", "PAS", "JAMAIS", "NI"})
# Anywhere after the keyword, a doubt, a condition, a change of mind or a wish to move:
# the agent reads it ("annuler ou décaler", "oui mais en retard", "annuler, non finalement").
DOUBTS = frozenset(
    {
        "NON",
        "FINALEMENT",
        "MAIS",
        "SI",
        "PEUT",
        "POSSIBLE",
        "OU",
        "COMMENT",
        "POURQUOI",
        "QUAND",
        "FAUT",
        "DEPLACER",
        "DECALER",
        "REPORTER",
        "CHANGER",
        "MODIFIER",
    }
)
# Clause boundaries for the negation rule (the apostrophe of "n'annule" is not one).
_CLAUSES = re.compile(r"[,.;:!\n]+")


def keyword(text: str) -> str | None:
    """The keyword an SMS body is (CANCEL, CONFIRM, STOP, START), or None for free text.

    A keyword alone (after folding, :data:`KEYWORDS`) always counts. A longer
    message counts only when it is a clear request (issue 14), else it is free
    text, forwarded to the agent who reads it:

    - the keyword starts it, after greetings and polite openers
      (:data:`OPENERS`: "Bonjour, je souhaite annuler", "Merci d'annuler",
      "Stop svp", "Oui merci");
    - it asks nothing: no ``?`` anywhere ("annuler ?", "faut-il annuler" does
      not start with the keyword anyway);
    - it names no other keyword's kind ("oui, annuler");
    - for ANNULER and OUI, whose mistake costs an rdv: no negation in the
      keyword's clause ("j'annule pas"; "Annuler, je ne pourrai pas venir" is
      clear) and no doubt, condition or wish to move after it (:data:`DOUBTS`).
      STOP and START are honoured whatever follows ("Stop, je ne veux plus
      de SMS").
    """
    if "?" in text or "\uff1f" in text:
        return None
    folded = fold(text)
    if folded in KEYWORDS:
        return KEYWORDS[folded]
    words: list[tuple[str, int]] = [
        (word, clause)
        for clause, part in enumerate(_CLAUSES.split(text or ""))
        for word in fold(part).split()
    ]
    start = _after_openers([w for w, _ in words])
    if start >= len(words) or words[start][0] not in LEADS:
        return None
    kind = LEADS[words[start][0]]
    rest = words[start + 1 :]
    if any(LEADS.get(word, kind) != kind for word, _ in rest):
        return None
    if kind in (CANCEL, CONFIRM):
        clause = words[start][1]
        if any(word in NEGATIONS for word, c in words if c == clause):
            return None
        if any(word in DOUBTS for word, _ in rest):
            return None
    return kind


def _after_openers(words: list[str]) -> int:
    """The index of the first word after the greetings and polite openers."""
    i = 0
    while True:
        for opener in OPENERS:
            if tuple(words[i : i + len(opener)]) == opener:
                i += len(opener)
                break
        else:
            return i


def _e164(number: str) -> str:
    try:
        return normalize_phone(number)
    except InvalidPhone:
        return (number or "").strip()


def receive(sms: base.InboundSms) -> tuple[InboundSms, bool]:
    """Store an inbound SMS once and queue its handling; returns (row, newly stored).

    Raises :class:`InvalidInbound` when the sender or the provider's id is missing.
    """
    if not sms.provider_message_id or not sms.from_number:
        raise InvalidInbound("inbound SMS without message id or sender")
    provider_message_id = sms.provider_message_id[:200]  # the column; a real id is far shorter
    existing = _stored(sms.provider, provider_message_id)
    if existing is not None:
        if existing.action is None:
            # Stored but never acted on (the database or the worker went away in
            # between): the provider's retry is the occasion. Acting is claimed, so
            # a job still queued for it does nothing twice.
            _queue(existing)
        return existing, False
    row = InboundSms(
        provider=sms.provider,
        provider_message_id=provider_message_id,
        from_number=_e164(sms.from_number)[:32],
        to_number=(sms.to_number or "")[:32] or None,
        body=sms.body or "",
        raw=dict(sms.raw),
        concat_ref=sms.concat_ref[:64] if sms.concat_ref else None,
        concat_part=sms.part,
        concat_total=sms.parts,
    )
    db.session.add(row)
    try:
        db.session.commit()
    except IntegrityError:
        # The same SMS delivered twice at once: the other request stored it.
        db.session.rollback()
        return _stored(sms.provider, provider_message_id), False
    metrics.inbound_sms(row.provider)
    _queue(row)
    return row, True


def _queue(row: InboundSms) -> None:
    try:
        queue.enqueue(JOB, row.id)
    except Exception:  # Redis unreachable: the SMS is stored, act on it now
        log.exception("could not queue inbound SMS %s: handling it inline", row.id)
        process_inbound(row.id)


def _stored(provider: str, provider_message_id: str) -> InboundSms | None:
    return db.session.scalar(
        select(InboundSms).where(
            InboundSms.provider == provider, InboundSms.provider_message_id == provider_message_id
        )
    )


def process_inbound_job(inbound_id: int) -> None:
    """Job: act on a stored inbound SMS (once)."""
    process_inbound(inbound_id)


def process_inbound(inbound_id: int, now: datetime | None = None) -> str | None:
    """Act on an inbound SMS unless already done; returns the action taken, if any."""
    now = now or utcnow()
    row = db.session.get(InboundSms, inbound_id)
    if row is None or row.action is not None:
        return None
    if row.concat_ref and (row.concat_total or 1) > 1:
        row = _join_parts(row)
        if row is None:
            db.session.rollback()
            return None
    elif not _claim([row.id], ACTION_PROCESSING):
        db.session.rollback()
        return None
    action = _act(row, now)
    events.inbound_sms_received(row, now)
    db.session.commit()
    log.info("inbound SMS %s from %s: %s", row.id, mask_phone(row.from_number), action)
    return action


def _claim(ids: list[int], action: str) -> bool:
    """Mark rows as being handled, only if nobody did: the act-once guarantee."""
    result = db.session.execute(
        update(InboundSms)
        .where(InboundSms.id.in_(ids), InboundSms.action.is_(None))
        .values(action=action)
        .execution_options(synchronize_session="fetch")
    )
    return result.rowcount == len(ids)


def _join_parts(row: InboundSms) -> InboundSms | None:
    """When every part of a long SMS is stored: claim them and return the first.

    The first part's body then holds the whole text, the parts in order.
    """
    pending = db.session.scalars(
        select(InboundSms)
        .where(
            InboundSms.provider == row.provider,
            InboundSms.from_number == row.from_number,
            InboundSms.concat_ref == row.concat_ref,
            InboundSms.action.is_(None),
        )
        .order_by(InboundSms.id)
    ).all()
    by_part: dict[int, InboundSms] = {}
    for part in pending:
        by_part.setdefault(part.concat_part or 0, part)
    if len(by_part) < (row.concat_total or 1):
        return None  # wait for the other parts
    parts = [by_part[number] for number in sorted(by_part)][: row.concat_total]
    if not _claim([p.id for p in parts], ACTION_PART):
        return None
    first = parts[0]
    first.body = "".join(p.body for p in parts)
    return first


def match(phone: str, now: datetime) -> tuple[Usager | None, Rdv | None]:
    """The usager and the rdv an SMS from ``phone`` is about (see the module doc)."""
    usagers = db.session.scalars(
        select(Usager).where(Usager.phone == phone).order_by(Usager.id)
    ).all()
    if not usagers:
        return None, None
    recent = db.session.scalar(
        select(Message)
        .where(
            Message.channel == CHANNEL_SMS,
            Message.recipient == phone,
            Message.rdv_id.is_not(None),
            Message.sent_at.is_not(None),
            Message.sent_at >= now - MATCH_WINDOW,
        )
        .order_by(Message.sent_at.desc(), Message.id.desc())
        .limit(1)
    )
    if recent is not None:
        usager = recent.usager if recent.usager in usagers else usagers[0]
        return usager, recent.rdv
    upcoming = db.session.execute(
        select(Rdv, Participation.usager_id)
        .join(Participation, Participation.rdv_id == Rdv.id)
        .where(
            Participation.usager_id.in_([u.id for u in usagers]),
            Rdv.status == RDV_UNKNOWN,
            Rdv.starts_at > now,
        )
        .order_by(Rdv.starts_at, Rdv.id)
        .limit(1)
    ).first()
    if upcoming is None:
        return usagers[0], None
    rdv, usager_id = upcoming
    return next(u for u in usagers if u.id == usager_id), rdv


def _act(row: InboundSms, now: datetime) -> str:
    phone = row.from_number
    usager, rdv = match(phone, now)
    if usager is None:
        row.action = ACTION_UNKNOWN_NUMBER
        return row.action
    row.usager_id = usager.id
    row.organisation_id = usager.organisation_id
    row.rdv_id = rdv.id if rdv else None
    kind = keyword(row.body)
    if kind == STOP:
        opt_out_number(phone)
        row.action, template = ACTION_OPTED_OUT, "stop"
    elif kind == START:
        db.session.execute(
            update(Usager)
            .where(Usager.phone == phone)
            .values(sms_opted_out=False)
            .execution_options(synchronize_session="fetch")
        )
        row.action, template = ACTION_OPTED_IN, "start"
    elif rdv is None:
        row.action, template = ACTION_NO_RDV, "unknown_rdv"
    elif kind == CANCEL:
        row.action, template = _cancel(rdv, phone, now)
    elif kind == CONFIRM:
        if rdv.is_cancelled:
            row.action, template = ACTION_NO_RDV, "unknown_rdv"
        else:
            rdv.confirmed_at = rdv.confirmed_at or now
            row.action, template = ACTION_CONFIRMED, "confirmed"
    else:
        agent_alert(rdv, usager, now, reply_text=row.body)
        row.action, template = ACTION_FORWARDED, "free_text"
    row.reply_message = create_reply(usager, phone, template, rdv, now)
    return row.action


def _cancel(rdv: Rdv, phone: str, now: datetime) -> tuple[str, str]:
    try:
        cancelled = cancel(rdv, via="sms", now=now)
    except DomainError:
        return ACTION_TOO_LATE, "cannot_cancel"
    if not cancelled:
        return ACTION_ALREADY_CANCELLED, "cancelled"
    # The reply confirms the cancellation at once (quiet hours do not hold
    # answers back); the `cancelled` SMS planned for this number would say
    # the same thing a second time, possibly the next morning.
    duplicates = db.session.scalars(
        select(Message).where(
            Message.rdv_id == rdv.id,
            Message.kind == "cancelled",
            Message.channel == CHANNEL_SMS,
            Message.recipient == phone,
            Message.status.in_(S.UNSENT_STATUSES),
        )
    ).all()
    for message in duplicates:
        transition(message, S.SKIPPED, at=now, detail=SKIP_REASON_LABELS["replaced_by_reply"])
    return ACTION_CANCELLED, "cancelled"


def create_reply(
    usager: Usager, to_number: str, template: str, rdv: Rdv | None, now: datetime
) -> Message:
    """The SMS answering an inbound SMS: a ``reply`` message, due now, for the pipeline to send."""
    org = db.session.get(Organisation, usager.organisation_id)
    tz = org.tz
    context = {
        "organisation": org,
        "rdv": rdv,
        "lieu_phone": display_phone((rdv.lieu.phone if rdv else None) or org.phone),
        "date_short": short_date(rdv.starts_at, tz) if rdv else "",
        "time": hour(rdv.starts_at, tz) if rdv else "",
    }
    rendered = render_reply(template, **context)
    return new_message(
        organisation_id=org.id,
        rdv=rdv,
        usager_id=usager.id,
        channel=CHANNEL_SMS,
        kind="reply",
        recipient=to_number,
        send_at=now,
        now=now,
        rendered=rendered,
    )
