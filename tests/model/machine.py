"""The stateful model of Lapin's message rules (issue 11).

:class:`LapinModel` is a hypothesis ``RuleBasedStateMachine`` that drives the
real application: the Flask test client (API, agent pages, cancellation
links), the gateway's own functions (booking, inbound SMS, receipts,
dispatch, the send job, the reconciler), two SMS providers and an email
provider that are the simulator under the model's control (they fail on
demand, transiently or permanently, and log every send they accept:
:mod:`tests.model.providers`), and a clock that only moves when the model
says so (``time_machine``, not ticking).

Its rules are the events of an rdv's life, in any order: booking for usagers
with any mix of mobile, email, consents and opt-out; moving; cancelling by
agent, link, SMS reply and API; recording seen / noshow; STOP and START;
receipts (delivered, failed, undelivered, sent; duplicated, reordered,
late); time passing with dispatch and send; a worker dying between claim
and write-back. The model keeps its own small account of what happened
(which rdv is live, when it was last planned, who opted out) and, after
every step, checks the invariants below against the database and the
providers' log. Each invariant's expectations are computed here from the
SPEC, not by calling the code under test.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import time_machine
from babel.dates import format_date
from flask import Flask
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)
from sqlalchemy import func, select

from gateway.booking import book
from gateway.errors import DomainError
from gateway.extensions import db
from gateway.models import (
    InboundSms,
    Message,
    MessageStatusChange,
    Organisation,
    Participation,
    Rdv,
    Usager,
)
from gateway.timeutil import UTC, utcnow
from providers import base
from providers import status as S
from scheduler.dispatch import dispatch_due, reconcile_stale
from scheduler.queue import embedded_queue, run_pending
from scheduler.transitions import bulk_transition
from webhooks import inbound
from webhooks.receipts import apply_receipt

from ..conftest import _empty_tables
from ..factories import make_world
from .providers import PERMANENT, TRANSIENT, ControlledEmail, ControlledSms, SendLog, Sent

PARIS = ZoneInfo("Europe/Paris")
# The clock starts at one of these (the model chooses): a weekday morning a week
# before spring's DST change, an evening inside quiet hours, days before autumn's.
STARTS = {
    "spring_morning": datetime(2030, 3, 25, 9, 30, tzinfo=PARIS),
    "quiet_evening": datetime(2030, 3, 26, 21, 30, tzinfo=PARIS),
    "autumn_afternoon": datetime(2030, 10, 24, 16, 0, tzinfo=PARIS),
}
REMINDER_OFFSETS = "48h,2h"
OFFSETS = (timedelta(hours=48), timedelta(hours=2))
QUIET_START, QUIET_END = time(20), time(8)
OPENING = ((time(9), time(12)), (time(14), time(17)))
# A slot: the k-th of a range, on the grid of the motif's duration (k = slot % 6 in
# range slot // 6). A 60-minute motif's k >= 3 ends past the range: refused.
SLOTS = st.integers(0, 11)
SENDING_TIMEOUT = timedelta(minutes=10)

# A small pool, so that numbers are shared (families) and collide with STOP.
MOBILE_A, MOBILE_B, REFUSED_MOBILE, LANDLINE = (
    "+33611111111",
    "+33622222222",
    "+33612340000",  # the simulator refuses it, permanently (invalid_number)
    "+33321000009",  # not a mobile: no SMS is planned for it
)
MOBILES = (MOBILE_A, MOBILE_B, REFUSED_MOBILE)
# Most usagers have a mobile and say yes to SMS, many have an email: the values repeat
# to weigh the draw that way. Shrinking goes towards the first value.
PHONES = (MOBILE_A, MOBILE_B, MOBILE_A, MOBILE_B, REFUSED_MOBILE, LANDLINE, None)
EMAILS = ("lea@example.org", "tom@example.org", None)
CONSENT = st.sampled_from([True, True, False])
UNKNOWN_NUMBER = "+33699999999"
INBOUND_TEXTS = ("ANNULER", "annulé", "STOP", "START", "OUI", "Je serai en retard")

LIVE, SEEN, NOSHOW, EXCUSED, REVOKED = "unknown", "seen", "noshow", "excused", "revoked"
CANCELLED_RDV = (EXCUSED, REVOKED)
DATED = ("confirmation", "reminder", "moved")
ANNOUNCES = ("confirmation", "moved")
USAGER_KINDS = ("confirmation", "reminder", "moved", "cancelled")
FALLBACK_KINDS = USAGER_KINDS

MODEL_APP_CONFIG = {
    "SIMULATOR_RECEIPTS": False,  # the model sends the receipts
    "REMINDER_OFFSETS": REMINDER_OFFSETS,
    "QUIET_HOURS": "20:00-08:00",
    "MAX_ATTEMPTS_PER_PROVIDER": 2,
    "RETRY_BASE_SECONDS": 60.0,
    "RETRY_MAX_SECONDS": 600.0,
    "SENDING_TIMEOUT": SENDING_TIMEOUT.total_seconds(),
    "SMS_CONCURRENCY": 4,
    "EMAIL_CONCURRENCY": 2,
}


def model_budget() -> tuple[int, int]:
    """(examples, steps per example): ``LAPIN_MODEL_EXAMPLES``, ``LAPIN_MODEL_STEPS``.

    Defaults keep each CI pass near 2-3 minutes on two cores: 100 examples on SQLite
    with the embedded queue, 40 on PostgreSQL with RQ on Redis (each step costs more).
    """
    default = 40 if os.environ.get("TEST_DATABASE_URL") else 100
    return (
        int(os.environ.get("LAPIN_MODEL_EXAMPLES") or default),
        int(os.environ.get("LAPIN_MODEL_STEPS") or 50),
    )


# --- expectations, from the SPEC (not from the code under test) ---


def to_utc(local: datetime, tz: ZoneInfo) -> datetime:
    return local.replace(tzinfo=tz).astimezone(UTC)


def in_quiet_hours(local: time) -> bool:
    return local >= QUIET_START or local < QUIET_END


def reminder_time(starts_at: datetime, offset: timedelta, channel: str) -> datetime:
    """``offset`` before the start in local wall-clock time; an SMS in quiet hours goes
    at the last minute before they begin (earlier, never later)."""
    local = starts_at.astimezone(PARIS).replace(tzinfo=None) - offset
    if channel == "sms" and in_quiet_hours(local.time()):
        day = local.date() if local.time() >= QUIET_START else local.date() - timedelta(days=1)
        local = datetime.combine(day, time(19, 59))
    return to_utc(local, PARIS)


def announce_time(planned_at: datetime, channel: str) -> datetime:
    """A confirmation or ``moved`` notice goes now; an SMS in quiet hours waits for 08:00."""
    local = planned_at.astimezone(PARIS)
    if channel != "sms" or not in_quiet_hours(local.time()):
        return planned_at
    day = local.date() + timedelta(days=1) if local.time() >= QUIET_START else local.date()
    return to_utc(datetime.combine(day, QUIET_END), PARIS)


def expected_reminders(starts_at: datetime, planned_at: datetime, channel: str) -> list[datetime]:
    times = {reminder_time(starts_at, o, channel) for o in OFFSETS}
    return sorted(t for t in times if planned_at < t < starts_at)


def names_rdv(body: str, channel: str, starts_at: datetime, lieu_name: str) -> bool:
    """Whether a message's text names this date, time and lieu."""
    local = starts_at.astimezone(PARIS)
    hour = f"{local.hour}h{local.minute:02d}" if local.minute else f"{local.hour}h"
    if channel == "sms":
        when = f"{format_date(local, 'EEE dd/MM', locale='fr')} {hour}"
    else:
        when = f"{format_date(local, 'EEEE d MMMM y', locale='fr')} à {hour}"
    return when in body and lieu_name in body


def _id(row) -> int:
    return row.id


def forward_or_retry(previous: str, new: str) -> bool:
    """A status path step: forward (the transitions table), or the scheduler's own retry."""
    if S.can_transition(previous, new):
        return True
    return new == S.SCHEDULED and previous in (S.QUEUED, S.SENDING)


# --- the model's own account ---


@dataclass
class UsagerModel:
    id: int
    phone: str | None
    email: str | None
    notify_sms: bool
    notify_email: bool
    opted_out: bool
    last_opted_out_step: int | None = None

    def channels(self) -> list[str]:
        """The channels messages are planned on: consent and a usable contact."""
        found = []
        if self.notify_sms and self.phone in MOBILES:
            found.append("sms")
        if self.notify_email and self.email:
            found.append("email")
        return found


@dataclass
class RdvModel:
    id: int
    usager_ids: list[int]
    agent_id: int
    lieu_id: int
    duration: timedelta
    starts_at: datetime
    planned_at: datetime  # booked, or last moved
    gen_start_id: int  # messages planned by the last booking/move have higher ids
    gen_step: int
    moves: int = 0
    status: str = LIVE
    cancelled_history_id: int | None = None  # last timeline entry when it was cancelled
    codes: dict[int, str] = field(default_factory=dict)

    @property
    def cancelled(self) -> bool:
        return self.status in CANCELLED_RDV


@dataclass(frozen=True)
class SendContext:
    """What the model knew when a provider accepted a message."""

    step: int
    rdv: tuple | None  # (gen_start_id, moves, cancelled, starts_at, lieu_id)
    usager_opted_out: bool
    number_stopped: bool
    stop_confirmation: bool


@dataclass
class Snapshot:
    now: datetime
    messages: dict[int, Any]
    history: dict[int, list[Any]]
    rdvs: dict[int, Any]
    usagers: dict[int, Any]
    lieux: dict[int, str]


@dataclass(frozen=True)
class ModelWorld:
    """The organisation every example starts from (ids and names only)."""

    org_id: int
    agents: tuple[int, int]
    lieux: dict[int, str]
    motifs: dict[str, tuple[int, timedelta]]
    token: str


# What an example leaves behind; the rest (organisation, agents, lieux, motifs, opening
# hours, API token) is built once per test and shared by its examples.
_SHARED_TABLES = frozenset(
    {"organisations", "agents", "api_tokens", "lieux", "motifs", "opening_hours"}
    | {"opening_hours_motifs"}
)


def model_world(app: Flask) -> ModelWorld:
    """The shared organisation, built on first use; every other table emptied."""
    db.session.rollback()
    world = app.extensions.get("lapin_model_world")
    if world is None:
        _empty_tables()
        made = make_world(opening=OPENING)
        org = made.org
        org.sms_providers = "simulator,backup"
        org.reminder_offsets = REMINDER_OFFSETS
        org.quiet_hours = "20:00-08:00"
        org.min_cancel_notice_minutes = 0
        db.session.commit()
        world = app.extensions["lapin_model_world"] = ModelWorld(
            org.id,
            (made.agent.id, made.other_agent.id),
            {made.lieu.id: made.lieu.name, made.other_lieu.id: made.other_lieu.name},
            {
                "short": (made.motif.id, timedelta(minutes=made.motif.duration_minutes)),
                "long": (made.long_motif.id, timedelta(minutes=made.long_motif.duration_minutes)),
            },
            made.token,
        )
    else:
        for table in reversed(db.Model.metadata.sorted_tables):
            if table.name not in _SHARED_TABLES:
                db.session.execute(table.delete())
        db.session.commit()
    return world


class LapinModel(RuleBasedStateMachine):
    """Random lives of rdvs against the real gateway; invariants after every step."""

    app: Flask  # set by the test (see make_machine)
    # Found by this model, then fixed: an opted-out usager who texted us (ANNULER,
    # OUI, free text) got an SMS reply, where only the STOP confirmation should go.
    # test_regressions.py keeps the sequence; the invariant checks replies too.
    check_replies_to_opted_out = True

    usagers = Bundle("usagers")
    rdvs = Bundle("rdvs")

    def __init__(self) -> None:
        super().__init__()
        self.ready = False
        self.step = 0
        self.clock = None
        self._snapshot: Snapshot | None = None

    # --- set-up and helpers ---

    @initialize(target=usagers, start=st.sampled_from(sorted(STARTS)))
    def begin(self, start):
        """Empty database, one organisation, the clock at ``start``, providers behaving,
        and a first usager as most are: a mobile and an email, yes to both (``add_usager``
        brings any other mix)."""
        self.travel = time_machine.travel(STARTS[start], tick=False)
        self.clock = self.travel.start()
        world = model_world(self.app)
        self.org_id, self.agents, self.token = world.org_id, world.agents, world.token
        self.lieux, self.lieu_ids, self.motifs = world.lieux, tuple(world.lieux), world.motifs
        self.log = SendLog()
        self.providers = {
            "simulator": ControlledSms("simulator", self.log),
            "backup": ControlledSms("backup", self.log),
            "email": ControlledEmail("simulator", self.log),
        }
        cache = self.app.extensions.setdefault("lapin_providers", {})
        cache.clear()
        cache[("sms", "simulator")] = self.providers["simulator"]
        cache[("sms", "backup")] = self.providers["backup"]
        cache[("email", "simulator")] = self.providers["email"]
        self._drop_jobs()
        self.client = self.app.test_client()
        with self.client.session_transaction() as session:  # logged in (Flask-Login's keys)
            session["_user_id"], session["_fresh"] = str(world.agents[0]), True
        self.usager_models: dict[int, UsagerModel] = {}
        self.rdv_models: dict[int, RdvModel] = {}
        self.stopped_numbers: set[str] = set()
        self.stop_confirmations: set[int] = set()
        self.dead_worker_rows: set[int] = set()
        self.receipts: list[base.Receipt] = []
        self.inbound_count = 0
        self.ready = True
        return self._new_usager(MOBILE_A, EMAILS[0], True, True, False)

    def teardown(self) -> None:
        if self.clock is not None:
            self.travel.stop()
        db.session.rollback()

    def now(self) -> datetime:
        return utcnow()

    def _api(self, method: str, path: str, json=None):
        return self.client.open(
            f"/api/v1{path}",
            method=method,
            json=json,
            headers={"Authorization": f"Bearer {self.token}"},
        )

    def _drop_jobs(self) -> None:
        if self.app.config.get("REDIS_URL"):
            from scheduler.queue import redis_connection

            redis_connection(self.app).flushdb()
        else:
            embedded_queue(self.app).jobs.queue.clear()

    def _run_jobs(self) -> None:
        db.session.commit()
        run_pending(self.app)
        db.session.expire_all()

    def _max_message_id(self) -> int:
        db.session.expire_all()
        return db.session.scalar(select(func.coalesce(func.max(Message.id), 0)))

    def _max_history_id(self) -> int:
        return db.session.scalar(select(func.coalesce(func.max(MessageStatusChange.id), 0)))

    def _done(self) -> None:
        """End of a step: note what the model knew for each new send, forget the snapshot."""
        db.session.rollback()
        self.step += 1
        for u in self.usager_models.values():
            if u.opted_out:
                u.last_opted_out_step = self.step
        for entry in self.log.entries:
            if entry.context is None:
                entry.context = self._context_of(entry)
        self._snapshot = None

    def _context_of(self, entry: Sent) -> SendContext:
        message = db.session.get(Message, entry.message_id)
        rdv = self.rdv_models.get(message.rdv_id) if message.rdv_id else None
        usager = self.usager_models.get(message.usager_id) if message.usager_id else None
        return SendContext(
            step=self.step,
            rdv=(rdv.gen_start_id, rdv.moves, rdv.cancelled, rdv.starts_at, rdv.lieu_id)
            if rdv
            else None,
            usager_opted_out=bool(usager and usager.opted_out),
            number_stopped=entry.channel == "sms" and entry.to in self.stopped_numbers,
            stop_confirmation=entry.message_id in self.stop_confirmations,
        )

    def _slot(self, day: int, slot: int, duration: timedelta) -> datetime:
        today = self.now().astimezone(PARIS).date()
        start = datetime.combine(today + timedelta(days=day), OPENING[slot // 6][0])
        return to_utc(start + (slot % 6) * duration, PARIS)

    def _bookable(
        self, agent_id: int, starts_at: datetime, duration: timedelta, exclude: int | None
    ) -> tuple[int, str | None]:
        """The answer the SPEC promises for this slot: (HTTP status, error code)."""
        if starts_at <= self.now():
            return 422, "past"
        local = starts_at.astimezone(PARIS)
        end = (starts_at + duration).astimezone(PARIS)
        if not any(
            local.date() == end.date() and a <= local.time() and end.time() <= b for a, b in OPENING
        ):
            return 422, "closed"
        for other in self.rdv_models.values():
            if (
                other.id != exclude
                and other.agent_id == agent_id
                and not other.cancelled
                and other.starts_at < starts_at + duration
                and starts_at < other.starts_at + other.duration
            ):
                return 409, "slot_taken"
        return 200, None

    def _cancelled(self, rdv: RdvModel, status: str) -> None:
        rdv.status = status
        db.session.expire_all()
        rdv.cancelled_history_id = self._max_history_id()

    # --- rules: usagers and rdvs ---

    @precondition(lambda self: len(self.usager_models) < 4)
    @rule(
        target=usagers,
        phone=st.sampled_from(PHONES),
        email=st.sampled_from(EMAILS),
        notify_sms=CONSENT,
        notify_email=CONSENT,
        opted_out=st.booleans(),
    )
    def add_usager(self, phone, email, notify_sms, notify_email, opted_out):
        """A usager through the API (``allow_duplicate``: families share numbers)."""
        return self._new_usager(phone, email, notify_sms, notify_email, opted_out)

    def _new_usager(self, phone, email, notify_sms, notify_email, opted_out):
        r = self._api(
            "POST",
            "/usagers",
            {
                "first_name": "Léa",
                "last_name": f"Usager{len(self.usager_models)}",
                "phone": phone,
                "email": email,
                "notify_sms": notify_sms,
                "notify_email": notify_email,
                "allow_duplicate": True,
            },
        )
        refused = (phone == LANDLINE and notify_sms) or (phone is None and email is None)
        assert r.status_code == (422 if refused else 201), r.get_json()
        if refused:
            self._done()
            return multiple()
        usager_id = r.get_json()["id"]
        if opted_out:  # opted out earlier (a STOP before this story began)
            db.session.get(Usager, usager_id).sms_opted_out = True
            db.session.commit()
        self.usager_models[usager_id] = UsagerModel(
            usager_id, phone, email, notify_sms, notify_email, opted_out
        )
        self._done()
        return usager_id

    @precondition(lambda self: len(self.rdv_models) < 6)
    @rule(
        target=rdvs,
        usager=usagers,
        family=st.booleans(),
        companion=usagers,
        agent=st.integers(0, 1),
        lieu=st.integers(0, 1),
        motif=st.sampled_from(["short", "short", "long"]),
        day=st.integers(0, 6),
        slot=SLOTS,
        via=st.sampled_from(["api", "function"]),
    )
    def book_rdv(self, usager, family, companion, agent, lieu, motif, day, slot, via):
        """Book through the API or ``gateway.booking.book``, for one usager or two (a family);
        the answer is the SPEC's."""
        usager_ids = [usager, companion] if family and companion != usager else [usager]
        agent_id, lieu_id = self.agents[agent], self.lieu_ids[lieu]
        motif_id, duration = self.motifs[motif]
        starts_at = self._slot(day, slot, duration)
        expected, _ = self._bookable(agent_id, starts_at, duration, None)
        before = self._max_message_id()
        planned_at = self.now()
        if via == "api":
            r = self._api(
                "POST",
                "/rdvs",
                {
                    "motif_id": motif_id,
                    "lieu_id": lieu_id,
                    "agent_id": agent_id,
                    "usager_ids": usager_ids,
                    "starts_at": starts_at.isoformat(),
                },
            )
            status = 200 if r.status_code == 201 else r.status_code
            rdv_id = r.get_json()["id"] if status == 200 else None
        else:
            try:
                rdv = book(
                    db.session.get(Organisation, self.org_id),
                    motif_id=motif_id,
                    lieu_id=lieu_id,
                    agent_id=agent_id,
                    usager_ids=usager_ids,
                    starts_at=starts_at,
                )
            except DomainError as exc:
                status, rdv_id = exc.status, None
            else:
                status, rdv_id = 200, rdv.id
        assert status == expected, f"booking {starts_at} answered {status}, expected {expected}"
        if rdv_id is None:
            self._done()
            return multiple()
        codes = dict(
            db.session.execute(
                select(Participation.usager_id, Participation.cancel_code).where(
                    Participation.rdv_id == rdv_id
                )
            ).all()
        )
        self.rdv_models[rdv_id] = RdvModel(
            rdv_id,
            usager_ids,
            agent_id,
            lieu_id,
            duration,
            starts_at,
            planned_at,
            before,
            self.step,
            codes=codes,
        )
        self._done()
        return rdv_id

    @rule(
        rdv=rdvs,
        day=st.integers(0, 6),
        slot=SLOTS,
        other_lieu=st.booleans(),
        via=st.sampled_from(["api", "form"]),
    )
    def move_rdv(self, rdv, day, slot, other_lieu, via):
        """Move (start and/or lieu) by API PATCH or the agent form."""
        model = self.rdv_models[rdv]
        if model.status in (SEEN, NOSHOW):
            self._done()  # moving a finished rdv: issue 11 defect 5, not this model's
            return
        lieu_id = (
            next(i for i in self.lieu_ids if i != model.lieu_id) if other_lieu else model.lieu_id
        )
        starts_at = self._slot(day, slot, model.duration)
        if model.cancelled:
            expected = 409
        elif starts_at == model.starts_at and lieu_id == model.lieu_id:
            expected = 422
        else:
            expected, _ = self._bookable(model.agent_id, starts_at, model.duration, rdv)
        before = self._max_message_id()
        planned_at = self.now()
        if via == "api":
            body = {"starts_at": starts_at.isoformat()}
            if other_lieu:
                body["lieu_id"] = lieu_id
            r = self._api("PATCH", f"/rdvs/{rdv}", body)
            status = r.status_code
        else:
            local = starts_at.astimezone(PARIS).replace(tzinfo=None).isoformat(timespec="minutes")
            r = self.client.post(f"/rdvs/{rdv}/move", data={"starts_at": local, "lieu_id": lieu_id})
            assert r.status_code == 302, r.status_code
            db.session.expire_all()
            row = db.session.get(Rdv, rdv)
            moved = (row.starts_at, row.lieu_id) == (starts_at, lieu_id)
            status = 200 if moved else expected if expected != 200 else "refused"
        assert status == expected, f"moving rdv {rdv} to {starts_at} answered {status}"
        if status == 200:
            model.starts_at, model.lieu_id = starts_at, lieu_id
            model.planned_at, model.gen_start_id, model.gen_step = planned_at, before, self.step
            model.moves += 1
        self._done()

    @rule(rdv=rdvs, via=st.sampled_from(["agent", "api", "link"]), who=st.integers(0, 1))
    def cancel_rdv(self, rdv, via, who):
        """Cancel by the agent's button, the API or the usager's ``/c/<code>`` link (POST)."""
        model = self.rdv_models[rdv]
        now = self.now()
        if via == "link":
            code = model.codes[model.usager_ids[who % len(model.usager_ids)]]
            r = self.client.post(f"/c/{code}")
            if model.cancelled:
                assert r.status_code == 200, "a second cancel shows the confirmation again"
            elif now >= model.starts_at:
                assert r.status_code == 409, "a usager cannot cancel an rdv that has started"
            else:
                assert r.status_code == 200, r.status_code
                self._cancelled(model, EXCUSED)
        else:
            if via == "api":
                status = self._api("POST", f"/rdvs/{rdv}/cancel").status_code
            else:
                assert (
                    self.client.post(f"/rdvs/{rdv}/cancel", data={"confirmed": "yes"}).status_code
                    == 302
                )
                db.session.expire_all()
                row = db.session.get(Rdv, rdv)
                status = 200 if row.status == REVOKED or model.cancelled else 409
            if model.status in (SEEN, NOSHOW):
                assert status == 409, "an rdv that took place cannot be cancelled"
            else:
                assert status == 200, status
                if not model.cancelled:
                    self._cancelled(model, REVOKED)
        self._done()

    @rule(rdv=rdvs, outcome=st.sampled_from([SEEN, NOSHOW]), via=st.sampled_from(["api", "form"]))
    def record_outcome(self, rdv, outcome, via):
        """Seen or noshow, allowed once the rdv has started and if it is not cancelled."""
        model = self.rdv_models[rdv]
        expected = 409 if model.cancelled or model.starts_at > self.now() else 200
        if via == "api":
            status = self._api("POST", f"/rdvs/{rdv}/status", {"status": outcome}).status_code
        else:
            r = self.client.post(f"/rdvs/{rdv}/status", data={"status": outcome})
            assert r.status_code == 302, r.status_code
            db.session.expire_all()
            status = 200 if db.session.get(Rdv, rdv).status == outcome else 409
        assert status == expected, f"recording {outcome} on rdv {rdv} answered {status}"
        if status == 200:
            model.status = outcome
        self._done()

    # --- rules: what usagers and providers send us ---

    @rule(
        sender=st.sampled_from((*MOBILES, UNKNOWN_NUMBER)),
        text=st.sampled_from(INBOUND_TEXTS),
        twice=st.booleans(),
    )
    def sms_reply(self, sender, text, twice):
        """An inbound SMS (``webhooks.inbound.receive``, as the webhooks do), maybe delivered
        twice; the model learns what it did from the stored action."""
        self.inbound_count += 1
        provider_id = f"MODEL-IN-{self.inbound_count}"
        sms = base.InboundSms(
            provider="simulator",
            provider_message_id=provider_id,
            from_number=sender,
            to_number="Lapin",
            body=text,
            raw={"text": text},
        )
        before = self._max_message_id()
        inbound.receive(sms)
        self._run_jobs()
        if twice:
            inbound.receive(sms)
            self._run_jobs()
        row = db.session.scalar(
            select(InboundSms).where(
                InboundSms.provider == "simulator", InboundSms.provider_message_id == provider_id
            )
        )
        replies = db.session.scalars(
            select(Message.id).where(Message.id > before, Message.kind == "reply")
        ).all()
        assert len(replies) <= 1, f"one inbound SMS ({text!r}, twice={twice}) got replies {replies}"
        known = [u for u in self.usager_models.values() if u.phone == sender]
        kind = inbound.keyword(text)
        if not known:
            assert row.action == inbound.ACTION_UNKNOWN_NUMBER, row.action
        elif kind == inbound.STOP:
            assert row.action == inbound.ACTION_OPTED_OUT, row.action
            for u in known:
                u.opted_out = True
            self.stopped_numbers.add(sender)
            self.stop_confirmations.update(replies)
        elif kind == inbound.START:
            assert row.action == inbound.ACTION_OPTED_IN, row.action
            for u in known:
                u.opted_out = False
            self.stopped_numbers.discard(sender)
        elif row.action == inbound.ACTION_CANCELLED:
            model = self.rdv_models[row.rdv_id]
            assert not model.cancelled and self.now() < model.starts_at, (
                f"ANNULER cancelled rdv {row.rdv_id}, which the model had as {model.status}"
            )
            self._cancelled(model, EXCUSED)
        self._done()

    @rule(
        which=st.sampled_from(["simulator", "backup", "email"]),
        mode=st.sampled_from([TRANSIENT, PERMANENT]),
        count=st.integers(1, 3),
    )
    def provider_trouble(self, which, mode, count):
        """The next ``count`` sends through a provider fail, transiently or permanently."""
        self.providers[which].fail_next(mode, count)
        self._done()

    @precondition(lambda self: self.ready and self.log.entries)
    @rule(
        pick=st.integers(0, 10_000),
        status=st.sampled_from([S.DELIVERED, S.DELIVERED, S.UNDELIVERED, S.FAILED, S.SENT]),
        by_reference=st.booleans(),
        again=st.booleans(),
    )
    def receipt(self, pick, status, by_reference, again):
        """A receipt for something a provider accepted, now or late, by our reference or the
        provider's id, or one received before delivered again (providers retry); it moves
        the status forward only."""
        if again and self.receipts:
            self._apply(self.receipts[pick % len(self.receipts)])
            self._done()
            return
        entry = self.log.entries[pick % len(self.log.entries)]
        receipt = base.Receipt(
            provider=entry.provider,
            provider_message_id=entry.provider_message_id,
            reference=str(entry.message_id) if by_reference else None,
            raw_status=status,
            status=status,
            error_code=None,
            error_message=None,
            raw={"model": status},
        )
        self._apply(receipt)
        self.receipts.append(receipt)
        self._done()

    def _apply(self, receipt: base.Receipt) -> None:
        message_id = (
            int(receipt.reference)
            if receipt.reference
            else next(
                e.message_id
                for e in self.log.entries
                if e.provider_message_id == receipt.provider_message_id
            )
        )
        db.session.expire_all()
        before = db.session.get(Message, message_id).status
        apply_receipt(receipt)
        db.session.expire_all()
        after = db.session.get(Message, message_id).status
        expected = receipt.status if S.can_transition(before, receipt.status) else before
        assert after == expected, (
            f"receipt {receipt.status} on message {message_id} in {before}: now {after}"
        )

    # --- rules: time and the pipeline ---

    @rule(
        delta=st.sampled_from(
            [
                timedelta(minutes=1),
                timedelta(minutes=11),
                timedelta(hours=1),
                timedelta(hours=5),
                timedelta(hours=13),
                timedelta(days=1),
            ]
        ),
        scheduler_up=st.sampled_from([True, False]),
    )
    def time_passes(self, delta, scheduler_up):
        """Time passes. A scheduler that is up ticks whenever something falls due, and at the
        end; one that is down does nothing (what fell due waits for the next tick)."""
        target = self.now() + delta
        while scheduler_up:
            next_at = self._next_send_at()
            if next_at is None or next_at > target:
                break
            self.clock.move_to(next_at)
            self._pipeline()
        self.clock.move_to(target)
        if scheduler_up:
            self._pipeline()
        self._done()

    def _next_send_at(self) -> datetime | None:
        db.session.expire_all()
        return db.session.scalar(
            select(func.min(Message.send_at)).where(
                Message.status == S.SCHEDULED, Message.send_at > self.now()
            )
        )

    @rule()
    def send_due(self):
        """The scheduler's tick: reconcile, dispatch what is due, workers send it."""
        self._pipeline()
        self._done()

    @rule()
    def wait_for_next_message(self):
        """Time passes until the next planned message is due, then the scheduler ticks."""
        next_at = self._next_send_at()
        if next_at is not None:
            self.clock.move_to(next_at)
        self._pipeline()
        self._done()

    def _pipeline(self) -> None:
        now = self.now()
        reconcile_stale(now)
        self._run_jobs()
        for _ in range(10):  # until nothing is due (a fallback is due at once)
            if dispatch_due(now) == 0:
                break
            self._run_jobs()
        db.session.expire_all()
        due = db.session.scalars(
            select(Message.id).where(Message.status == S.SCHEDULED, Message.send_at <= now)
        ).all()
        assert not due, f"messages {due} are due at {now} and were not sent"
        stuck = set(
            db.session.scalars(
                select(Message.id).where(Message.status.in_((S.QUEUED, S.SENDING)))
            ).all()
        )
        assert stuck <= self.dead_worker_rows, (
            f"messages {sorted(stuck - self.dead_worker_rows)} left queued or sending "
            "by a worker that did not die"
        )

    @rule(claimed=st.booleans())
    def worker_dies(self, claimed):
        """Dispatch, then the send jobs are lost: before a worker took them (Redis flushed),
        or after a worker claimed their rows (queued -> sending, as the send job does) and
        died before sending anything. The reconciler must recover both."""
        now = self.now()
        dispatch_due(now)
        db.session.expire_all()
        queued = db.session.scalars(select(Message.id).where(Message.status == S.QUEUED)).all()
        if claimed:
            bulk_transition(
                queued,
                S.SENDING,
                at=now,
                from_statuses=(S.QUEUED,),
                attempts=Message.__table__.c.attempts + 1,
            )
            db.session.commit()
        self._drop_jobs()
        self.dead_worker_rows.update(queued)
        self._done()

    # --- invariants ---

    def snapshot(self) -> Snapshot:
        if self._snapshot is None:
            db.session.rollback()
            table = Message.__table__
            messages = {r.id: r for r in db.session.execute(select(table)).all()}
            history: dict[int, list[Any]] = {}
            for r in db.session.execute(
                select(MessageStatusChange.__table__).order_by(MessageStatusChange.id)
            ).all():
                history.setdefault(r.message_id, []).append(r)
            rdvs = {r.id: r for r in db.session.execute(select(Rdv.__table__)).all()}
            usagers = {r.id: r for r in db.session.execute(select(Usager.__table__)).all()}
            self._snapshot = Snapshot(self.now(), messages, history, rdvs, usagers, self.lieux)
        return self._snapshot

    def _opted_out_since(self, usager: UsagerModel, step: int) -> bool:
        return usager.opted_out or (
            usager.last_opted_out_step is not None and usager.last_opted_out_step >= step
        )

    @invariant()
    def live_rdvs_have_their_messages(self):
        """Every live future rdv has, per consented channel, one confirmation (or ``moved``)
        and one reminder per offset, pending or sent, at the right local time (quiet hours
        moved earlier), naming the rdv's current date, time and lieu."""
        if not self.ready:
            return
        snap = self.snapshot()
        for rdv in self.rdv_models.values():
            if rdv.status != LIVE or rdv.starts_at <= snap.now:
                continue
            row = snap.rdvs[rdv.id]
            assert (row.starts_at, row.lieu_id, row.status) == (
                rdv.starts_at,
                rdv.lieu_id,
                LIVE,
            ), f"rdv {rdv.id} is {row} in the database, the model has it live at {rdv.starts_at}"
            current = [
                m
                for m in snap.messages.values()
                if m.rdv_id == rdv.id
                and m.id > rdv.gen_start_id
                and m.kind in DATED
                and m.fallback_of_id is None
            ]
            announce = "moved" if rdv.moves else "confirmation"
            for usager_id in rdv.usager_ids:
                usager = self.usager_models[usager_id]
                channels = usager.channels()
                for m in current:
                    if m.usager_id == usager_id:
                        assert m.channel in channels, (
                            f"rdv {rdv.id}: {m.channel} {m.kind} {m.id} planned for usager "
                            f"{usager_id}, who has no consent or contact for it"
                        )
                for channel in channels:
                    mine = [m for m in current if m.usager_id == usager_id and m.channel == channel]
                    when = announce_time(rdv.planned_at, channel)
                    want = [(announce, when)] if when < rdv.starts_at else []
                    want += [
                        ("reminder", t)
                        for t in expected_reminders(rdv.starts_at, rdv.planned_at, channel)
                    ]
                    have = sorted((m.kind, m.id) for m in mine)
                    assert sorted(k for k, _ in want) == sorted(k for k, _ in have), (
                        f"rdv {rdv.id} (live, {rdv.starts_at:%Y-%m-%d %H:%M} UTC, "
                        f"{'moved' if rdv.moves else 'booked'} at {rdv.planned_at:%m-%d %H:%M}): "
                        f"usager {usager_id} {channel} should have {[k for k, _ in want]}, "
                        f"has {have}"
                    )
                    times = sorted(t for k, t in want if k == "reminder")
                    # Planned in time order; one whose time is ahead is untouched, at its time.
                    reminders = sorted((m for m in mine if m.kind == "reminder"), key=_id)
                    for t, m in zip(times, reminders, strict=True):
                        if t > snap.now:
                            assert (m.status, m.send_at) == (S.SCHEDULED, t), (
                                f"rdv {rdv.id}: usager {usager_id} {channel} reminder {m.id} is "
                                f"{m.status} at {m.send_at.astimezone(PARIS)}, expected "
                                f"scheduled at {t.astimezone(PARIS)} (Paris)"
                            )
                    for m in mine:
                        self._check_current(rdv, usager, m, snap, when)

    def _check_current(self, rdv, usager, m, snap, announce_at) -> None:
        """One message of a live rdv's current plan: status, time and text."""
        where = f"rdv {rdv.id}, usager {usager.id}, {m.channel} {m.kind} {m.id}"
        allowed = {S.SCHEDULED, S.QUEUED, S.SENDING, S.SENT, S.DELIVERED, S.FAILED, S.UNDELIVERED}
        if m.channel == "sms" and self._opted_out_since(usager, rdv.gen_step):
            allowed.add(S.SKIPPED)
        assert m.status in allowed, (
            f"{where} is {m.status} ({snap.history[m.id][-1].detail}) although the rdv is live "
            "and ahead"
        )
        lieu = snap.lieux[rdv.lieu_id]
        assert names_rdv(m.body, m.channel, rdv.starts_at, lieu), (
            f"{where} does not name the rdv's current date, time and lieu "
            f"({rdv.starts_at.astimezone(PARIS):%a %d/%m %H:%M}, {lieu}): {m.body!r}"
        )
        # Until its time comes nothing may touch a message (after, a dispatch may hold an
        # SMS for the morning, a retry may move it later).
        if m.kind != "reminder" and announce_at > snap.now:
            assert (m.status, m.send_at) == (S.SCHEDULED, announce_at), (
                f"{where} is {m.status} at {m.send_at.astimezone(PARIS)}, expected scheduled "
                f"at {announce_at.astimezone(PARIS)}"
            )

    @invariant()
    def nothing_stale_is_sent(self):
        """Nothing is sent for a cancelled or moved appointment except the ``cancelled`` and
        ``moved`` notices, nothing after it started, and each notice goes once."""
        if not self.ready:
            return
        snap = self.snapshot()
        notices: Counter = Counter()
        for entry in self.log.entries:
            m = snap.messages[entry.message_id]
            ctx = entry.context
            if m.rdv_id is None or m.kind not in USAGER_KINDS or ctx is None or ctx.rdv is None:
                continue
            gen_start_id, moves, cancelled, starts_at, lieu_id = ctx.rdv
            where = f"{m.channel} {m.kind} {m.id} of rdv {m.rdv_id}, sent at step {ctx.step}"
            assert entry.at < starts_at, f"{where} went after the rdv started ({starts_at})"
            if m.kind in DATED:
                assert not cancelled, f"{where} went although the rdv was cancelled"
                assert m.id > gen_start_id, (
                    f"{where} went although the rdv had been moved since it was planned "
                    f"(move {moves}; this plan starts after message {gen_start_id})"
                )
                assert names_rdv(entry.body, m.channel, starts_at, snap.lieux[lieu_id]), (
                    f"{where} names a stale date or lieu: {entry.body!r}"
                )
            else:
                assert cancelled, f"{where}: a cancellation notice for an rdv not cancelled"
            if m.kind in ("confirmation", "moved", "cancelled"):
                key = (m.rdv_id, m.usager_id, m.channel, m.kind, moves)
                notices[key] += 1
                assert notices[key] == 1, f"{where}: the same notice went {notices[key]} times"

    @invariant()
    def each_message_reaches_a_provider_once(self):
        """No message reaches a provider twice (the providers' own log), and every message
        the gateway believes sent was accepted by one."""
        if not self.ready:
            return
        snap = self.snapshot()
        sends = Counter(e.message_id for e in self.log.entries)
        twice = {mid: n for mid, n in sends.items() if n > 1}
        assert not twice, f"messages sent more than once (id: times): {twice}"
        for m in snap.messages.values():
            if m.sent_at is not None or m.status in (S.SENT, S.DELIVERED):
                assert m.id in sends, f"message {m.id} is {m.status} but no provider accepted it"
        for message_id in sends:
            status = snap.messages[message_id].status
            assert status in (S.SENT, S.DELIVERED, S.UNDELIVERED, S.FAILED), (
                f"message {message_id} was accepted by a provider but is {status}"
            )

    @invariant()
    def statuses_only_move_forward(self):
        """Every status path is allowed by scheduler/transitions.py (forward, or the
        scheduler's own retry back to ``scheduled``), and ends in the current status."""
        if not self.ready:
            return
        snap = self.snapshot()
        for m in snap.messages.values():
            path = [h.status for h in snap.history.get(m.id, [])]
            assert path and path[0] == S.SCHEDULED, f"message {m.id} was born {path[:1]}"
            for previous, new in pairwise(path):
                assert forward_or_retry(previous, new), (
                    f"message {m.id} ({m.channel} {m.kind}) went {previous} -> {new}: {path}"
                )
            assert path[-1] == m.status, f"message {m.id} is {m.status}, its timeline {path}"

    @invariant()
    def opted_out_numbers_get_only_the_stop_confirmation(self):
        """An opted-out usager or number receives no SMS but the STOP confirmation."""
        if not self.ready:
            return
        snap = self.snapshot()
        for entry in self.log.entries:
            ctx = entry.context
            if entry.channel != "sms" or ctx is None or ctx.stop_confirmation:
                continue
            m = snap.messages[entry.message_id]
            if m.kind == "reply" and not self.check_replies_to_opted_out:
                continue
            where = f"SMS {m.kind} {m.id} to {entry.to} (usager {m.usager_id}), step {ctx.step}"
            assert not ctx.usager_opted_out, f"{where} went to an opted-out usager"
            assert not ctx.number_stopped, f"{where} went to a number that sent STOP"
        for u in self.usager_models.values():
            assert bool(snap.usagers[u.id].sms_opted_out) == u.opted_out, (
                f"usager {u.id} ({u.phone}) opted out: model {u.opted_out}, "
                f"app {snap.usagers[u.id].sms_opted_out}"
            )

    @invariant()
    def a_lost_sms_gets_one_email_fallback(self):
        """A failed or undelivered SMS of a usager with an email gets exactly one email
        fallback, unless an email of the same kind already went or waits for that rdv, or
        the fallback no longer makes sense (the rdv started, or was cancelled: then only a
        ``cancelled`` notice falls back)."""
        if not self.ready:
            return
        snap = self.snapshot()
        fallbacks: dict[int, list[int]] = {}
        for m in snap.messages.values():
            if m.fallback_of_id is not None:
                fallbacks.setdefault(m.fallback_of_id, []).append(m.id)
        for sms in snap.messages.values():
            if sms.channel != "sms" or sms.status not in (S.FAILED, S.UNDELIVERED):
                continue
            mine = fallbacks.get(sms.id, [])
            where = f"SMS {sms.kind} {sms.id} ({sms.status}) of rdv {sms.rdv_id}"
            assert len(mine) <= 1, f"{where} has several email fallbacks: {mine}"
            usager = self.usager_models.get(sms.usager_id)
            if sms.kind not in FALLBACK_KINDS or sms.rdv_id is None or not usager.email:
                assert not mine, f"{where} has a fallback it should not have: {mine}"
                continue
            lost = snap.history[sms.id][-1]
            rdv = self.rdv_models[sms.rdv_id]
            started = lost.at >= snap.rdvs[sms.rdv_id].starts_at
            cancelled_before = (
                rdv.cancelled_history_id is not None and rdv.cancelled_history_id < lost.id
            )
            already = any(
                self._status_before(snap, e.id, lost.id) not in (None, S.CANCELLED, S.SKIPPED)
                and self._status_before(snap, e.id, lost.id) != S.FAILED
                for e in snap.messages.values()
                if e.channel == "email"
                and e.rdv_id == sms.rdv_id
                and e.usager_id == sms.usager_id
                and e.kind == sms.kind
                and e.id not in mine
            )
            due = not started and not already and (sms.kind == "cancelled" or not cancelled_before)
            assert len(mine) == (1 if due else 0), (
                f"{where}: {len(mine)} email fallback(s), expected {1 if due else 0} "
                f"(rdv started: {started}, cancelled before: {cancelled_before}, "
                f"an email of that kind already: {already})"
            )

    @staticmethod
    def _status_before(snap: Snapshot, message_id: int, history_id: int) -> str | None:
        """A message's status just before timeline entry ``history_id`` (None: not born)."""
        status = None
        for h in snap.history.get(message_id, []):
            if h.id >= history_id:
                break
            status = h.status
        return status

    def check_all(self) -> None:
        """Every invariant, as hypothesis runs them after each step (for replayed sequences)."""
        self.live_rdvs_have_their_messages()
        self.nothing_stale_is_sent()
        self.each_message_reaches_a_provider_once()
        self.statuses_only_move_forward()
        self.opted_out_numbers_get_only_the_stop_confirmation()
        self.a_lost_sms_gets_one_email_fallback()


class Replay:
    """A model whose every rule call is followed by every invariant, as hypothesis does:
    the failing sequences hypothesis prints replay as plain tests (test_regressions.py)."""

    def __init__(self, app: Flask) -> None:
        self.machine = make_machine(app)()

    def __getattr__(self, name: str):
        rule = getattr(self.machine, name)
        if name == "teardown":
            return rule

        def step(*args, **kwargs):
            result = rule(*args, **kwargs)
            self.machine.check_all()
            return result

        return step


def make_machine(app: Flask) -> type[LapinModel]:
    """The machine class bound to a test's app (hypothesis instantiates it per example)."""
    return type("LapinModel", (LapinModel,), {"app": app})


__all__ = ["MODEL_APP_CONFIG", "LapinModel", "Replay", "make_machine", "model_budget"]
