"""Every code the UI can show has a French label (issue 11, defect 8).

Before the fix the rdv page showed raw ``opted_out``, ``too_late``, ``no_rdv``,
``already_cancelled`` and ``part``. Each vocabulary is read from the code
(constants, and literals in the source for kinds and skip reasons), so a new
code without a label fails here.
"""

from __future__ import annotations

import html
import re
from datetime import timedelta
from pathlib import Path

import pytest

from gateway import labels, models
from gateway.extensions import db
from gateway.models import InboundSms
from providers import status as S
from webhooks import inbound

from ..webhooks.conftest import NOW, book_at

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [
    p for folder in ("gateway", "scheduler", "webhooks") for p in (ROOT / folder).rglob("*.py")
]
SPEC_SECTION_5_KINDS = {"verification", "waitlist_offer", "second_reminder"}
SPEC_BOOKED_VIA = {"agent", "online", "api"}


def _literals(pattern: str) -> set[str]:
    found: set[str] = set()
    for path in SOURCES:
        found.update(re.findall(pattern, path.read_text(encoding="utf-8")))
    return found


def _kinds() -> set[str]:
    """Every message kind: the model's list, SPEC section 5's, and any the code names."""
    named = _literals(r'\bkind="([a-z_]+)"') | _literals(r'Message\.kind == "([a-z_]+)"')
    return set(models.MESSAGE_KINDS) | SPEC_SECTION_5_KINDS | named


def _inbound_actions() -> set[str]:
    return {v for k, v in vars(inbound).items() if k.startswith("ACTION_")}


def _skip_reasons() -> set[str]:
    """Every reason a message is cancelled or skipped with, as the code writes it."""
    by_code = _literals(r'S\.(?:SKIPPED|CANCELLED), SKIP_REASON_LABELS\["([a-z_]+)"\]')
    return (
        {labels.SKIP_REASON_LABELS.get(code, code) for code in by_code}
        | _literals(r'S\.(?:SKIPPED|CANCELLED), "([^"]+)"')
        | _literals(r'cancel_unsent\([^)]*?"([^"]+)"\)')
        | _literals(r'S\.(?:SKIPPED|CANCELLED)[^\n]*detail="([^"]+)"')
    )


def _outcomes() -> set[str]:
    from gateway.history import outcome

    codes = set()
    for status in models.RDV_STATUSES:
        for started in (False, True):
            rdv = models.Rdv(status=status, starts_at=NOW)
            codes.add(outcome(rdv, NOW + (timedelta(hours=1) if started else -timedelta(hours=1))))
    return codes


def _offer_statuses() -> set[str]:
    from gateway import waitlist

    return {waitlist.OFFERED, waitlist.TAKEN, waitlist.LOST, waitlist.EXPIRED}


VOCABULARIES = [
    ("rdv outcome", _outcomes, labels.OUTCOME_LABELS),
    ("waiting-list offer status", _offer_statuses, labels.WAITLIST_OFFER_STATUS_LABELS),
    ("rdv status", lambda: set(models.RDV_STATUSES), labels.STATUS_LABELS),
    ("message status", lambda: set(S.ALL_STATUSES), labels.MESSAGE_STATUS_LABELS),
    ("message kind", _kinds, labels.KIND_LABELS),
    ("channel", lambda: set(models.CHANNELS), labels.CHANNEL_LABELS),
    ("inbound action", _inbound_actions, labels.INBOUND_ACTION_LABELS),
    ("cancelled_via", lambda: set(models.CANCELLED_VIA), labels.VIA_LABELS),
    ("cancelled_via column", lambda: set(models.CANCELLED_VIA), labels.VIA_COLUMN_LABELS),
    (
        "booked_via",
        lambda: set(getattr(models, "BOOKED_VIA", ())) | SPEC_BOOKED_VIA,
        labels.BOOKED_VIA_LABELS,
    ),
]


@pytest.mark.parametrize("name,values,table", VOCABULARIES, ids=[v[0] for v in VOCABULARIES])
def test_every_code_has_a_french_label_and_no_label_is_stale(name, values, table):
    codes = values()
    assert codes, name
    assert sorted(codes - table.keys()) == [], f"{name}: codes without a French label"
    assert sorted(table.keys() - codes) == [], f"{name}: labels of codes that do not exist"
    for code, label in table.items():
        assert label.strip() and label != code, (name, code)


def test_the_issues_raw_codes_are_labelled():
    for code in ("opted_out", "too_late", "no_rdv", "already_cancelled", "part"):
        assert code in _inbound_actions()
        assert labels.INBOUND_ACTION_LABELS[code] != code


def test_every_skip_or_cancel_reason_the_code_writes_is_a_label():
    reasons = _skip_reasons()
    # The scan finds the send job's verdicts and the planner's, not just a few.
    assert {"rdv annulé", "rdv déplacé", "pas de destinataire"} <= reasons
    assert labels.SKIP_REASON_LABELS["confirmed_by_oui"] in reasons  # the no-show loop's too
    assert sorted(reasons - set(labels.SKIP_REASON_LABELS.values())) == []


def test_the_rdv_page_shows_inbound_actions_in_french(app, login, world):
    rdv = book_at(world, NOW.replace(day=5))
    actions = sorted(_inbound_actions())
    for n, action in enumerate(actions):
        db.session.add(
            InboundSms(
                provider="twilio",
                provider_message_id=f"SM{n:032d}",
                from_number=world.usager.phone,
                body=f"message {n}",
                raw={},
                action=action,
                organisation_id=world.org.id,
                usager_id=world.usager.id,
                rdv_id=rdv.id,
            )
        )
    db.session.commit()
    page = html.unescape(login.get(f"/rdvs/{rdv.id}").get_data(as_text=True))
    for action in actions:
        assert labels.INBOUND_ACTION_LABELS[action] in page, action
    for raw in ("opted_out", "too_late", "no_rdv", "already_cancelled", "part"):
        assert f"→ {raw}<" not in page
