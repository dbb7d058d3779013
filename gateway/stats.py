"""Public statistics: ``GET /stats`` (HTML) and ``GET /stats.json`` (the same figures).

Everything is aggregated in SQL, four queries in all (rdvs, messages, freed
slots of the waiting list, confirmations), each grouped by month. Month
buckets are computed in Python in the reporting time zone (the
organisation's, or Europe/Paris for all organisations together) and handed
to SQL as a ``CASE`` over timestamp boundaries: exact across daylight-saving
changes, the same SQL on SQLite and PostgreSQL, and the ``WHERE`` on the raw
timestamp column can use its index.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from statistics import median
from zoneinfo import ZoneInfo

from babel.dates import format_date
from flask import Blueprint, abort, jsonify, make_response, render_template, request
from sqlalchemy import case, exists, func, literal, select

from .extensions import db
from .labels import VIA_COLUMN_LABELS
from .models import (
    BOOKED_VIA,
    CANCELLED_VIA,
    CHANNELS,
    RDV_CANCELLED_STATUSES,
    RDV_NOSHOW,
    RDV_SEEN,
    RDV_STATUSES,
    RDV_UNKNOWN,
    FreedSlot,
    Message,
    Organisation,
    Rdv,
    UTCDateTime,
)
from .timeutil import UTC, localize, utcnow

bp = Blueprint("stats", __name__)

DEFAULT_TIME_ZONE = "Europe/Paris"
DEFAULT_MONTHS = 12
MAX_MONTHS = 36
# Public figures that change slowly: let browsers and proxies keep them a while.
CACHE_SECONDS = 300


@dataclass(frozen=True)
class Window:
    """Consecutive calendar months in one time zone, with their UTC boundaries."""

    tz: ZoneInfo
    months: list[str]  # "YYYY-MM", oldest first
    starts: list[datetime]  # aware start of each month, same order
    end: datetime  # aware start of the month after the last one

    @property
    def start(self) -> datetime:
        return self.starts[0]


def _add_months(day: date, count: int) -> date:
    index = day.year * 12 + (day.month - 1) + count
    return date(index // 12, index % 12 + 1, 1)


def month_window(now: datetime, tz: ZoneInfo, past_months: int) -> Window:
    """``past_months`` months ending with the current one, plus the next month
    (rdvs already booked for it are worth seeing)."""
    first_of_this_month = now.astimezone(tz).date().replace(day=1)
    days = [_add_months(first_of_this_month, i) for i in range(-(past_months - 1), 2)]
    starts = [localize(datetime.combine(d, datetime.min.time()), tz) for d in days]
    end = localize(datetime.combine(_add_months(days[-1], 1), datetime.min.time()), tz)
    return Window(tz, [d.strftime("%Y-%m") for d in days], starts, end)


def _month_bucket(column, window: Window):
    """SQL ``CASE`` giving the index in ``window.months`` of the month of ``column``.

    A small integer, not the "YYYY-MM" text: cheaper to compare and group on
    a million rows.
    """
    whens = [
        (column >= literal(start, UTCDateTime), literal(index))
        for index, start in reversed(list(enumerate(window.starts)))
    ]
    return case(*whens, else_=literal(None))


def _rate(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def rdv_statement(organisation_id: int | None, window: Window, now: datetime):
    """Rdv counts by month, status, cancellation channel, who booked and "has started"."""
    started = case((Rdv.starts_at <= literal(now, UTCDateTime), 1), else_=0)
    inner = select(
        _month_bucket(Rdv.starts_at, window).label("month"),
        Rdv.status.label("status"),
        Rdv.cancelled_via.label("via"),
        Rdv.booked_via.label("booked_via"),
        started.label("started"),
    ).where(
        Rdv.starts_at >= literal(window.start, UTCDateTime),
        Rdv.starts_at < literal(window.end, UTCDateTime),
    )
    if organisation_id is not None:
        inner = inner.where(Rdv.organisation_id == organisation_id)
    sub = inner.subquery()
    columns = (sub.c.month, sub.c.status, sub.c.via, sub.c.booked_via, sub.c.started)
    return select(*columns, func.count()).group_by(*columns)


def _rdv_figures(organisation_id: int | None, window: Window, now: datetime) -> dict:
    rows = db.session.execute(rdv_statement(organisation_id, window, now)).all()

    def empty_month(month):
        return {
            "month": month,
            **dict.fromkeys(RDV_STATUSES, 0),
            "total": 0,
            "past_unrecorded": 0,
            **{f"booked_{via}": 0 for via in BOOKED_VIA},
        }

    by_month = {m: empty_month(m) for m in window.months}
    cancellations = {m: {"month": m, **dict.fromkeys(CANCELLED_VIA, 0)} for m in window.months}
    for index, status, via, booked_via, was_started, count in rows:
        month = window.months[index] if index is not None else None
        if month not in by_month or status not in RDV_STATUSES:
            continue
        figures = by_month[month]
        figures[status] += count
        figures["total"] += count
        if status == RDV_UNKNOWN and was_started:
            figures["past_unrecorded"] += count
        if booked_via in BOOKED_VIA:
            figures[f"booked_{booked_via}"] += count
        if via in CANCELLED_VIA:
            cancellations[month][via] += count

    totals = empty_month(None)
    del totals["month"]
    for figures in by_month.values():
        figures["noshow_rate"] = _rate(figures[RDV_NOSHOW], figures[RDV_SEEN] + figures[RDV_NOSHOW])
        for key in totals:
            totals[key] += figures[key]
    totals["noshow_rate"] = _rate(totals[RDV_NOSHOW], totals[RDV_SEEN] + totals[RDV_NOSHOW])
    # The share of rdvs booked online (cancelled ones included: they were booked).
    for figures in (*by_month.values(), totals):
        figures["online_share"] = _rate(figures["booked_online"], figures["total"])
    by_via = {via: sum(c[via] for c in cancellations.values()) for via in CANCELLED_VIA}
    return {
        "rdvs": {"by_month": list(by_month.values()), "totals": totals},
        "cancellations": {
            "by_via": by_via,
            "total": sum(by_via.values()),
            "by_month": list(cancellations.values()),
        },
    }


def message_statement(organisation_id: int | None, window: Window):
    """Messages the provider accepted, by month of sending, channel, provider and status."""

    # "Sent" means the provider accepted the message: it has a sent_at
    # (scheduler.transitions sets it on ``sent`` and on ``delivered``).
    def count_status(status: str):
        return func.sum(case((Message.status == status, 1), else_=0))

    # Statuses counted with conditional sums rather than grouped on: few groups,
    # so PostgreSQL hashes them in memory instead of sorting a million rows.
    month = _month_bucket(Message.sent_at, window)
    statement = (
        select(
            month,
            Message.channel,
            Message.provider,
            func.count(),
            count_status("delivered"),
            count_status("undelivered"),
            count_status("failed"),
            func.coalesce(func.sum(Message.segments), 0),
        )
        .where(
            Message.sent_at >= literal(window.start, UTCDateTime),
            Message.sent_at < literal(window.end, UTCDateTime),
        )
        .group_by(month, Message.channel, Message.provider)
    )
    if organisation_id is not None:
        statement = statement.where(Message.organisation_id == organisation_id)
    return statement


def _message_figures(organisation_id: int | None, window: Window) -> dict:
    rows = db.session.execute(message_statement(organisation_id, window)).all()

    def counters():
        return {"sent": 0, "delivered": 0, "undelivered": 0, "failed": 0, "segments": 0}

    per_provider: dict[tuple[str, str], dict] = defaultdict(counters)
    per_month = {m: {c: counters() for c in CHANNELS} for m in window.months}
    for index, channel, provider, sent, delivered, undelivered, failed, segments in rows:
        month = window.months[index] if index is not None else None
        if month not in per_month or channel not in CHANNELS:
            continue
        for figures in (per_provider[(channel, provider or "")], per_month[month][channel]):
            figures["sent"] += sent
            figures["delivered"] += int(delivered)
            figures["undelivered"] += int(undelivered)
            figures["failed"] += int(failed)
            if channel == "sms":
                figures["segments"] += int(segments)

    def finish(channel: str, figures: dict) -> dict:
        figures = dict(figures, delivery_rate=_rate(figures["delivered"], figures["sent"]))
        if channel != "sms":
            del figures["segments"]  # only SMS are billed by the segment
        return figures

    by_provider = [
        {"channel": channel, "provider": provider or None, **finish(channel, figures)}
        for (channel, provider), figures in sorted(per_provider.items())
    ]
    by_month = [
        {"month": month, **{channel: finish(channel, figures[channel]) for channel in CHANNELS}}
        for month, figures in per_month.items()
    ]
    sent = sum(p["sent"] for p in by_provider)
    delivered = sum(p["delivered"] for p in by_provider)
    return {
        "messages": {
            "by_channel_provider": by_provider,
            "by_month": by_month,
            "totals": {
                "sent": sent,
                "delivered": delivered,
                "delivery_rate": _rate(delivered, sent),
                "sms_segments": sum(
                    p.get("segments", 0) for p in by_provider if p["channel"] == "sms"
                ),
            },
        }
    }


# --- the no-show loop (SPEC section 5): freed slots re-filled, confirmations ---

REMINDER_KINDS = ("reminder", "second_reminder")


def freed_slot_statement(organisation_id: int | None, window: Window):
    """Freed slots by month of freeing, with when they were re-filled.

    A slot is re-filled when the gateway saw it taken (waiting list, a move:
    ``filled_at``) or when a booking of the same agent overlapping it was
    made after it was freed (any surface: agent form, API, online).
    """
    booked_after = (
        select(func.min(Rdv.created_at))
        .where(
            Rdv.agent_id == FreedSlot.agent_id,
            Rdv.starts_at < FreedSlot.ends_at,
            Rdv.ends_at > FreedSlot.starts_at,
            Rdv.created_at >= FreedSlot.freed_at,
        )
        .correlate(FreedSlot)
        .scalar_subquery()
    )
    statement = select(
        _month_bucket(FreedSlot.freed_at, window),
        FreedSlot.freed_by_usager,
        FreedSlot.freed_at,
        FreedSlot.filled_at,
        FreedSlot.filled_via,
        booked_after,
    ).where(
        FreedSlot.freed_at >= literal(window.start, UTCDateTime),
        FreedSlot.freed_at < literal(window.end, UTCDateTime),
    )
    if organisation_id is not None:
        statement = statement.where(FreedSlot.organisation_id == organisation_id)
    return statement


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _sum_months(by_month: dict, zeros: dict) -> dict:
    """The sum of every month's counters (``zeros``: the counters, and a "month" to drop)."""
    del zeros["month"]
    for figures in by_month.values():
        for key in zeros:
            zeros[key] += figures[key]
    return zeros


def _waitlist_figures(organisation_id: int | None, window: Window) -> dict:
    def empty(month):
        return {
            "month": month,
            "freed": 0,
            "freed_by_usagers": 0,
            "refilled_by_waitlist": 0,
            "refilled": 0,
        }

    by_month = {m: empty(m) for m in window.months}
    delays: dict[str | None, list[float]] = defaultdict(list)
    rows = db.session.execute(freed_slot_statement(organisation_id, window)).all()
    for index, by_usager, freed_at, filled_at, filled_via, booked_at in rows:
        month = window.months[index] if index is not None else None
        if month not in by_month:
            continue
        figures = by_month[month]
        figures["freed"] += 1
        figures["freed_by_usagers"] += 1 if by_usager else 0
        figures["refilled_by_waitlist"] += 1 if filled_via == "waitlist" else 0
        times = [t for t in (_aware(filled_at), _aware(booked_at)) if t is not None]
        if times:
            figures["refilled"] += 1
            minutes = (min(times) - _aware(freed_at)).total_seconds() / 60
            delays[month].append(minutes)
            delays[None].append(minutes)

    def finish(figures: dict, month: str | None) -> dict:
        values = delays.get(month)
        figures["median_refill_minutes"] = round(median(values), 1) if values else None
        return figures

    totals = _sum_months(by_month, empty(None))
    return {
        "waitlist": {
            "by_month": [finish(f, m) for m, f in by_month.items()],
            "totals": finish(totals, None),
        }
    }


def confirmation_statement(organisation_id: int | None, window: Window, now: datetime):
    """Rdvs by month, "an SMS reminder was delivered", "confirmed with OUI", status, started."""
    reminded = exists(
        select(Message.id).where(
            Message.rdv_id == Rdv.id,
            Message.kind.in_(REMINDER_KINDS),
            Message.channel == "sms",
            Message.status == "delivered",
        )
    )
    inner = select(
        _month_bucket(Rdv.starts_at, window).label("month"),
        case((reminded, 1), else_=0).label("reminded"),
        case((Rdv.confirmed_at.is_not(None), 1), else_=0).label("confirmed"),
        Rdv.status.label("status"),
    ).where(
        Rdv.starts_at >= literal(window.start, UTCDateTime),
        Rdv.starts_at < literal(window.end, UTCDateTime),
        Rdv.status.not_in(RDV_CANCELLED_STATUSES),
    )
    if organisation_id is not None:
        inner = inner.where(Rdv.organisation_id == organisation_id)
    sub = inner.subquery()
    return select(
        sub.c.month, sub.c.reminded, sub.c.confirmed, sub.c.status, func.count()
    ).group_by(sub.c.month, sub.c.reminded, sub.c.confirmed, sub.c.status)


def _confirmation_figures(organisation_id: int | None, window: Window, now: datetime) -> dict:
    def empty(month):
        return {
            "month": month,
            "reminded": 0,
            "confirmed_after_reminder": 0,
            "seen_confirmed": 0,
            "noshow_confirmed": 0,
            "seen_unconfirmed": 0,
            "noshow_unconfirmed": 0,
        }

    by_month = {m: empty(m) for m in window.months}
    rows = db.session.execute(confirmation_statement(organisation_id, window, now)).all()
    for index, reminded, confirmed, status, count in rows:
        month = window.months[index] if index is not None else None
        if month not in by_month:
            continue
        figures = by_month[month]
        if reminded:
            figures["reminded"] += count
            figures["confirmed_after_reminder"] += count if confirmed else 0
        if status in (RDV_SEEN, RDV_NOSHOW):
            figures[f"{status}_{'confirmed' if confirmed else 'unconfirmed'}"] += count

    def finish(f: dict) -> dict:
        f["confirmation_rate"] = _rate(f["confirmed_after_reminder"], f["reminded"])
        for group in ("confirmed", "unconfirmed"):
            f[f"noshow_rate_{group}"] = _rate(
                f[f"noshow_{group}"], f[f"seen_{group}"] + f[f"noshow_{group}"]
            )
        return f

    totals = _sum_months(by_month, empty(None))
    return {
        "confirmations": {
            "by_month": [finish(f) for f in by_month.values()],
            "totals": finish(totals),
        }
    }


def compute_stats(
    organisation: Organisation | None,
    *,
    now: datetime | None = None,
    past_months: int = DEFAULT_MONTHS,
) -> dict:
    """Every figure of the stats page, for one organisation or (``None``) all of them."""
    now = now or utcnow()
    tz = organisation.tz if organisation is not None else ZoneInfo(DEFAULT_TIME_ZONE)
    window = month_window(now, tz, past_months)
    org_id = organisation.id if organisation is not None else None
    return {
        "organisation": {"id": organisation.id, "name": organisation.name}
        if organisation
        else None,
        "time_zone": tz.key,
        "generated_at": now.astimezone(tz).isoformat(timespec="seconds"),
        "from": window.start.isoformat(),
        "to": window.end.isoformat(),
        "months": window.months,
        **_rdv_figures(org_id, window, now),
        **_message_figures(org_id, window),
        **_waitlist_figures(org_id, window),
        **_confirmation_figures(org_id, window, now),
    }


def _parse_request() -> tuple[Organisation | None, int]:
    raw_org = request.args.get("organisation_id", "").strip()
    organisation = None
    if raw_org and raw_org != "all":
        if not raw_org.isdigit() or len(raw_org) > 12:
            abort(400, "organisation_id doit être un identifiant numérique.")
        organisation = db.session.get(Organisation, int(raw_org))
        if organisation is None:
            abort(404, "Organisation introuvable.")
    raw_months = request.args.get("months", "").strip()
    months = DEFAULT_MONTHS
    if raw_months:
        if not raw_months.isdigit() or not 1 <= int(raw_months) <= MAX_MONTHS:
            abort(400, f"months doit être un entier entre 1 et {MAX_MONTHS}.")
        months = int(raw_months)
    return organisation, months


def _cached(response):
    response.headers["Cache-Control"] = f"public, max-age={CACHE_SECONDS}"
    return response


@bp.get("/stats.json")
def stats_json():
    organisation, months = _parse_request()
    return _cached(jsonify(compute_stats(organisation, past_months=months)))


@bp.get("/stats")
def stats_page():
    organisation, months = _parse_request()
    data = compute_stats(organisation, past_months=months)
    organisations = db.session.execute(
        select(Organisation.id, Organisation.name).order_by(Organisation.name)
    ).all()
    month_labels = {
        m: format_date(date.fromisoformat(m + "-01"), "MMM y", locale="fr") for m in data["months"]
    }
    response = render_template(
        "pages/stats.html",
        data=data,
        organisations=organisations,
        selected=organisation,
        months_param=months,
        month_labels=month_labels,
        RDV_STATUSES=RDV_STATUSES,
        CANCELLED_VIA=CANCELLED_VIA,
        VIA_COLUMN_LABELS=VIA_COLUMN_LABELS,
    )
    return _cached(make_response(response))
