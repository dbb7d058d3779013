"""Dispatch: turn due ``scheduled`` rows into ``queued`` rows and send jobs; recover lost work.

The database is the source of truth. A message is due when its row says
``scheduled`` and ``send_at <= now``; the dispatcher moves due rows to
``queued`` and commits *before* it enqueues the send jobs, so that:

* several dispatchers (schedulers) at once never queue the same row twice: on
  PostgreSQL the due rows are selected ``FOR UPDATE SKIP LOCKED`` (a second
  dispatcher skips the rows the first one holds instead of waiting), and the
  move itself is a conditional ``UPDATE ... WHERE status = 'scheduled'`` that
  only the first dispatcher wins (SQLite serialises writers);
* a job lost with Redis, or with the process of the embedded queue, is not a
  message lost: :func:`reconcile_stale` finds rows ``queued`` for too long and
  queues them again. A job that runs twice sends nothing twice, because the
  send job claims rows ``queued -> sending`` atomically (:mod:`scheduler.jobs`).

Quiet hours are re-checked here (:func:`scheduler.policy.is_sendable_now`): an
SMS found due inside quiet hours (late queue, scheduler down for the night)
stays ``scheduled`` with its ``send_at`` pushed to the morning.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from itertools import groupby

from flask import current_app
from sqlalchemy import select, update

from gateway.extensions import db
from gateway.models import InboundSms, Message, Organisation
from gateway.planning import quiet_hours
from gateway.timeutil import require_aware, utcnow
from providers import status as S

from . import policy
from .queue import enqueue, enqueue_many
from .transitions import bulk_transition, reschedule

log = logging.getLogger(__name__)

SEND_JOB = "scheduler.jobs.send_messages"
# How many times RQ runs a send job again when it raised or its worker died
# (scheduler.queue.requeue_abandoned): safe, a run claims only rows still queued.
SEND_JOB_RETRIES = 3


def _lock_for_dispatch(query):
    """``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite locks the whole database on write."""
    if db.engine.dialect.name == "postgresql":
        return query.with_for_update(skip_locked=True)
    return query


def dispatch_due(
    now: datetime | None = None, limit: int | None = None, due_before: datetime | None = None
) -> int:
    """Queue up to ``limit`` messages due at ``due_before`` (default ``now``); return how many.

    ``now`` is the clock (quiet hours, ``queued_at``); ``due_before`` lets
    ``gateway dispatch-due --at`` queue what will be due later, while the
    quiet-hours check still looks at the real time the SMS would leave.
    Messages are queued in send jobs of ``SEND_BATCH_SIZE`` ids, one
    organisation and channel per job (one provider chain per job).
    """
    config = current_app.config
    now = require_aware(now or utcnow())
    cutoff = require_aware(due_before or now)
    limit = limit or config["DISPATCH_LIMIT"]
    table = Message.__table__
    query = (
        select(table.c.id, table.c.organisation_id, table.c.channel, table.c.kind)
        .where(table.c.status == S.SCHEDULED, table.c.send_at <= cutoff)
        .order_by(table.c.send_at)
        .limit(limit)
    )
    rows = db.session.execute(_lock_for_dispatch(query)).all()
    if not rows:
        db.session.rollback()
        return 0
    orgs = {
        org.id: org
        for org in db.session.scalars(
            select(Organisation).where(Organisation.id.in_({r.organisation_id for r in rows}))
        )
    }
    held: dict[datetime, list[int]] = {}
    ready = []
    for row in rows:
        org = orgs[row.organisation_id]
        wait_until = policy.is_sendable_now(row.kind, row.channel, now, quiet_hours(org), org.tz)
        if wait_until is None:
            ready.append(row)
        else:
            held.setdefault(wait_until, []).append(row.id)
    for until, ids in held.items():
        # Not a status change: the row stays scheduled, only later.
        db.session.execute(
            update(table)
            .where(table.c.id.in_(ids), table.c.status == S.SCHEDULED)
            .values(send_at=until)
        )
    moved = set(
        bulk_transition(
            [r.id for r in ready], S.QUEUED, at=now, from_statuses=(S.SCHEDULED,), queued_at=now
        )
    )
    db.session.commit()
    if held:
        log.info("dispatch: %d SMS held by quiet hours", sum(len(v) for v in held.values()))
    _enqueue_send_jobs([r for r in ready if r.id in moved])
    return len(moved)


def _enqueue_send_jobs(rows) -> int:
    """One send job per ``SEND_BATCH_SIZE`` ids of the same organisation and channel."""
    config = current_app.config
    size = max(1, int(config["SEND_BATCH_SIZE"]))
    batches: list[tuple] = []
    ordered = sorted(rows, key=lambda r: (r.organisation_id, r.channel, r.id))
    for _, group in groupby(ordered, key=lambda r: (r.organisation_id, r.channel)):
        ids = [r.id for r in group]
        batches.extend(([*ids[i : i + size]],) for i in range(0, len(ids), size))
    return enqueue_many(
        SEND_JOB, batches, job_timeout=int(config["SEND_JOB_TIMEOUT"]), retries=SEND_JOB_RETRIES
    )


def dispatch_all_due(now: datetime | None = None, due_before: datetime | None = None) -> int:
    """:func:`dispatch_due` until nothing due is left; returns the total queued."""
    total = 0
    limit = current_app.config["DISPATCH_LIMIT"]
    while True:
        count = dispatch_due(now, limit=limit, due_before=due_before)
        total += count
        if count < limit:
            return total


def reconcile_stale(now: datetime | None = None) -> dict[str, int]:
    """Recover the work of dead workers and lost jobs; returns what it did.

    * ``sending`` for longer than ``SENDING_TIMEOUT`` (default 10 min) with no
      receipt: the worker died mid-batch (a receipt would have moved the row
      on). The row goes back to ``scheduled`` for now, keeping its attempts,
      so it is retried (and fails over when its attempts say so). Duplicate
      risk, by design bounded: if the provider had accepted the SMS but the
      worker died before recording it *and* no receipt came within the
      timeout, the usager gets it twice. That can only concern the rows the
      killed worker had claimed: a send job claims one window at a time
      (``SMS_CONCURRENCY`` + ``WRITE_BACK_EVERY``, :mod:`scheduler.jobs`), the
      rest of its batch stays ``queued`` and goes again within about a minute
      (:func:`scheduler.queue.requeue_abandoned`); a warm shutdown (SIGTERM)
      finishes the batch first, and a worker restarted between batches leaves
      no ``sending`` row behind.
      ``SEND_JOB_TIMEOUT`` must stay well below ``SENDING_TIMEOUT``: a job
      still legitimately running is never taken for a dead one.
    * ``queued`` for longer than ``QUEUED_TIMEOUT`` (default 5 min): its job
      was lost (Redis flushed or restarted without persistence, embedded
      process restarted). A new send job is queued; if the old one still
      exists, whichever runs second claims nothing.
    * an inbound SMS stored but not acted on ``QUEUED_TIMEOUT`` after it
      arrived (and within the last day): its job was lost or failed after the
      webhook answered, so the provider will not send it again. Its job is
      queued again; acting is claimed, so it is acted on once whatever runs.
      The part of a long SMS still waiting for the others is left to wait.
    """
    config = current_app.config
    now = require_aware(now or utcnow())
    stale_before = now - timedelta(seconds=config["SENDING_TIMEOUT"])
    stale = db.session.scalars(
        _lock_for_dispatch(
            select(Message)
            .where(Message.status == S.SENDING, Message.status_changed_at < stale_before)
            .limit(config["DISPATCH_LIMIT"])
        )
    ).all()
    for message in stale:
        reschedule(message, now, "envoi interrompu (worker arrêté ?) : nouvel essai", at=now)
    db.session.commit()

    lost_before = now - timedelta(seconds=config["QUEUED_TIMEOUT"])
    lost = requeue_queued(lost_before, now)
    inbound = _requeue_unhandled_inbound(now, lost_before)
    if stale or lost or inbound:
        log.warning(
            "reconcile: %d stale sending rescheduled, %d lost queued re-queued, "
            "%d inbound SMS re-queued",
            len(stale),
            lost,
            inbound,
        )
    return {"rescheduled": len(stale), "requeued": lost, "inbound_requeued": inbound}


def requeue_queued(before: datetime, now: datetime | None = None) -> int:
    """New send jobs for the rows ``queued`` since before ``before`` (their job is lost).

    Safe whatever still holds them: a send job claims only rows still
    ``queued``, so of two jobs with the same ids one sends, the other finds
    nothing. ``queued_at`` restarts the clock, so the same rows are not
    re-queued on every reconcile. Returns how many rows were queued again.
    """
    now = require_aware(now or utcnow())
    table = Message.__table__
    lost = db.session.execute(
        _lock_for_dispatch(
            select(table.c.id, table.c.organisation_id, table.c.channel)
            .where(table.c.status == S.QUEUED, table.c.queued_at < require_aware(before))
            .limit(current_app.config["DISPATCH_LIMIT"])
        )
    ).all()
    if lost:
        db.session.execute(
            update(table)
            .where(table.c.id.in_([r.id for r in lost]), table.c.status == S.QUEUED)
            .values(queued_at=now)
        )
    db.session.commit()
    _enqueue_send_jobs(lost)
    return len(lost)


INBOUND_JOB = "webhooks.inbound.process_inbound_job"
INBOUND_RETRY_WINDOW = timedelta(days=1)


def _requeue_unhandled_inbound(now: datetime, lost_before: datetime) -> int:
    """Queue again the inbound SMS nobody acted on (see :func:`reconcile_stale`)."""
    rows = db.session.execute(
        select(
            InboundSms.id,
            InboundSms.provider,
            InboundSms.from_number,
            InboundSms.concat_ref,
            InboundSms.concat_part,
            InboundSms.concat_total,
        )
        .where(
            InboundSms.action.is_(None),
            InboundSms.received_at < lost_before,
            InboundSms.received_at >= now - INBOUND_RETRY_WINDOW,
        )
        .order_by(InboundSms.id)
        .limit(current_app.config["DISPATCH_LIMIT"])
    ).all()
    db.session.commit()
    ids, parts = [], {}
    for row in rows:
        if row.concat_ref and (row.concat_total or 1) > 1:
            parts.setdefault((row.provider, row.from_number, row.concat_ref), []).append(row)
        else:
            ids.append(row.id)
    for group in parts.values():
        if len({r.concat_part for r in group}) >= (group[0].concat_total or 1):
            ids.append(group[0].id)  # complete: one job joins and acts on all the parts
    for inbound_id in ids:
        enqueue(INBOUND_JOB, inbound_id)
    return len(ids)
