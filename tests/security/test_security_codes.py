"""Cancellation codes: long, random, unique."""

from __future__ import annotations

import math
import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy.exc import IntegrityError

from gateway.booking import book
from gateway.extensions import db
from gateway.models import CODE_ALPHABET, Participation, new_cancel_code

PARIS = ZoneInfo("Europe/Paris")


def test_codes_are_long_random_and_from_the_url_safe_alphabet():
    codes = [new_cancel_code() for _ in range(20_000)]
    assert all(re.fullmatch(r"[A-Za-z0-9]{10,}", c) for c in codes)
    assert len(set(codes)) == len(codes)
    assert len(codes[0]) * math.log2(len(CODE_ALPHABET)) >= 70  # bits of entropy
    # Every character of the alphabet shows up in every position: no fixed prefix or pattern.
    for position in range(len(codes[0])):
        assert {c[position] for c in codes} == set(CODE_ALPHABET)


def test_the_database_refuses_a_duplicate_code(app, world):
    with time_machine.travel(datetime(2026, 6, 1, 10, 0, tzinfo=PARIS), tick=False):
        rdv = book(
            world.org,
            motif_id=world.motif.id,
            lieu_id=world.lieu.id,
            agent_id=world.agent.id,
            usager_ids=[world.usager.id],
            starts_at=datetime(2026, 6, 5, 10, 0, tzinfo=PARIS),
        )
    code = rdv.participations[0].cancel_code
    db.session.add(Participation(rdv_id=rdv.id, usager_id=world.email_usager.id, cancel_code=code))
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()
