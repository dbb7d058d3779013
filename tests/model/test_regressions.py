"""Failures the model test found by itself, kept as plain tests.

Each test is a step sequence hypothesis printed, replayed through
:class:`~tests.model.machine.Replay`: every invariant is checked after every
step, as in the model test.
"""

from __future__ import annotations

import pytest

from .machine import Replay


@pytest.fixture
def state(app):
    replay = Replay(app)
    yield replay
    replay.teardown()


def test_a_moved_rdv_of_a_usager_with_mobile_and_email_keeps_its_sms(state):
    """Issue 11 defect 1, found by the model: the SMS ``moved`` notice (and the new SMS
    reminders) ended ``cancelled`` ("rdv déplacé") because the email ``moved`` row of the
    same move had a higher id. The steps hypothesis printed, without the no-op ones."""
    usagers_0 = state.begin(start="autumn_afternoon")
    rdvs_0 = state.book_rdv(
        agent=0,
        companion=usagers_0,
        day=2,
        family=False,
        lieu=0,
        motif="short",
        slot=5,
        usager=usagers_0,
        via="function",
    )
    state.move_rdv(day=6, other_lieu=True, rdv=rdvs_0, slot=7, via="api")
    state.send_due()


def test_an_opted_out_number_gets_no_sms_but_the_stop_confirmation(state):
    """SPEC: STOP opts the number out; only its confirmation may still go. A later OUI
    (or ANNULER, or free text) from that number is acted on, and its SMS reply is skipped
    (it went, before the fix)."""
    state.machine.check_replies_to_opted_out = True
    state.begin(start="spring_morning")
    state.sms_reply(sender="+33611111111", text="STOP", twice=False)
    state.sms_reply(sender="+33611111111", text="OUI", twice=False)
    state.send_due()
