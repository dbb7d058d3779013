"""Real French replies, each with the action it must lead to (issue 14, free-text cancels).

Before the fix, only a bare keyword counted: "Annuler svp", "je souhaite
annuler" or "Stop svp" were forwarded to the agent as free text. Clear
requests that start with the keyword (after greetings and polite openers)
now act; negations, questions, doubts and mixed keywords stay free text.
Every row is checked against the parser; one row per action also goes
through the Twilio inbound webhook and the inbound job.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from gateway.extensions import db
from gateway.models import InboundSms, Rdv, Usager
from webhooks.inbound import (
    ACTION_CANCELLED,
    ACTION_CONFIRMED,
    ACTION_FORWARDED,
    ACTION_OPTED_IN,
    ACTION_OPTED_OUT,
    CANCEL,
    CONFIRM,
    START,
    STOP,
    keyword,
)

from .conftest import NOW, book_at, mark_sent, run_jobs, sms_of, twilio_post

CANCELLED, CONFIRMED, FORWARDED = ACTION_CANCELLED, ACTION_CONFIRMED, ACTION_FORWARDED
OPTED_OUT, OPTED_IN = ACTION_OPTED_OUT, ACTION_OPTED_IN
KIND_OF = {CANCELLED: CANCEL, CONFIRMED: CONFIRM, OPTED_OUT: STOP, OPTED_IN: START}

PHRASINGS = [
    # Clear cancel requests: the keyword starts the message, after polite openers.
    ("Annuler svp", CANCELLED),
    ("Annuler s'il vous plaît", CANCELLED),
    ("annuler merci", CANCELLED),
    ("Annulation du rdv", CANCELLED),
    ("Annulation de mon rendez-vous de vendredi", CANCELLED),
    ("je souhaite annuler", CANCELLED),
    ("Je souhaite annuler mon rendez-vous", CANCELLED),
    ("Bonjour, je souhaite annuler mon rendez-vous", CANCELLED),
    ("Bonjour, je souhaiterais annuler mon rdv. Cordialement", CANCELLED),
    ("Bonjour je voudrais annuler le rendez vous", CANCELLED),
    ("Je veux annuler", CANCELLED),
    ("J'aimerais annuler mon RDV svp", CANCELLED),
    ("Merci d'annuler mon rendez-vous", CANCELLED),
    ("Merci de bien vouloir annuler", CANCELLED),
    ("Veuillez annuler mon rdv", CANCELLED),
    ("Je dois annuler, je suis malade", CANCELLED),
    ("j'annule", CANCELLED),
    ("Annulez svp", CANCELLED),
    ("Annulé merci", CANCELLED),
    ("Bonjour, je souhaite annuler, je ne pourrai pas venir.", CANCELLED),
    # Negations, questions, doubts and moves stay free text: the agent reads them.
    ("je n'annule pas", FORWARDED),
    ("Je ne veux pas annuler", FORWARDED),
    ("Ne pas annuler svp", FORWARDED),
    ("j'annule pas", FORWARDED),
    ("annuler ?", FORWARDED),
    ("Annuler le rdv de mardi ?", FORWARDED),
    ("faut-il annuler", FORWARDED),
    ("Est-ce que je dois annuler", FORWARDED),
    ("Comment annuler mon rdv", FORWARDED),
    ("Dois-je annuler", FORWARDED),
    ("Annuler ou décaler le rendez-vous", FORWARDED),
    ("Annuler si possible", FORWARDED),
    ("Annuler. Non finalement je viendrai", FORWARDED),
    ("Annuler svp je ne peux pas venir", FORWARDED),  # one clause: the negation may be its own
    ("Je ne pourrai pas venir", FORWARDED),  # no keyword first: the agent decides
    ("Oui annuler", FORWARDED),  # two keywords of different kinds
    # Confirmations.
    ("oui merci", CONFIRMED),
    ("Oui, je serai là", CONFIRMED),
    ("OK merci", CONFIRMED),
    ("ok pour moi", CONFIRMED),
    ("Je confirme", CONFIRMED),
    ("Bonjour, je confirme ma présence", CONFIRMED),
    ("Oui mais je serai en retard", FORWARDED),
    ("oui ?", FORWARDED),
    ("Oui je ne serai pas en retard", FORWARDED),
    # Opt-out and opt-in: honoured whatever follows, but never a question.
    ("Stop svp", OPTED_OUT),
    ("STOP merci", OPTED_OUT),
    ("Stop, je ne veux plus recevoir de SMS", OPTED_OUT),
    ("Stop je ne veux plus de sms", OPTED_OUT),
    ("Arrêtez les SMS svp", OPTED_OUT),
    ("Merci d'arrêter les messages", OPTED_OUT),
    ("stop ?", FORWARDED),
    ("Start svp", OPTED_IN),
    # Plain free text.
    ("Je serai en retard de 10 minutes", FORWARDED),
    ("Merci pour le rappel", FORWARDED),
]


def test_the_table_is_large_and_covers_every_action():
    assert len(PHRASINGS) >= 30
    assert {action for _, action in PHRASINGS} == {
        CANCELLED,
        CONFIRMED,
        OPTED_OUT,
        OPTED_IN,
        FORWARDED,
    }


@pytest.fixture
def sent_rdv(signed_config, app, world, frozen):
    """An rdv on Friday whose confirmation SMS went out an hour ago."""
    rdv = book_at(world, NOW.replace(day=5))
    mark_sent(sms_of(rdv), at=NOW - timedelta(hours=1))
    return rdv


@pytest.mark.parametrize("text,action", PHRASINGS)
def test_a_real_reply_is_read_as_its_action(text, action):
    assert keyword(text) == KIND_OF.get(action)


END_TO_END = [
    ("Bonjour, je souhaite annuler mon rendez-vous", CANCELLED),
    ("je n'annule pas", FORWARDED),
    ("annuler ?", FORWARDED),
    ("oui merci", CONFIRMED),
    ("Stop svp", OPTED_OUT),
    ("Start svp", OPTED_IN),
]


@pytest.mark.parametrize("text,action", END_TO_END)
def test_a_real_reply_leads_to_its_action(sent_rdv, app, client, world, text, action):
    assert (text, action) in PHRASINGS
    form = {"MessageSid": "SM" + "5" * 32, "From": world.usager.phone, "To": "+33700000000"}
    assert twilio_post(client, "/webhooks/twilio/inbound", form | {"Body": text}).status_code == 200
    run_jobs(app)
    row = db.session.scalar(select(InboundSms))
    assert row.action == action
    rdv = db.session.get(Rdv, sent_rdv.id)
    assert (rdv.cancelled_via == "sms") is (action == CANCELLED)
    assert (rdv.confirmed_at is not None) is (action == CONFIRMED)
    assert db.session.get(Usager, world.usager.id).sms_opted_out is (action == OPTED_OUT)
