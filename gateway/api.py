"""The JSON API (``/api/v1``): the organisation's own software books, moves and
cancels rdvs, and reads motifs, lieux, agents, free slots and usagers.

Every request carries ``Authorization: Bearer <token>``; the token belongs to
one organisation and every lookup is scoped to it, so another organisation's
id answers 404, never its data. Handlers only parse the request, call one
domain function (:mod:`gateway.booking`, :mod:`gateway.usagers`,
:mod:`gateway.slots`, shared with the agent pages) and serialise its result.

Trade-off: input is checked strictly rather than coerced (integers that fit an
id, ISO 8601 dates, the fields a PATCH may change), so a client's mistake is
an error naming the field rather than a booking different from the one meant.
Errors are ``{"error": {"code", "message", "fields"}}`` with French messages;
bad input gets 400/401/404/409/413/422 and never a 500 nor a half-written record,
because the domain functions change nothing when they raise.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import Blueprint, g, jsonify, request
from sqlalchemy import select

from .booking import book, cancel, get_rdv, move, record_outcome
from .errors import DomainError, NotFound, ValidationFailed
from .extensions import db
from .models import Agent, ApiToken, Lieu, Motif, Rdv, Usager, is_db_id
from .slots import free_slots
from .timeutil import parse_iso, utcnow
from .usagers import create_usager
from .web import unstorable

bp = Blueprint("api", __name__, url_prefix="/api/v1")


class ApiError(DomainError):
    """An error of the API layer itself (missing token, body that is not a JSON object)."""


@bp.errorhandler(DomainError)
def _domain_error(exc: DomainError):
    """Any domain refusal becomes the JSON error body with the status it chose."""
    return jsonify(exc.as_json()), exc.status


@bp.before_request
def _authenticate():
    """Refuse (401) unless the bearer token is known; ``g.organisation`` is its organisation."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            "Jeton d'API manquant : en-tête Authorization: Bearer <jeton>.",
            code="unauthorized",
            status=401,
        )
    api_token = db.session.scalar(
        select(ApiToken).where(ApiToken.token_hash == ApiToken.hash(token.strip()))
    )
    if api_token is None:
        raise ApiError("Jeton d'API invalide.", code="unauthorized", status=401)
    now = utcnow()
    # Touch at most once a minute: no write on every request.
    if api_token.last_used_at is None or now - api_token.last_used_at > timedelta(minutes=1):
        api_token.last_used_at = now
        db.session.commit()
    g.organisation = api_token.organisation


def _json_body() -> dict:
    """The request's JSON object, or 400: not JSON, not an object, or unstorable characters."""
    try:
        data = request.get_json(silent=True)
    except RecursionError:
        # json.loads gives up on deeply nested arrays with RecursionError, not ValueError.
        data = None
    if not isinstance(data, dict):
        raise ApiError(
            "Le corps de la requête doit être un objet JSON.", code="bad_request", status=400
        )
    if unstorable(data):
        raise ApiError(
            "Le corps de la requête contient un caractère invalide (NUL ou UTF-16 isolé).",
            code="bad_request",
            status=400,
        )
    return data


def _int_param(value, name: str, required: bool = True):
    """An id from JSON or a query string (``3`` or ``"3"``, never ``true``), or 422."""
    if value is None or value == "":
        if required:
            raise ValidationFailed(
                f"Paramètre « {name} » obligatoire.", fields={name: "Obligatoire."}
            )
        return None
    if isinstance(value, bool):
        raise ValidationFailed(f"« {name} » doit être un entier.", fields={name: "Entier attendu."})
    if (
        isinstance(value, str)
        and value.strip().isascii()
        and value.strip().isdigit()
        and len(value.strip()) < 12
    ):
        value = int(value.strip())
    if isinstance(value, int):
        if not is_db_id(value):
            raise ValidationFailed(
                f"« {name} » est hors limites.", fields={name: "Identifiant invalide."}
            )
        return value
    raise ValidationFailed(f"« {name} » doit être un entier.", fields={name: "Entier attendu."})


def _datetime_param(value, name: str) -> datetime:
    """An aware UTC datetime; a value without offset is read in the organisation's zone."""
    if not isinstance(value, str) or not value.strip() or len(value) > 64:
        raise ValidationFailed(
            f"« {name} » doit être une date ISO 8601.", fields={name: "Date ISO 8601 attendue."}
        )
    try:
        return parse_iso(value, g.organisation.tz)
    except (ValueError, OverflowError):
        raise ValidationFailed(
            f"« {name} » n'est pas une date ISO 8601 valide.",
            fields={name: "Date ISO 8601 attendue."},
        ) from None


def iso(value: datetime | None, tz) -> str | None:
    """ISO 8601 with the offset of ``tz`` (the organisation's zone), ``None`` kept."""
    return value.astimezone(tz).isoformat() if value else None


def message_json(m, tz) -> dict:
    """A message as the API shows it (SPEC section 3 field names)."""
    return {
        "id": m.id,
        "channel": m.channel,
        "kind": m.kind,
        "status": m.status,
        "send_at": iso(m.send_at, tz),
        "sent_at": iso(m.sent_at, tz),
        "delivered_at": iso(m.delivered_at, tz),
        "provider": m.provider,
        "provider_message_id": m.provider_message_id,
        "segments": m.segments,
        "recipient": m.recipient,
        "attempts": m.attempts,
        "last_error": m.last_error,
    }


def rdv_json(rdv: Rdv) -> dict:
    """An rdv as the API shows it, with its usagers' ids and all its messages."""
    tz = rdv.organisation.tz
    return {
        "id": rdv.id,
        "status": rdv.status,
        "starts_at": iso(rdv.starts_at, tz),
        "ends_at": iso(rdv.ends_at, tz),
        "duration_minutes": rdv.duration_minutes,
        "motif_id": rdv.motif_id,
        "lieu_id": rdv.lieu_id,
        "agent_id": rdv.agent_id,
        "usager_ids": [p.usager_id for p in rdv.participations],
        "cancelled_via": rdv.cancelled_via,
        "cancelled_at": iso(rdv.cancelled_at, tz),
        "confirmed_at": iso(rdv.confirmed_at, tz),
        "messages": [message_json(m, tz) for m in rdv.messages],
    }


def usager_json(u: Usager) -> dict:
    """A usager as the API shows it, consents and SMS opt-out included."""
    return {
        "id": u.id,
        "first_name": u.first_name,
        "last_name": u.last_name,
        "phone": u.phone,
        "email": u.email,
        "notify_sms": u.notify_sms,
        "notify_email": u.notify_email,
        "sms_opted_out": u.sms_opted_out,
    }


def _list(model, *order):
    """Rows of ``model`` belonging to the caller's organisation, in ``order``."""
    rows = db.session.scalars(
        select(model).where(model.organisation_id == g.organisation.id).order_by(*order)
    )
    return rows


@bp.get("/motifs")
def motifs():
    """``GET /motifs``: the organisation's motifs, by name."""
    return {
        "items": [
            {
                "id": m.id,
                "name": m.name,
                "service": m.service,
                "duration_minutes": m.duration_minutes,
                "location_type": m.location_type,
                "instructions": m.instructions,
            }
            for m in _list(Motif, Motif.name)
        ]
    }


@bp.get("/lieux")
def lieux():
    """``GET /lieux``: the organisation's lieux, by name."""
    return {
        "items": [
            {"id": lieu.id, "name": lieu.name, "address": lieu.address, "phone": lieu.phone}
            for lieu in _list(Lieu, Lieu.name)
        ]
    }


@bp.get("/agents")
def agents():
    """``GET /agents``: the organisation's active agents, by name; deactivated ones are left out."""
    return {
        "items": [
            {"id": a.id, "name": a.name, "first_name": a.first_name, "last_name": a.last_name}
            for a in _list(Agent, Agent.last_name, Agent.first_name)
            if a.is_active
        ]
    }


@bp.get("/slots")
def slots():
    """``GET /slots?motif_id=&lieu_id=&agent_id=&from=&to=``: free slots, seven days by default.

    The same computation as the agent's booking form (:func:`gateway.slots.free_slots`),
    so a slot listed here is one ``POST /rdvs`` accepts unless someone takes it first.
    """
    org = g.organisation
    motif_id = _int_param(request.args.get("motif_id"), "motif_id")
    motif = db.session.get(Motif, motif_id)
    if motif is None or motif.organisation_id != org.id:
        raise NotFound("Motif introuvable.", fields={"motif_id": "Motif introuvable."})
    lieu_id = _int_param(request.args.get("lieu_id"), "lieu_id", required=False)
    agent_id = _int_param(request.args.get("agent_id"), "agent_id", required=False)
    now = utcnow()
    start = _datetime_param(request.args["from"], "from") if request.args.get("from") else now
    end = (
        _datetime_param(request.args["to"], "to")
        if request.args.get("to")
        else start + timedelta(days=7)
    )
    if end <= start:
        raise ValidationFailed("« to » doit être après « from ».", fields={"to": "Après « from »."})
    try:
        found = free_slots(org, motif, start, end, lieu_id=lieu_id, agent_id=agent_id, now=now)
    except ValueError as exc:
        raise ValidationFailed(str(exc), fields={"to": str(exc)}) from None
    tz = org.tz
    return {
        "items": [
            {
                "starts_at": iso(s.starts_at, tz),
                "ends_at": iso(s.ends_at, tz),
                "agent_id": s.agent_id,
                "lieu_id": s.lieu_id,
            }
            for s in found
        ]
    }


@bp.post("/usagers")
def create_usager_route():
    """``POST /usagers``: create a usager (mobile normalised to E.164); 201, or 422 naming
    every invalid field at once."""
    usager = create_usager(g.organisation, _json_body())
    return usager_json(usager), 201


@bp.get("/usagers/<int:usager_id>")
def get_usager(usager_id: int):
    """``GET /usagers/<id>``: one usager of the organisation, else 404."""
    usager = db.session.get(Usager, usager_id)
    if usager is None or usager.organisation_id != g.organisation.id:
        raise NotFound("Usager introuvable.")
    return usager_json(usager)


@bp.post("/rdvs")
def create_rdv():
    """``POST /rdvs``: book a slot for one usager (``usager_id``) or several (``usager_ids``).

    201 with the rdv and the messages just planned; 409 when the slot was taken
    in the meantime (the booking serialises on the agent).
    """
    data = _json_body()
    if "usager_ids" in data:
        raw_ids = data["usager_ids"]
        if not isinstance(raw_ids, list):
            raise ValidationFailed(
                "« usager_ids » doit être une liste.", fields={"usager_ids": "Liste attendue."}
            )
        usager_ids = [_int_param(v, "usager_ids") for v in raw_ids]
    else:
        usager_ids = [_int_param(data.get("usager_id"), "usager_id")]
    rdv = book(
        g.organisation,
        motif_id=_int_param(data.get("motif_id"), "motif_id"),
        lieu_id=_int_param(data.get("lieu_id"), "lieu_id"),
        agent_id=_int_param(data.get("agent_id"), "agent_id"),
        usager_ids=usager_ids,
        starts_at=_datetime_param(data.get("starts_at"), "starts_at"),
    )
    return rdv_json(rdv), 201


@bp.get("/rdvs/<int:rdv_id>")
def show_rdv(rdv_id: int):
    """``GET /rdvs/<id>``: the rdv and every message sent or planned for it."""
    return rdv_json(get_rdv(g.organisation, rdv_id))


@bp.patch("/rdvs/<int:rdv_id>")
def update_rdv(rdv_id: int):
    """``PATCH /rdvs/<id>``: move the rdv (``starts_at`` and/or ``lieu_id``, nothing else).

    Any other field is refused (422) rather than ignored, so a client never
    believes it changed what it did not; the usager is told of the move.
    """
    rdv = get_rdv(g.organisation, rdv_id)
    data = _json_body()
    unknown = set(data) - {"starts_at", "lieu_id"}
    if unknown:
        raise ValidationFailed(
            "Champs non modifiables : " + ", ".join(sorted(unknown)),
            fields={k: "Non modifiable." for k in sorted(unknown)},
        )
    if not data:
        raise ValidationFailed("Rien à modifier.", fields={"starts_at": "Obligatoire."})
    starts_at = _datetime_param(data["starts_at"], "starts_at") if "starts_at" in data else None
    lieu_id = _int_param(data.get("lieu_id"), "lieu_id", required=False)
    return rdv_json(move(rdv, starts_at=starts_at, lieu_id=lieu_id))


@bp.post("/rdvs/<int:rdv_id>/cancel")
def cancel_rdv(rdv_id: int):
    """``POST /rdvs/<id>/cancel``: cancel for the service (``revoked``); idempotent."""
    rdv = get_rdv(g.organisation, rdv_id)
    cancel(rdv, via="api")
    return rdv_json(rdv)


@bp.post("/rdvs/<int:rdv_id>/status")
def rdv_status(rdv_id: int):
    """``POST /rdvs/<id>/status``: record ``seen`` or ``noshow`` once the rdv has started."""
    rdv = get_rdv(g.organisation, rdv_id)
    status = _json_body().get("status")
    if status not in ("seen", "noshow"):
        raise ValidationFailed(
            "Statut invalide : seen ou noshow.", fields={"status": "Attendu : seen ou noshow."}
        )
    return rdv_json(record_outcome(rdv, status))
