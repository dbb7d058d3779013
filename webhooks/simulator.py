"""The simulator's outbox (``make run``): what the built-in provider "sent", as a phone shows it.

Each SMS has a reply box that goes through the same inbound handling as a
real provider's webhook (provider ``simulator``, sender = the recipient's
number), so a person can reply ANNULER by hand and watch the loop close.
Registered only when ``simulator`` is among the configured providers.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from flask import Blueprint, Flask, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import select

from gateway.extensions import db
from gateway.models import CHANNEL_EMAIL, CHANNEL_SMS, InboundSms, Message
from gateway.phones import display_phone
from providers import base
from providers.simulator import NAME

from . import inbound

bp = Blueprint("simulator", __name__, url_prefix="/simulator")

PAGE_SIZE = 100
MAX_REPLY_LENGTH = 918  # six concatenated GSM-7 segments


@dataclass
class Thread:
    """The SMS exchanged with one number, oldest first, as the usager's phone shows them."""

    number: str
    items: list[Message | InboundSms] = field(default_factory=list)

    @property
    def last_sms(self) -> Message:
        """The latest SMS we sent: a reply answers it (the reply route takes its id)."""
        return [i for i in self.items if isinstance(i, Message)][-1]

    @property
    def anchor(self) -> str:
        return thread_anchor(self.number)

    @property
    def last_at(self) -> datetime:
        return _at(self.items[-1])


def _at(item: Message | InboundSms) -> datetime:
    if isinstance(item, InboundSms):
        return item.received_at
    return item.sent_at or item.send_at


def threads(messages: list[Message], replies: list[InboundSms]) -> list[Thread]:
    """Group SMS and the usagers' replies into one conversation per number, most recent first."""
    by_number: dict[str, Thread] = {}
    for message in messages:
        if message.channel == CHANNEL_SMS:
            by_number.setdefault(message.recipient, Thread(message.recipient)).items.append(message)
    for sms in replies:
        # The later parts of a long SMS are joined into its first part: show that one only.
        if sms.from_number in by_number and sms.action != inbound.ACTION_PART:
            by_number[sms.from_number].items.append(sms)
    for thread in by_number.values():
        thread.items.sort(key=lambda i: (_at(i), isinstance(i, InboundSms), i.id))
    return sorted(by_number.values(), key=lambda t: t.last_at, reverse=True)


def enabled(app: Flask) -> bool:
    """Whether the simulator is one of the configured providers."""
    return NAME in app.config.get("SMS_PROVIDERS", []) or app.config.get("EMAIL_PROVIDER") == NAME


@bp.before_request
@login_required
def _require_login():
    """Agents only: the outbox shows usagers' messages."""


@bp.get("/outbox")
def outbox():
    """The messages the simulator accepted for this organisation, newest first, with replies."""
    messages = db.session.scalars(
        select(Message)
        .where(Message.provider == NAME, Message.organisation_id == current_user.organisation_id)
        .order_by(Message.sent_at.desc(), Message.id.desc())
        .limit(PAGE_SIZE)
    ).all()
    numbers = {m.recipient for m in messages if m.channel == CHANNEL_SMS}
    replies = (
        db.session.scalars(
            select(InboundSms)
            .where(InboundSms.provider == NAME, InboundSms.from_number.in_(numbers))
            .order_by(InboundSms.received_at.desc())
            .limit(PAGE_SIZE)
        ).all()
        if numbers
        else []
    )
    return render_template(
        "pages/simulator_outbox.html",
        threads=threads(messages, replies),
        emails=[m for m in messages if m.channel == CHANNEL_EMAIL],
    )


@bp.post("/outbox/<int:message_id>/reply")
def reply(message_id: int):
    """Reply to an SMS as its recipient would, through the inbound SMS handling."""
    message = db.session.get(Message, message_id)
    if (
        message is None
        or message.organisation_id != current_user.organisation_id
        or message.channel != CHANNEL_SMS
        or message.provider != NAME
    ):
        abort(404)
    text = (request.form.get("body") or "").strip()
    if not text or len(text) > MAX_REPLY_LENGTH:
        flash(f"Écrivez une réponse de 1 à {MAX_REPLY_LENGTH} caractères.", "error")
        return redirect(url_for("simulator.outbox", _anchor=thread_anchor(message.recipient)))
    inbound.receive(
        base.InboundSms(
            provider=NAME,
            provider_message_id="SIMIN" + uuid.uuid4().hex,
            from_number=message.recipient,
            to_number=message.rdv.organisation.sms_sender if message.rdv else "",
            body=text,
            raw={"in_reply_to": message.id, "text": text},
        )
    )
    flash(f"Réponse « {text} » envoyée depuis le {display_phone(message.recipient)}.", "success")
    return redirect(url_for("simulator.outbox", _anchor=thread_anchor(message.recipient)))


def thread_anchor(number: str) -> str:
    """The id of a number's conversation on the page (digits only: a valid fragment)."""
    return "fil-" + "".join(ch for ch in number if ch.isdigit())
