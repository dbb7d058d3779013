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

from datetime import timedelta

from flask import Blueprint, g, jsonify, request
from sqlalchemy import select

from . import schemas as sc
from . import webhook_endpoints
from .booking import book, cancel, get_rdv, move, record_outcome
from .errors import DomainError, NotFound, ValidationFailed
from .export import rdv_page
from .extensions import db
from .models import Agent, ApiToken, Lieu, Motif, Usager
from .openapi import openapi_json_response, operation
from .schemas import iso, rdv_json, usager_json, validate, webhook_endpoint_json
from .slots import free_slots
from .timeutil import utcnow
from .usagers import UsagerExists, clean_usager_fields, create_usager, find_duplicate_usager
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
    if request.endpoint == "api.openapi_json":
        return  # the document is public
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


def _query(model):
    """The query string validated by ``model`` (every invalid parameter reported at once)."""
    params = {k: v for k, v in request.args.items() if v != ""}  # empty = absent
    return validate(model, params, tz=g.organisation.tz)


def _list(model, *order):
    """Rows of ``model`` belonging to the caller's organisation, in ``order``."""
    rows = db.session.scalars(
        select(model).where(model.organisation_id == g.organisation.id).order_by(*order)
    )
    return rows


@bp.get("/openapi.json")
@operation("Ce document (OpenAPI 3.1)", public=True)
def openapi_json():
    """The OpenAPI 3.1 document of this API, generated from the code."""
    return openapi_json_response()


@bp.get("/motifs")
@operation("Motifs de l'organisation", answers={200: sc.MotifList})
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
@operation("Lieux de l'organisation", answers={200: sc.LieuList})
def lieux():
    """``GET /lieux``: the organisation's lieux, by name."""
    return {
        "items": [
            {"id": lieu.id, "name": lieu.name, "address": lieu.address, "phone": lieu.phone}
            for lieu in _list(Lieu, Lieu.name)
        ]
    }


@bp.get("/agents")
@operation("Agents actifs de l'organisation", answers={200: sc.AgentList})
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
@operation(
    "Créneaux libres d'un motif",
    query=sc.SlotsQuery,
    answers={200: sc.SlotList},
    errors=(404, 422),
    description="Free slots between from (default now) and to (default from + 7 days).",
)
def slots():
    """``GET /slots?motif_id=&lieu_id=&agent_id=&from=&to=``: free slots, seven days by default.

    The same computation as the agent's booking form (:func:`gateway.slots.free_slots`),
    so a slot listed here is one ``POST /rdvs`` accepts unless someone takes it first.
    """
    org = g.organisation
    params = _query(sc.SlotsQuery)
    motif = db.session.get(Motif, params.motif_id)
    if motif is None or motif.organisation_id != org.id:
        raise NotFound("Motif introuvable.", fields={"motif_id": "Motif introuvable."})
    now = utcnow()
    start = params.from_ or now
    end = params.to or start + timedelta(days=7)
    if end <= start:
        raise ValidationFailed("« to » doit être après « from ».", fields={"to": "Après « from »."})
    try:
        found = free_slots(
            org, motif, start, end, lieu_id=params.lieu_id, agent_id=params.agent_id, now=now
        )
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
@operation(
    "Créer un usager",
    body=sc.UsagerIn,
    answers={201: sc.UsagerOut},
    errors=(409,),
    description=(
        "409 usager_exists (with existing_id) when a usager of the organisation has the same "
        "name and the same mobile or email, unless allow_duplicate is true."
    ),
)
def create_usager_route():
    """``POST /usagers``: create a usager (mobile normalised to E.164); 201, or 422 naming
    every invalid field at once, or 409 ``usager_exists`` for a probable duplicate."""
    data = _json_body()

    def domain_errors(raw, _parsed) -> dict:
        try:
            clean_usager_fields(raw)
        except ValidationFailed as exc:
            return exc.fields
        return {}

    params = validate(sc.UsagerIn, data, also=domain_errors)
    if not params.allow_duplicate:
        clean = clean_usager_fields(data)
        existing = find_duplicate_usager(
            g.organisation, clean["first_name"], clean["last_name"], clean["phone"], clean["email"]
        )
        if existing is not None:
            raise UsagerExists(existing)
    usager = create_usager(g.organisation, data)
    return usager_json(usager), 201


@bp.get("/usagers/<int:usager_id>")
@operation("Un usager", answers={200: sc.UsagerOut}, errors=(404,))
def get_usager(usager_id: int):
    """``GET /usagers/<id>``: one usager of the organisation, else 404."""
    usager = db.session.get(Usager, usager_id)
    if usager is None or usager.organisation_id != g.organisation.id:
        raise NotFound("Usager introuvable.")
    return usager_json(usager)


@bp.get("/rdvs")
@operation(
    "Rendez-vous d'une période, page par page",
    query=sc.RdvListQuery,
    answers={200: sc.RdvPage},
    errors=(422,),
    description=(
        "Rdvs whose start is in [from, to), ordered by start then id. Follow next_cursor "
        "until it is null; a page is stable under concurrent bookings."
    ),
)
def list_rdvs():
    """``GET /rdvs?from=&to=&status=&cursor=&limit=``: one page of rdvs, in a stable order."""
    params = _query(sc.RdvListQuery)
    items, next_cursor = rdv_page(
        g.organisation,
        start=params.from_,
        end=params.to,
        status=params.status,
        cursor=params.cursor,
        limit=params.limit,
    )
    return {"items": [rdv_json(r) for r in items], "next_cursor": next_cursor}


@bp.post("/rdvs")
@operation(
    "Prendre un rendez-vous",
    body=sc.RdvIn,
    answers={201: sc.RdvOut},
    errors=(409,),
    description="Books in a free slot; the confirmation and reminders are planned at once.",
)
def create_rdv():
    """``POST /rdvs``: book a slot for one usager (``usager_id``) or several (``usager_ids``).

    201 with the rdv and the messages just planned; 409 when the slot was taken
    in the meantime (the booking serialises on the agent).
    """

    def one_usager(_raw, parsed) -> dict:
        if parsed is not None and parsed.usager_id is None and not parsed.usager_ids:
            return {"usager_id": "Obligatoire (ou usager_ids)."}
        return {}

    params = validate(sc.RdvIn, _json_body(), tz=g.organisation.tz, also=one_usager)
    rdv = book(
        g.organisation,
        motif_id=params.motif_id,
        lieu_id=params.lieu_id,
        agent_id=params.agent_id,
        usager_ids=params.usager_ids or [params.usager_id],
        starts_at=params.starts_at,
        waitlist=params.waitlist,
        booked_via="api",
    )
    return rdv_json(rdv), 201


@bp.get("/rdvs/<int:rdv_id>")
@operation("Un rendez-vous et ses messages", answers={200: sc.RdvOut}, errors=(404,))
def show_rdv(rdv_id: int):
    """``GET /rdvs/<id>``: the rdv and every message sent or planned for it."""
    return rdv_json(get_rdv(g.organisation, rdv_id))


@bp.patch("/rdvs/<int:rdv_id>")
@operation(
    "Déplacer un rendez-vous",
    body=sc.RdvPatch,
    answers={200: sc.RdvOut},
    errors=(404, 409, 422),
    description=(
        "Pending messages are cancelled, a moved message goes out, reminders are re-planned. "
        "The new start must be a slot of the grid (422 off_grid, with the nearest starts); "
        "an rdv seen, noshow or cancelled cannot be moved (409 rdv_not_movable)."
    ),
)
def update_rdv(rdv_id: int):
    """``PATCH /rdvs/<id>``: move the rdv (``starts_at`` and/or ``lieu_id``, nothing else).

    Any other field is refused (422) rather than ignored, so a client never
    believes it changed what it did not; the usager is told of the move.
    """
    rdv = get_rdv(g.organisation, rdv_id)

    def something(raw, _parsed) -> dict:
        return {} if raw else {"starts_at": "Obligatoire (ou lieu_id)."}

    params = validate(sc.RdvPatch, _json_body(), tz=g.organisation.tz, also=something)
    return rdv_json(move(rdv, starts_at=params.starts_at, lieu_id=params.lieu_id))


@bp.post("/rdvs/<int:rdv_id>/cancel")
@operation("Annuler un rendez-vous", answers={200: sc.RdvOut}, errors=(404, 409))
def cancel_rdv(rdv_id: int):
    """``POST /rdvs/<id>/cancel``: cancel for the service (``revoked``); idempotent."""
    rdv = get_rdv(g.organisation, rdv_id)
    cancel(rdv, via="api")
    return rdv_json(rdv)


@bp.post("/rdvs/<int:rdv_id>/status")
@operation(
    "Noter si l'usager est venu",
    body=sc.RdvStatusIn,
    answers={200: sc.RdvOut},
    errors=(404, 409),
)
def rdv_status(rdv_id: int):
    """``POST /rdvs/<id>/status``: record ``seen`` or ``noshow`` once the rdv has started."""
    rdv = get_rdv(g.organisation, rdv_id)
    params = validate(sc.RdvStatusIn, _json_body())
    return rdv_json(record_outcome(rdv, params.status))


@bp.get("/webhook-endpoints")
@operation("Points de réception des webhooks", answers={200: sc.WebhookEndpointList})
def list_webhook_endpoints():
    """``GET /webhook-endpoints``: the organisation's endpoints (never their secrets)."""
    tz = g.organisation.tz
    return {
        "items": [
            webhook_endpoint_json(e, tz) for e in webhook_endpoints.endpoints_of(g.organisation)
        ]
    }


@bp.post("/webhook-endpoints")
@operation(
    "Ajouter un point de réception",
    body=sc.WebhookEndpointIn,
    answers={201: sc.WebhookEndpointCreated},
    description=(
        "The answer carries the endpoint's whsec_ secret, once: it signs every event "
        "(Standard Webhooks). https only in production; never a local or private address."
    ),
)
def create_webhook_endpoint():
    """``POST /webhook-endpoints``: register a URL; 201 with its secret, shown this once."""

    def url_refused(raw, _parsed) -> dict:
        problem = webhook_endpoints.url_error(raw.get("url", ""))
        return {"url": problem} if problem else {}

    params = validate(sc.WebhookEndpointIn, _json_body(), also=url_refused)
    endpoint, secret = webhook_endpoints.create_endpoint(g.organisation, params.url, params.events)
    return {**webhook_endpoint_json(endpoint, g.organisation.tz), "secret": secret}, 201


@bp.delete("/webhook-endpoints/<int:endpoint_id>")
@operation("Supprimer un point de réception", answers={204: None}, errors=(404,))
def delete_webhook_endpoint(endpoint_id: int):
    """``DELETE /webhook-endpoints/<id>``: remove it with its pending deliveries; 204."""
    webhook_endpoints.delete_endpoint(g.organisation, endpoint_id)
    return "", 204
