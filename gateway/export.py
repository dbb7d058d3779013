"""Rdvs of a period: the API's pages (``GET /api/v1/rdvs``) and the agents' CSV/XLSX export.

Both read rdvs in one stable order, (``starts_at``, ``id``), by keyset: a
page or a chunk starts strictly after the last (start, id) seen, so a
booking made meanwhile never shifts a page and nothing is read twice. The
API's cursor is that pair, opaque to clients (base64 of JSON).

The export streams: rows are read in chunks of :data:`CHUNK` rdvs in a
session of its own (expunged after each chunk), CSV is written line by line
to the response, and XLSX goes through XlsxWriter's ``constant_memory`` mode
into a temporary file that is then streamed and deleted. Memory stays flat
whatever the period; on PostgreSQL the export reads one snapshot
(REPEATABLE READ), so a long export is consistent.

Each row: the rdv, its usagers, motif, lieu, agent, status, how it was
booked (``booked_via``, when the model has it) and cancelled, and the
outcome of each reminder, with its email fallback when the SMS did not arrive.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
import os
import tempfile
from collections.abc import Iterator
from datetime import datetime, timedelta

from flask import Blueprint, Response, abort, request, stream_with_context
from flask_login import current_user, login_required
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session, selectinload

from .errors import ValidationFailed
from .extensions import db
from .models import Participation, Rdv
from .timeutil import UTC, localize, parse_date, parse_iso

CHUNK = 500
MAX_EXPORT_DAYS = 400


# --- keyset pages ---


def _range_query(organisation_id: int, start, end, status=None):
    query = select(Rdv).where(Rdv.organisation_id == organisation_id)
    if start is not None:
        query = query.where(Rdv.starts_at >= start)
    if end is not None:
        query = query.where(Rdv.starts_at < end)
    if status is not None:
        query = query.where(Rdv.status == status)
    return query.order_by(Rdv.starts_at, Rdv.id)


def _after(query, last: tuple[datetime, int] | None):
    if last is None:
        return query
    at, rdv_id = last
    return query.where(or_(Rdv.starts_at > at, and_(Rdv.starts_at == at, Rdv.id > rdv_id)))


def encode_cursor(rdv: Rdv) -> str:
    raw = json.dumps([rdv.starts_at.astimezone(UTC).isoformat(), rdv.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """The (start, id) a cursor carries; :class:`ValidationFailed` if it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, rdv_id = json.loads(raw)
        parsed = datetime.fromisoformat(at)
        if parsed.tzinfo is None or not isinstance(rdv_id, int) or isinstance(rdv_id, bool):
            raise ValueError
        return parsed, rdv_id
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError, RecursionError):
        raise ValidationFailed(
            "Curseur invalide : reprenez le next_cursor de la page précédente.",
            fields={"cursor": "Curseur invalide."},
        ) from None


def rdv_page(
    organisation, *, start=None, end=None, status=None, cursor=None, limit=100
) -> tuple[list[Rdv], str | None]:
    """One page of the organisation's rdvs and the cursor of the next (None at the end)."""
    if start is not None and end is not None and end <= start:
        raise ValidationFailed("« to » doit être après « from ».", fields={"to": "Après « from »."})
    query = _after(
        _range_query(organisation.id, start, end, status),
        decode_cursor(cursor) if cursor else None,
    )
    rows = list(
        db.session.scalars(
            query.options(selectinload(Rdv.participations), selectinload(Rdv.messages)).limit(
                limit + 1
            )
        )
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (encode_cursor(rows[-1]) if more and rows else None)


def iter_rdvs(organisation_id: int, start, end) -> Iterator[Rdv]:
    """Every rdv starting in [start, end), with what the export shows, chunk by chunk."""
    with Session(db.engine) as session:
        if db.engine.dialect.name == "postgresql":
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        last = None
        while True:
            chunk = list(
                session.scalars(
                    _after(_range_query(organisation_id, start, end), last)
                    .options(
                        selectinload(Rdv.participations).selectinload(Participation.usager),
                        selectinload(Rdv.motif),
                        selectinload(Rdv.lieu),
                        selectinload(Rdv.agent),
                        selectinload(Rdv.cancelled_by_agent),
                        selectinload(Rdv.messages),
                        selectinload(Rdv.organisation),
                    )
                    .limit(CHUNK)
                )
            )
            if not chunk:
                return
            yield from chunk
            last = (chunk[-1].starts_at, chunk[-1].id)
            session.expunge_all()
            if len(chunk) < CHUNK:
                return


# --- rows ---

HEADERS = (
    "N° rdv",
    "Date",
    "Heure",
    "Durée (min)",
    "Usager(s)",
    "Téléphone(s)",
    "Motif",
    "Service",
    "Lieu",
    "Agent",
    "Statut",
    "Réservé via",
    "Annulé via",
    "Annulé par",
    "Annulé le",
    "Venue confirmée le",
    "Rappels",
)


REMINDER_KINDS = ("reminder", "second_reminder")


def reminder_outcomes(rdv: Rdv, tz) -> str:
    """Each reminder: channel, time, outcome, and the email fallback of an SMS that failed."""
    from .labels import MESSAGE_STATUS_LABELS

    fallbacks = {m.fallback_of_id: m for m in rdv.messages if m.fallback_of_id is not None}
    parts = []
    for m in rdv.messages:
        if m.kind not in REMINDER_KINDS or m.fallback_of_id is not None:
            continue
        channel = "SMS" if m.channel == "sms" else "E-mail"
        second = " (second rappel)" if m.kind == "second_reminder" else ""
        text = (
            f"{channel}{second} {m.send_at.astimezone(tz).strftime('%d/%m %H:%M')} : "
            f"{MESSAGE_STATUS_LABELS.get(m.status, m.status).lower()}"
        )
        fallback = fallbacks.get(m.id)
        if fallback is not None:
            label = MESSAGE_STATUS_LABELS.get(fallback.status, fallback.status)
            text += f" → repli e-mail : {label.lower()}"
        parts.append(text)
    return " ; ".join(parts)


def export_row(rdv: Rdv) -> list:
    """One line of the export, local times as naive datetimes (for XLSX) or text."""
    from .labels import BOOKED_VIA_LABELS, STATUS_LABELS, VIA_LABELS

    tz = rdv.organisation.tz
    start = rdv.starts_at.astimezone(tz)
    booked_via = getattr(rdv, "booked_via", None)
    return [
        rdv.id,
        start.date(),
        start.strftime("%H:%M"),
        rdv.duration_minutes,
        ", ".join(u.full_name for u in rdv.usagers),
        ", ".join(u.phone or "" for u in rdv.usagers if u.phone),
        rdv.motif.name,
        rdv.motif.service,
        rdv.lieu.name,
        rdv.agent.name,
        STATUS_LABELS.get(rdv.status, rdv.status),
        BOOKED_VIA_LABELS.get(booked_via, booked_via or ""),
        VIA_LABELS.get(rdv.cancelled_via, rdv.cancelled_via or ""),
        rdv.cancelled_by_agent.name if rdv.cancelled_by_agent else "",
        rdv.cancelled_at.astimezone(tz).replace(tzinfo=None) if rdv.cancelled_at else None,
        rdv.confirmed_at.astimezone(tz).replace(tzinfo=None) if rdv.confirmed_at else None,
        reminder_outcomes(rdv, tz),
    ]


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    text = str(value)
    # Spreadsheets run cells that start like a formula: keep them text.
    return "'" + text if text[:1] in ("=", "+", "-", "@") and not text[1:2].isdigit() else text


def csv_lines(rows: Iterator[list]) -> Iterator[str]:
    """CSV for French spreadsheets: UTF-8 with BOM, ``;`` separated."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";")
    writer.writerow(HEADERS)
    yield "\ufeff" + buffer.getvalue()
    for row in rows:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow([_text(v) for v in row])
        yield buffer.getvalue()


def xlsx_chunks(rows: Iterator[list]) -> Iterator[bytes]:
    """An XLSX workbook written in constant memory to a temporary file, then streamed."""
    import xlsxwriter

    handle, path = tempfile.mkstemp(suffix=".xlsx")
    os.close(handle)
    try:
        book = xlsxwriter.Workbook(
            path,
            {
                "constant_memory": True,
                "tmpdir": tempfile.gettempdir(),
                "strings_to_formulas": False,
            },
        )
        sheet = book.add_worksheet("Rendez-vous")
        bold = book.add_format({"bold": True})
        day = book.add_format({"num_format": "dd/mm/yyyy"})
        moment = book.add_format({"num_format": "dd/mm/yyyy hh:mm"})
        sheet.write_row(0, 0, HEADERS, bold)
        for r, row in enumerate(rows, start=1):
            for c, value in enumerate(row):
                if value is None:
                    continue
                if isinstance(value, datetime):
                    sheet.write_datetime(r, c, value, moment)
                elif hasattr(value, "isoformat"):
                    sheet.write_datetime(r, c, datetime.combine(value, datetime.min.time()), day)
                elif isinstance(value, int):
                    sheet.write_number(r, c, value)
                else:
                    sheet.write_string(r, c, str(value))
        book.close()
        with open(path, "rb") as f:
            while block := f.read(64 * 1024):
                yield block
    finally:
        os.unlink(path)


# --- the agents' route ---

bp = Blueprint("export", __name__)


def _bound(value: str, tz, end: bool) -> datetime:
    """A date (the whole day: ``to`` is included) or a date-time, in the organisation's zone."""
    value = value.strip()
    if len(value) == 10:
        day = parse_date(value) + timedelta(days=1 if end else 0)
        return localize(datetime.combine(day, datetime.min.time()), tz)
    return parse_iso(value, tz)


@bp.get("/rdvs/export")
@login_required
def export_rdvs():
    """The organisation's rdvs of [from, to] as CSV or XLSX (a download)."""
    org = current_user.organisation
    tz = org.tz
    fmt = request.args.get("format", "csv")
    if fmt not in ("csv", "xlsx"):
        abort(400, "Format attendu : csv ou xlsx.")
    try:
        start = _bound(request.args.get("from", ""), tz, end=False)
        end = _bound(request.args.get("to", "") or request.args.get("from", ""), tz, end=True)
    except (ValueError, OverflowError):
        abort(400, "Dates attendues : from et to au format AAAA-MM-JJ.")
    if end <= start:
        abort(400, "La date de fin doit suivre la date de début.")
    if end - start > timedelta(days=MAX_EXPORT_DAYS):
        abort(400, f"Période trop longue : {MAX_EXPORT_DAYS} jours au plus.")
    rows = (export_row(rdv) for rdv in iter_rdvs(org.id, start, end))
    name = (
        f"rdvs-{start.astimezone(tz).date()}-{(end - timedelta(seconds=1)).astimezone(tz).date()}"
    )
    if fmt == "csv":
        body, content_type = csv_lines(rows), "text/csv; charset=utf-8"
    else:
        body = xlsx_chunks(rows)
        content_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    return Response(
        stream_with_context(body),
        content_type=content_type,
        headers={"Content-Disposition": f'attachment; filename="{name}.{fmt}"'},
    )
