"""Rendering of SMS and email text from ``templates/messages/``.

Dates are French, through Babel: ``mar. 24/11 à 14h30`` in SMS, ``mardi 24
novembre 2026 à 14h30`` in email. SMS text is sanitised to GSM-7 where meaning
is kept, and its segment count computed, by :mod:`providers.sms_text`.
Every template is rendered once at start-up against sample data
(:func:`check_templates`), so a broken template stops the boot, not a send.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from zoneinfo import ZoneInfo

from babel.dates import format_date
from flask import current_app

from providers.sms_text import count_segments, to_gsm7

from .phones import display_phone
from .timeutil import utcnow

SMS_KINDS = (
    "confirmation",
    "reminder",
    "second_reminder",
    "moved",
    "cancelled",
    "waitlist_offer",
)
EMAIL_KINDS = (*SMS_KINDS, "agent_alert")


@dataclass(frozen=True)
class Rendered:
    body: str
    subject: str | None = None
    html: str | None = None
    segments: int | None = None
    encoding: str | None = None


def short_date(at: datetime, tz: ZoneInfo) -> str:
    """``mar. 24/11``"""
    return format_date(at.astimezone(tz), "EEE dd/MM", locale="fr")


def long_date(at: datetime, tz: ZoneInfo) -> str:
    """``mardi 24 novembre 2026``"""
    return format_date(at.astimezone(tz), "EEEE d MMMM y", locale="fr")


def hour(at: datetime, tz: ZoneInfo) -> str:
    """``14h30``, ``9h``, as French people write times."""
    local = at.astimezone(tz)
    return f"{local.hour}h{local.minute:02d}" if local.minute else f"{local.hour}h"


def cancel_url(code: str) -> str:
    return f"{current_app.config['PUBLIC_BASE_URL']}/c/{code}"


def offer_url(code: str) -> str:
    return f"{current_app.config['PUBLIC_BASE_URL']}/o/{code}"


def offer_extra(slot_starts_at: datetime, slot_lieu, code: str, tz: ZoneInfo) -> dict:
    """What a ``waitlist_offer`` template needs besides the waiting rdv: the offered slot."""
    return {
        "slot_date_short": short_date(slot_starts_at, tz),
        "slot_date_long": long_date(slot_starts_at, tz),
        "slot_time": hour(slot_starts_at, tz),
        "slot_lieu": slot_lieu,
        "offer_url": offer_url(code),
    }


def _context(rdv, usager, code: str | None, extra: dict) -> dict:
    org = rdv.organisation
    tz = org.tz
    context = {
        "rdv": rdv,
        "usager": usager,
        "motif": rdv.motif,
        "lieu": rdv.lieu,
        "organisation": org,
        "agent": rdv.agent,
        "date_short": short_date(rdv.starts_at, tz),
        "date_long": long_date(rdv.starts_at, tz),
        "time": hour(rdv.starts_at, tz),
        "cancel_url": cancel_url(code) if code else None,
        "lieu_phone": display_phone(rdv.lieu.phone or org.phone),
        "public_base_url": current_app.config["PUBLIC_BASE_URL"],
    }
    context.update(extra)
    return context


def finish_sms(text: str) -> Rendered:
    """Collapse whitespace, sanitise to GSM-7, count segments."""
    body = to_gsm7(" ".join(text.split()))
    encoding, segments = count_segments(body)
    return Rendered(body=body, segments=segments, encoding=encoding)


def render_sms(kind: str, rdv, usager, code: str | None, **extra) -> Rendered:
    env = current_app.jinja_env
    text = env.get_template(f"messages/sms/{kind}.txt").render(_context(rdv, usager, code, extra))
    return finish_sms(text)


def render_email(kind: str, rdv, usager, code: str | None, **extra) -> Rendered:
    env = current_app.jinja_env
    context = _context(rdv, usager, code, extra)
    subject = " ".join(
        env.get_template(f"messages/email/{kind}.subject.txt").render(context).split()
    )
    text = env.get_template(f"messages/email/{kind}.txt").render(context).strip() + "\n"
    html = env.get_template(f"messages/email/{kind}.html").render(context)
    return Rendered(body=text, subject=subject, html=html)


def render_reply(template: str, **context) -> Rendered:
    """An SMS answer to an inbound SMS (``messages/sms/reply_<template>.txt``)."""
    text = current_app.jinja_env.get_template(f"messages/sms/reply_{template}.txt").render(context)
    return finish_sms(text)


def sample_objects():
    """Plain sample objects with ordinary names, for the start-up template check."""
    org = SimpleNamespace(
        name="Département du Pas-de-Calais",
        tz=ZoneInfo("Europe/Paris"),
        phone="+33321000000",
        timezone="Europe/Paris",
    )
    lieu = SimpleNamespace(
        name="MDS Calais", address="12 rue X, 62100 Calais", phone="+33321000001"
    )
    motif = SimpleNamespace(
        name="Consultation PMI",
        service="PMI",
        duration_minutes=30,
        location_type="on_site",
        instructions="Apportez le carnet de santé.",
    )
    agent = SimpleNamespace(
        first_name="Anne", last_name="Martin", name="Anne Martin", email="a@x.fr"
    )
    usager = SimpleNamespace(first_name="Léa", last_name="Dupont", full_name="Léa Dupont")
    starts = utcnow().replace(microsecond=0)
    rdv = SimpleNamespace(
        id=1,
        organisation=org,
        lieu=lieu,
        motif=motif,
        agent=agent,
        starts_at=starts,
        ends_at=starts,
        cancelled_via="link",
        usagers=[usager],
    )
    return rdv, usager


def check_templates() -> None:
    """Render every message template once; raise at boot if one is broken."""
    rdv, usager = sample_objects()
    extra = {
        "previous_starts_at": rdv.starts_at,
        "reply_text": "Je serai en retard",
        **offer_extra(rdv.starts_at, rdv.lieu, "Fg7hJ2kL9m", rdv.organisation.tz),
    }
    for kind in SMS_KINDS:
        render_sms(kind, rdv, usager, "Ab3dE9xQ2k", **extra)
    for kind in EMAIL_KINDS:
        render_email(kind, rdv, usager, "Ab3dE9xQ2k", **extra)
    from .online.service import check_templates as check_online_templates

    check_online_templates(rdv)
    for reply in (
        "cancelled",
        "confirmed",
        "stop",
        "start",
        "free_text",
        "cannot_cancel",
        "unknown_rdv",
    ):
        render_reply(
            reply,
            rdv=rdv,
            lieu_phone="03 21 00 00 01",
            organisation=rdv.organisation,
            date_short="mar. 24/11",
            time="14h30",
        )
