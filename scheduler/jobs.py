"""The send job: one batch of message ids, claimed, checked, sent concurrently, written back.

``send_messages(message_ids)`` is an RQ job (plain ids in). Its steps:

1. **Claim, only what is about to go.** ``UPDATE messages SET
   status='sending', attempts=attempts+1 WHERE id IN (...) AND
   status='queued'`` (committed), one slice of ``WRITE_BACK_EVERY`` ids
   (default ``SMS_CONCURRENCY``) at a time, when the threads are ready to send
   it (:func:`_send_all`): a job never has more than ``concurrency + chunk``
   rows ``sending``; the rest of its batch stays ``queued``. Only the rows
   this job claimed are sent: the same job run twice, or two jobs holding the
   same ids (a re-queue after a lost job or a dead worker), send nothing twice.
2. **Check, at send time** (planning normally did it earlier, but time passed):
   rdv cancelled -> ``cancelled``; a dated message (confirmation, reminder,
   moved) planned before the rdv's latest move -> ``cancelled`` "rdv
   déplacé". The rule is by construction, not by row order: every move or
   cancel bumps ``rdvs.plan_generation`` before planning its own messages,
   each message carries the generation it was planned in, and a dated message
   goes only while its generation is the rdv's
   (:func:`gateway.planning.is_stale`);
   rdv started -> ``skipped``; SMS to an opted-out usager -> ``skipped``; no
   consent for the channel -> ``skipped``; no recipient -> ``skipped``; SMS
   inside quiet hours -> back to ``scheduled`` for the morning. Rows that go
   nowhere get their claimed attempt back.
3. **Send** concurrently in a thread pool (``SMS_CONCURRENCY``, default 128;
   ``EMAIL_CONCURRENCY``, default 8), each provider throttled by its own
   rate (:mod:`scheduler.throttle`, shared by all workers through Redis).
   Threads touch no database: they get plain data and return outcomes, and
   never raise: an exception that is not a ``ProviderError`` (a Redis error
   from the rate limiter, a bug) costs its own message one transient attempt,
   never its neighbours their record (:func:`_deliver`).
4. **Retry, fail over, fail.** The provider of an attempt follows from the
   attempt count: attempts 1..N go to the organisation's first SMS provider,
   N+1..2N to the second, and so on (``N = MAX_ATTEMPTS_PER_PROVIDER``,
   default 3). A transient error is retried later with exponential backoff
   (``RETRY_BASE_SECONDS * 2**(k-1)``, capped by ``RETRY_MAX_SECONDS``): the
   row goes back to ``scheduled`` (:func:`scheduler.transitions.reschedule`).
   When the next attempt belongs to the next provider, it is tried at once, in
   the same job. All providers exhausted, or a permanent error -> ``failed``,
   and an SMS that fails gets its email fallback
   (:func:`gateway.planning.plan_email_fallback`). Twilio's 21610 (the
   recipient sent STOP) also sets ``usager.sms_opted_out``.
5. **Write back in bulk**, every chunk of outcomes as they complete: one
   transaction, a handful of statements whatever the chunk size.

A job stops claiming and starting sends once it has used 80 % of
``SEND_JOB_TIMEOUT`` (rate limits can make a batch slow); what it did not
start goes back to ``scheduled`` for now, untouched, so RQ never kills a job
mid-send.

**A worker that dies** (SIGKILL, lost machine) leaves two kinds of rows, and
the rule is that only the second waits:

* its batch's rows still ``queued``: never handed to a provider. Its job's
  lease runs out ``LEASE_SECONDS`` (30 s) after the death and the scheduler
  has RQ run the job again (:func:`scheduler.queue.requeue_abandoned`, every
  tick); that run claims them. Embedded mode: the queue dies with the process,
  and the restarted scheduler queues them again at once
  (:func:`scheduler.periodic.recover_embedded`).
* its rows ``sending``: perhaps handed to the provider, at most one window.
  They wait for a receipt (which finds them by our reference) or
  ``SENDING_TIMEOUT``, then go again (:func:`scheduler.dispatch.reconcile_stale`):
  the duplicate bound, never a blind resend.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import Flask, current_app
from sqlalchemy import bindparam, exists, func, select, update
from sqlalchemy.orm import selectinload

from gateway import events, metrics, waitlist
from gateway.extensions import db
from gateway.labels import SKIP_REASON_LABELS
from gateway.models import CHANNEL_SMS, InboundSms, Message, Organisation, Rdv, Usager
from gateway.planning import is_stale, plan_email_fallback, quiet_hours
from gateway.timeutil import utcnow
from providers import registry
from providers import status as S
from providers.base import (
    OutboundEmail,
    OutboundSms,
    ProviderError,
    SendResult,
    TransientProviderError,
)

from . import policy
from .queue import enqueue_on
from .throttle import rate_limiter
from .transitions import bulk_reschedule, bulk_transition, reschedule, transition

log = logging.getLogger(__name__)

RECEIPT_JOB = "webhooks.receipts.apply_receipt_job"
STATUS_ROUTES = {"twilio": "/webhooks/twilio/status", "vonage": "/webhooks/vonage/status"}
# Kinds addressed to a usager about their rdv: they go stale with the rdv.
USAGER_KINDS = frozenset(
    {"confirmation", "reminder", "second_reminder", "moved", "cancelled", "waitlist_offer"}
)
ICS_KINDS = frozenset({"confirmation", "moved", "cancelled"})


# --- providers, one instance per process (HTTP keep-alive pools are reused) ---

_providers_lock = threading.Lock()


def _receipt_sink(app: Flask):
    """The simulator's receipts become jobs, as a real provider's webhook would."""

    def sink(receipt) -> None:
        enqueue_on(app, RECEIPT_JOB, dataclasses.asdict(receipt))

    return sink


def provider_for(app: Flask, channel: str, name: str):
    """The app's adapter ``name`` for ``channel``, built once and shared by threads.

    Raises :class:`TransientProviderError` when the provider is misconfigured,
    so that the message fails over to the next provider instead of failing.
    """
    cache = app.extensions.setdefault("lapin_providers", {})
    key = (channel, name)
    provider = cache.get(key)
    if provider is not None:
        return provider
    with _providers_lock:
        provider = cache.get(key)
        if provider is None:
            config = app.config["PROVIDER_SETTINGS"]
            sink = _receipt_sink(app) if app.config.get("SIMULATOR_RECEIPTS", True) else None
            try:
                if channel == CHANNEL_SMS:
                    route = STATUS_ROUTES.get(name)
                    callback = app.config["PUBLIC_BASE_URL"] + route if route else None
                    provider = registry.sms_provider(name, config, callback, receipt_sink=sink)
                else:
                    provider = registry.email_provider(name, config, receipt_sink=sink)
            except ValueError as exc:
                raise TransientProviderError(name, f"configuration: {exc}", "config") from exc
            provider.observe = _observe
            cache[key] = provider
    return provider


def _observe(provider: str, channel: str, seconds: float, accepted: bool) -> None:
    """The adapters' metrics hook; a metrics fault must not turn a sent message into an error."""
    try:
        metrics.observe_send(provider, channel, seconds, accepted)
    except Exception:  # metrics must never cost a send
        log.exception("metrics: observe_send failed")


def provider_chain(app: Flask, org: Organisation, channel: str) -> list[str]:
    """The organisation's ordered SMS providers, or its email provider; else the environment's."""
    if channel == CHANNEL_SMS:
        if org.sms_providers:
            return [p.strip().lower() for p in org.sms_providers.split(",") if p.strip()]
        return list(app.config["SMS_PROVIDERS"])
    return [(org.email_provider or app.config["EMAIL_PROVIDER"]).strip().lower()]


# --- plain data between the job and its threads ---


@dataclass(frozen=True)
class _Task:
    id: int
    channel: str
    attempts: int  # including the attempt just claimed
    chain: tuple[str, ...]
    outbound: OutboundSms | OutboundEmail


@dataclass
class _Outcome:
    id: int
    # "sent", "retry", "failed", "deferred"; "unknown": may have left, stays ``sending``
    result: str
    attempts: int
    provider: str | None = None
    send_result: SendResult | None = None
    error: ProviderError | None = None
    backoff_step: int = 0  # attempts made on the current provider, for the backoff


# --- the job ---


def send_messages(message_ids: list[int]) -> dict[str, int]:
    """Send the ``queued`` messages among ``message_ids``; return counts by outcome."""
    app = current_app._get_current_object()
    deadline = time.monotonic() + 0.8 * app.config["SEND_JOB_TIMEOUT"]
    ids = list(dict.fromkeys(message_ids))
    counts: dict[str, int] = {}
    if not ids:
        return counts
    config = app.config
    sms = db.session.scalar(
        select(exists().where(Message.id.in_(ids), Message.channel == CHANNEL_SMS))
    )
    concurrency = int(config["SMS_CONCURRENCY"] if sms else config["EMAIL_CONCURRENCY"])
    chunk = max(1, int(config.get("WRITE_BACK_EVERY") or concurrency))
    if len(ids) == 1:
        concurrency = 1  # no thread hand-off for a lone message
    left: list[int] = []
    claims = _claims(app, ids, chunk, deadline, counts, left)
    for outcomes in _send_all(app, claims, concurrency, chunk, deadline):
        _write_back(outcomes, counts)
        db.session.commit()
    if left:
        # The deadline came first: what this job never claimed goes back to the
        # dispatcher now (a row another job claimed meanwhile is not touched).
        now = utcnow()
        deferred = bulk_reschedule(
            left,
            now,
            at=now,
            from_statuses=(S.QUEUED,),
            details=dict.fromkeys(left, "lot trop long : renvoyé au prochain passage"),
        )
        _count(counts, "deferred", len(deferred))
        db.session.commit()
    log.info("send job: %d ids, %s", len(ids), counts)
    return counts


def _claims(
    app: Flask,
    ids: list[int],
    size: int,
    deadline: float,
    counts: dict[str, int],
    left: list[int],
) -> Iterator[list[_Task]]:
    """Claim ``ids`` ``size`` at a time; yield each slice's tasks (those still to send).

    A slice is claimed only when the caller asks for it, that is when the
    threads are ready to send it (:func:`_send_all`). Past ``deadline`` nothing
    more is claimed: the rest goes to ``left``.
    """
    for start in range(0, len(ids), size):
        if time.monotonic() > deadline:
            left.extend(ids[start:])
            return
        yield _claim(app, ids[start : start + size], counts)


def _claim(app: Flask, ids: list[int], counts: dict[str, int]) -> list[_Task]:
    """Claim the rows of ``ids`` still ``queued`` (committed), check them at send time."""
    now = utcnow()
    claimed = bulk_transition(
        ids,
        S.SENDING,
        at=now,
        from_statuses=(S.QUEUED,),
        attempts=Message.__table__.c.attempts + 1,
    )
    db.session.commit()
    if not claimed:
        return []
    messages = db.session.scalars(
        select(Message)
        .where(Message.id.in_(claimed))
        .options(
            selectinload(Message.rdv).selectinload(Rdv.lieu),
            selectinload(Message.rdv).selectinload(Rdv.motif),
            selectinload(Message.usager),
        )
        .order_by(Message.id)
    ).all()
    tasks = _check_at_send_time(app, messages, now, counts)
    db.session.commit()
    return tasks


def _count(counts: dict[str, int], key: str, n: int = 1) -> None:
    counts[key] = counts.get(key, 0) + n


def _check_at_send_time(
    app: Flask, messages: list[Message], now: datetime, counts: dict[str, int]
) -> list[_Task]:
    """Decide, row by row, whether each claimed message still goes; build the tasks."""
    orgs = {
        o.id: o
        for o in db.session.scalars(
            select(Organisation).where(Organisation.id.in_({m.organisation_id for m in messages}))
        )
    }
    tasks = []
    for message in messages:
        org = orgs[message.organisation_id]
        verdict = _verdict(message, org, now)
        if verdict is None:
            tasks.append(_task(app, message, org))
            continue
        status, detail = verdict
        # The claimed attempt did not happen: give it back.
        attempts = message.attempts - 1
        if status == S.SCHEDULED:
            reschedule(
                message, detail, "heures calmes : envoi reporté au matin", at=now, attempts=attempts
            )
            _count(counts, "held")
        else:
            transition(message, status, at=now, detail=detail, attempts=attempts)
            _count(counts, status)
    return tasks


def _verdict(message: Message, org: Organisation, now: datetime):
    """None when the message may go now, else (status, detail) or (scheduled, until)."""
    rdv, usager, kind = message.rdv, message.usager, message.kind
    if rdv is not None and kind in USAGER_KINDS:
        if rdv.is_cancelled and kind != "cancelled":
            return S.CANCELLED, "rdv annulé"
        if is_stale(message, rdv):
            return S.CANCELLED, "rdv déplacé"
        if rdv.starts_at <= now:
            return S.SKIPPED, "trop tard : le rdv a commencé"
    if not message.recipient:
        return S.SKIPPED, "pas de destinataire"
    # An opted-out number gets one SMS from us: the confirmation of its STOP. Its
    # later texts (OUI, ANNULER, free text) are acted on but not answered.
    if (
        kind == "reply"
        and message.channel == CHANNEL_SMS
        and usager is not None
        and usager.sms_opted_out
        and not _confirms_stop(message)
    ):
        return S.SKIPPED, "numéro désinscrit des SMS (STOP)"
    loop_verdict = no_show_loop_verdict(message, org, now)
    if loop_verdict is not None:
        return loop_verdict
    if usager is not None and kind in USAGER_KINDS:
        if message.channel == CHANNEL_SMS:
            if usager.sms_opted_out:
                return S.SKIPPED, "numéro désinscrit des SMS (STOP)"
            if not usager.notify_sms:
                return S.SKIPPED, "pas de consentement SMS"
        # A fallback email goes without email notifications: the SMS is known lost.
        elif not usager.notify_email and message.fallback_of_id is None:
            return S.SKIPPED, "pas de consentement e-mail"
    wait_until = policy.is_sendable_now(kind, message.channel, now, quiet_hours(org), org.tz)
    if wait_until is not None:
        return S.SCHEDULED, wait_until
    return None


def _confirms_stop(reply: Message) -> bool:
    """Whether this reply answers an SMS that opted its number out (the STOP confirmation)."""
    from webhooks.inbound import ACTION_OPTED_OUT  # webhooks imports the scheduler

    return db.session.scalar(
        select(
            exists().where(
                InboundSms.reply_message_id == reply.id, InboundSms.action == ACTION_OPTED_OUT
            )
        )
    )


def no_show_loop_verdict(message: Message, org: Organisation, now: datetime):
    """The send-time rules of the second reminder and of waiting-list offers (SPEC section 5).

    A second reminder goes only to a usager who has not confirmed with OUI
    (a cancelled rdv is caught before, by :func:`_verdict`), and, when the
    organisation says so, only to a usager with a past no-show. An offer goes
    only while its slot is still free, far enough ahead and not yet taken.
    Returns None or ``(status, reason)`` with a reason of
    :data:`gateway.labels.SKIP_REASON_LABELS`.
    """
    if message.kind == "second_reminder" and message.rdv is not None:
        if message.rdv.confirmed_at is not None:
            return S.SKIPPED, SKIP_REASON_LABELS["confirmed_by_oui"]
        if org.second_reminder_noshow_only and not waitlist.past_noshows(message.usager_id, now):
            return S.SKIPPED, SKIP_REASON_LABELS["no_past_noshow"]
    if message.kind == "waitlist_offer":
        return waitlist.offer_send_verdict(message, org, now)
    return None


def _task(app: Flask, message: Message, org: Organisation) -> _Task:
    reference = str(message.id)
    if message.channel == CHANNEL_SMS:
        outbound: OutboundSms | OutboundEmail = OutboundSms(
            reference=reference,
            to=message.recipient,
            body=message.body,
            sender=org.sms_sender or None,
        )
    else:
        outbound = OutboundEmail(
            reference=reference,
            to=message.recipient,
            subject=message.subject or "",
            text=message.body,
            html=message.html_body,
            ics=_ics(message),
        )
    return _Task(
        message.id,
        message.channel,
        message.attempts,
        tuple(provider_chain(app, org, message.channel)),
        outbound,
    )


def _ics(message: Message) -> str | None:
    """The calendar invitation of a usager's confirmation, moved or cancelled email."""
    rdv = message.rdv
    if rdv is None or message.kind not in ICS_KINDS or message.agent_id is not None:
        return None
    from providers.smtp import build_ics

    return build_ics(
        uid=f"rdv-{rdv.id}@lapin",
        starts_at=rdv.starts_at,
        ends_at=rdv.ends_at,
        summary=f"RDV {rdv.motif.name}",
        location=f"{rdv.lieu.name}, {rdv.lieu.address}".strip(", "),
        description=message.subject or "",
        # Calendars replace an event when its sequence grows; updated_at only grows.
        sequence=int(rdv.updated_at.timestamp()) if rdv.updated_at else 0,
        cancelled=message.kind == "cancelled",
    )


# Sending threads live as long as the worker process: a batch no longer pays
# for starting (and joining) dozens of threads. One pool per concurrency
# setting, shared by every app object of the process (tests build many).
_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _pool(size: int) -> ThreadPoolExecutor:
    with _pools_lock:
        pool = _pools.get(size)
        if pool is None:
            pool = _pools[size] = ThreadPoolExecutor(
                max_workers=size, thread_name_prefix=f"lapin-send-{size}"
            )
        return pool


def _send_all(
    app: Flask,
    claims: Iterator[list[_Task]],
    concurrency: int,
    chunk: int,
    deadline: float,
) -> Iterator[list[_Outcome]]:
    """Send what ``claims`` gives, concurrently; yield the outcomes in chunks, as they complete.

    The caller writes each chunk back and commits before asking for the next.
    A new slice is claimed only when it fits, with the sends in flight and the
    outcomes not yet written back, in ``concurrency + chunk``: no job ever has
    more rows ``sending`` than that window, whatever the batch size. It bounds
    both what a worker killed mid-batch may have handed to a provider without
    recording it (sent again after ``SENDING_TIMEOUT``) and what it leaves
    ``sending`` at all: the rest of its batch is still ``queued``.
    """
    per_provider = max(1, int(app.config["MAX_ATTEMPTS_PER_PROVIDER"]))

    def run(task: _Task) -> _Outcome:
        return _deliver(app, task, per_provider, deadline)

    if concurrency <= 1:
        for tasks in claims:
            if tasks:
                yield [run(t) for t in tasks]
        return
    pool = _pool(concurrency)
    running: set = set()
    done: list[_Outcome] = []
    exhausted = False
    while True:
        while not exhausted and len(running) + len(done) <= concurrency:
            tasks = next(claims, None)
            if tasks is None:
                exhausted = True
            else:
                running.update(pool.submit(run, task) for task in tasks)
        if not running:
            break
        finished, running = wait(running, return_when=FIRST_COMPLETED)
        done.extend(f.result() for f in finished)
        if len(done) >= chunk:
            yield done
            done = []
    if done:
        yield done


def _deliver(app: Flask, task: _Task, per_provider: int, deadline: float) -> _Outcome:
    """Send one message, failing over along the chain; no database access here.

    Never raises, so that one message's fault never costs its neighbours their
    record. An exception that is not a ``ProviderError`` before the provider is
    called (a Redis error from the rate limiter, a bug in building the adapter)
    is a transient error of that attempt: nothing left, so the message is
    retried like any transient failure, its attempt counted. Past the call,
    the adapters turn every failure into a ``ProviderError``; should one break
    that contract, the message may have left: it stays ``sending`` ("unknown")
    for the reconciler's ``SENDING_TIMEOUT``, never blindly sent again.
    """
    attempts = task.attempts
    last_error: ProviderError | None = None
    while True:
        index = (attempts - 1) // per_provider
        if index >= len(task.chain):
            error = last_error or TransientProviderError(
                "-", "aucun fournisseur disponible", "exhausted"
            )
            return _Outcome(task.id, "failed", attempts, error=error)
        name = task.chain[index]
        if time.monotonic() > deadline:
            # Not started: hand it back untouched (the claimed attempt is returned).
            return _Outcome(task.id, "deferred", attempts - 1)
        try:
            provider = provider_for(app, task.channel, name)
            rate_limiter(app, name).acquire()
        except ProviderError as exc:
            error = exc
        except Exception as exc:  # not handed over: a transient failure
            log.exception("message %s: error before the call to %s", task.id, name)
            error = TransientProviderError(
                name, f"erreur interne avant l'envoi ({type(exc).__name__}: {exc})", "internal"
            )
        else:
            try:
                if task.channel == CHANNEL_SMS:
                    result = provider.send_sms(task.outbound)
                else:
                    result = provider.send_email(task.outbound)
            except ProviderError as exc:
                error = exc
            except Exception as exc:  # the adapter broke its contract
                log.exception("message %s: %s raised outside the error contract", task.id, name)
                error = TransientProviderError(
                    name, f"issue inconnue de l'envoi ({type(exc).__name__}: {exc})", "unknown"
                )
                return _Outcome(task.id, "unknown", attempts, provider=name, error=error)
            else:
                return _Outcome(task.id, "sent", attempts, provider=name, send_result=result)
        last_error = error
        if not error.transient:
            return _Outcome(task.id, "failed", attempts, provider=name, error=error)
        next_index = attempts // per_provider
        if next_index >= len(task.chain):
            return _Outcome(task.id, "failed", attempts, provider=name, error=error)
        if next_index != index:
            attempts += 1  # fail over to the next provider now
            continue
        return _Outcome(
            task.id,
            "retry",
            attempts,
            provider=name,
            error=error,
            backoff_step=attempts - index * per_provider,
        )


def backoff(step: int, base: float, cap: float) -> timedelta:
    """Delay before the next attempt on the same provider: base, 2*base, 4*base... capped."""
    return timedelta(seconds=min(cap, base * (2 ** max(0, step - 1))))


def _write_back(outcomes: list[_Outcome], counts: dict[str, int]) -> None:
    """Record a chunk of outcomes in a few statements (one transaction)."""
    config = current_app.config
    now = utcnow()
    table = Message.__table__
    facts = []
    for o in outcomes:
        error = o.error
        facts.append(
            {
                "b_id": o.id,
                "b_attempts": o.attempts,
                "b_provider": o.provider,
                "b_pmid": o.send_result.provider_message_id if o.send_result else None,
                "b_segments": o.send_result.segments if o.send_result else None,
                "b_error": str(error)[:2000] if error else None,
                "b_code": ((error.code or "")[:32] or None) if error else None,
                "b_sent_at": now if o.result == "sent" else None,
            }
        )
    # Facts: true whatever the status became meanwhile (a receipt may be faster than us).
    db.session.execute(
        update(table)
        .where(table.c.id == bindparam("b_id"))
        .values(
            attempts=bindparam("b_attempts"),
            provider=func.coalesce(bindparam("b_provider"), table.c.provider),
            provider_message_id=func.coalesce(bindparam("b_pmid"), table.c.provider_message_id),
            segments=func.coalesce(bindparam("b_segments"), table.c.segments),
            last_error=func.coalesce(bindparam("b_error"), table.c.last_error),
            error_code=func.coalesce(bindparam("b_code"), table.c.error_code),
            # A receipt may already have ended it (undelivered, failed): it was sent all the same.
            sent_at=func.coalesce(
                table.c.sent_at, bindparam("b_sent_at", type_=table.c.sent_at.type)
            ),
        )
        .execution_options(synchronize_session=False),
        facts,
    )
    by_result: dict[str, list[_Outcome]] = {}
    for o in outcomes:
        by_result.setdefault(o.result, []).append(o)
    for key, group in by_result.items():
        _count(counts, key, len(group))

    bulk_transition([o.id for o in by_result.get("sent", [])], S.SENT, at=now)

    retries: dict[datetime, list[_Outcome]] = {}
    for o in by_result.get("retry", []):
        at = now + backoff(
            o.backoff_step, config["RETRY_BASE_SECONDS"], config["RETRY_MAX_SECONDS"]
        )
        retries.setdefault(at, []).append(o)
    for at, group in retries.items():
        bulk_reschedule(
            [o.id for o in group],
            at,
            at=now,
            details={o.id: f"erreur temporaire, nouvel essai : {o.error}" for o in group},
        )
    deferred = by_result.get("deferred", [])
    bulk_reschedule(
        [o.id for o in deferred],
        now,
        at=now,
        details={o.id: "lot trop long : renvoyé au prochain passage" for o in deferred},
    )

    failed = by_result.get("failed", [])
    failed_ids = bulk_transition(
        [o.id for o in failed], S.FAILED, at=now, details={o.id: str(o.error) for o in failed}
    )
    opted_out = [o.id for o in failed if o.error is not None and o.error.opted_out]
    if opted_out:
        usager_ids = select(table.c.usager_id).where(table.c.id.in_(opted_out))
        newly = db.session.scalars(
            update(Usager)
            .where(Usager.id.in_(usager_ids), Usager.sms_opted_out.is_not(True))
            .values(sms_opted_out=True)
            .returning(Usager.id)
            .execution_options(synchronize_session=False)
        ).all()
        events.usagers_opted_out(newly, now)
    if failed_ids:
        db.session.expire_all()
        for sms in db.session.scalars(
            select(Message).where(Message.id.in_(failed_ids), Message.channel == CHANNEL_SMS)
        ):
            if plan_email_fallback(sms, now) is not None:
                _count(counts, "fallback")
