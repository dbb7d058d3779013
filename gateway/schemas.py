"""The JSON API's shapes, declared once: pydantic models that validate requests and
document requests, answers and webhook payloads (:mod:`gateway.openapi`), and the
functions that turn rows into that JSON (the API's answers and the ``data`` of
outbound webhook events are the same dicts).

Why pydantic rather than apispec/marshmallow: it is already installed (the
Vonage SDK depends on it), its models give JSON Schema 2020-12, which is what
OpenAPI 3.1 embeds, and validation reports every invalid field at once
(:func:`validate`), which the API owes its clients. Answers are built by the
plain functions below (fast, also used inside domain transactions for the
webhook outbox); the test suite checks real answers against the models'
schemas, so the two cannot drift apart unnoticed.

Error messages are French (:data:`_MESSAGES` translates pydantic's kinds of error).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError

from providers import status as S

from .errors import ValidationFailed
from .models import BOOKED_VIA, CANCELLED_VIA, MAX_ID, RDV_STATUSES, is_db_id
from .timeutil import parse_iso

EVENT_TYPES = (
    "rdv.created",
    "rdv.moved",
    "rdv.cancelled",
    "rdv.status_changed",
    "message.status_changed",
    "inbound_sms.received",
    "usager.sms_opted_out",
)

# --- validation helpers ---


def _db_id(value: Any) -> int:
    """An id: an int (not a bool) in 1..MAX_ID, or the same in ASCII digits."""
    if isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.isdigit() and len(text) < 12:
            value = int(text)
    if isinstance(value, bool) or not isinstance(value, int):
        raise PydanticCustomError("db_id", "Entier attendu.")
    if not is_db_id(value):
        raise PydanticCustomError("db_id", "Identifiant invalide.")
    return value


DbId = Annotated[
    int,
    BeforeValidator(_db_id),
    WithJsonSchema({"type": "integer", "minimum": 1, "maximum": MAX_ID}),
]


def _aware_datetime(value: Any, info: ValidationInfo) -> datetime:
    """ISO 8601 text; without an offset it is read in the organisation's zone (context ``tz``)."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not value.strip() or len(value) > 64:
        raise PydanticCustomError("iso_datetime", "Date ISO 8601 attendue.")
    try:
        return parse_iso(value, (info.context or {})["tz"])
    except (ValueError, OverflowError):
        raise PydanticCustomError("iso_datetime", "Date ISO 8601 attendue.") from None


Datetime = Annotated[
    datetime,
    BeforeValidator(_aware_datetime),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "description": "ISO 8601; without an offset, read in the organisation's time zone.",
        }
    ),
]

_MESSAGES = {
    "missing": "Obligatoire.",
    "int_type": "Entier attendu.",
    "int_parsing": "Entier attendu.",
    "int_from_float": "Entier attendu.",
    "string_type": "Texte attendu.",
    "bool_type": "Valeur attendue : vrai ou faux.",
    "list_type": "Liste attendue.",
    "extra_forbidden": "Champ inconnu ou non modifiable.",
    "too_short": "Au moins un élément.",
}


def _message(error: dict) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "string_too_long":
        return f"Trop long ({ctx.get('max_length')} caractères au plus)."
    if kind == "too_long":
        return f"Trop d'éléments ({ctx.get('max_length')} au plus)."
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        return "Valeur hors limites."
    if kind == "literal_error":
        return "Valeur attendue : " + str(ctx.get("expected", "")).replace("'", "") + "."
    if kind.startswith("db_id") or kind == "iso_datetime":
        return error["msg"]
    return _MESSAGES.get(kind, error.get("msg") or "Valeur invalide.")


def field_errors(exc: ValidationError) -> dict[str, str]:
    """Every error of ``exc`` as ``{field: French message}`` (first message per field)."""
    fields: dict[str, str] = {}
    for error in exc.errors(include_url=False):
        loc = error.get("loc") or ("body",)
        fields.setdefault(str(loc[0]), _message(error))
    return fields


def validate(model: type[BaseModel], data: Any, *, tz=None, also=None) -> BaseModel:
    """Validate ``data`` against ``model``; raise one 422 listing every invalid field.

    ``also(data) -> dict`` adds the errors of checks pydantic cannot make
    (e.g. the domain's own), so that those are reported in the same answer.
    """
    fields: dict[str, str] = {}
    result = None
    try:
        result = model.model_validate(data, context={"tz": tz})
    except ValidationError as exc:
        fields.update(field_errors(exc))
    if also is not None:
        for name, message in also(data, result).items():
            fields.setdefault(name, message)
    if fields:
        raise ValidationFailed(
            "Requête invalide : " + ", ".join(sorted(fields)) + ".", fields=fields
        )
    return result


# --- requests ---


class UsagerIn(BaseModel):
    """A new usager. ``phone`` in any common French form (stored and returned in E.164)."""

    first_name: Annotated[str, Field(max_length=100)]
    last_name: Annotated[str, Field(max_length=100)]
    phone: Annotated[str | None, Field(max_length=32)] = None
    email: Annotated[str | None, Field(max_length=254)] = None
    notify_sms: StrictBool = True
    notify_email: StrictBool = True
    allow_duplicate: StrictBool = Field(
        False,
        description="Create even when a usager with the same name and mobile or email exists "
        "(otherwise 409 usager_exists).",
    )


class RdvIn(BaseModel):
    """A booking: one usager (``usager_id``) or several (``usager_ids``)."""

    motif_id: DbId
    lieu_id: DbId
    agent_id: DbId
    usager_id: DbId | None = None
    usager_ids: Annotated[list[DbId] | None, Field(min_length=1, max_length=20)] = None
    starts_at: Datetime
    waitlist: StrictBool = Field(
        False,
        description="The usager asks to be offered an earlier slot of this motif and lieu "
        "when one is freed (docs/waitlist.md).",
    )


class RdvPatch(BaseModel):
    """Move an rdv: a new start and/or a new lieu."""

    model_config = ConfigDict(extra="forbid")

    starts_at: Datetime | None = None
    lieu_id: DbId | None = None


class RdvStatusIn(BaseModel):
    status: Literal["seen", "noshow"]


class SlotsQuery(BaseModel):
    motif_id: DbId
    lieu_id: DbId | None = None
    agent_id: DbId | None = None
    from_: Datetime | None = Field(None, alias="from")
    to: Datetime | None = None


class RdvListQuery(BaseModel):
    """A range of rdvs by start, in a stable order (start, then id)."""

    from_: Datetime | None = Field(None, alias="from", description="Earliest start (included).")
    to: Datetime | None = Field(None, description="Latest start (excluded).")
    status: Literal[RDV_STATUSES] | None = None  # type: ignore[valid-type]
    cursor: Annotated[str | None, Field(max_length=200)] = Field(
        None, description="The previous page's next_cursor."
    )
    limit: Annotated[int, Field(ge=1, le=500)] = 100


class WebhookEndpointIn(BaseModel):
    url: Annotated[str, Field(max_length=2000, description="https URL (http outside production).")]
    events: Annotated[list[Literal[EVENT_TYPES]] | None, Field(min_length=1)] = Field(  # type: ignore[valid-type]
        None, description="Event types to receive; all of them when absent."
    )

    @field_validator("url")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()


# --- answers ---


class ErrorDetail(BaseModel):
    code: str = Field(description="Machine-readable: validation_failed, not_found, slot_taken…")
    message: str = Field(description="French, for people.")
    fields: dict[str, str] = Field(description="Every invalid field with its French message.")
    existing_id: int | None = Field(None, description="usager_exists only: the usager found.")


class ErrorOut(BaseModel):
    error: ErrorDetail


class MotifOut(BaseModel):
    id: int
    name: str
    service: str
    duration_minutes: int
    location_type: str
    instructions: str | None


class LieuOut(BaseModel):
    id: int
    name: str
    address: str
    phone: str | None


class AgentOut(BaseModel):
    id: int
    name: str
    first_name: str
    last_name: str


class SlotOut(BaseModel):
    starts_at: datetime
    ends_at: datetime
    agent_id: int
    lieu_id: int


class UsagerOut(BaseModel):
    id: int
    first_name: str
    last_name: str
    phone: str | None = Field(description="E.164")
    email: str | None
    notify_sms: bool
    notify_email: bool
    sms_opted_out: bool


class MessageOut(BaseModel):
    id: int
    channel: Literal["sms", "email"]
    kind: str
    status: Literal[S.ALL_STATUSES]  # type: ignore[valid-type]
    send_at: datetime
    sent_at: datetime | None
    delivered_at: datetime | None
    provider: str | None
    provider_message_id: str | None
    segments: int | None
    recipient: str
    attempts: int
    last_error: str | None


class RdvOut(BaseModel):
    id: int
    status: Literal[RDV_STATUSES]  # type: ignore[valid-type]
    starts_at: datetime
    ends_at: datetime
    duration_minutes: int
    motif_id: int
    lieu_id: int
    agent_id: int
    usager_ids: list[int]
    cancelled_via: Literal[CANCELLED_VIA] | None  # type: ignore[valid-type]
    booked_via: Literal[BOOKED_VIA] = Field(  # type: ignore[valid-type]
        description="who booked: an agent's form, a usager online, or the API"
    )
    cancelled_at: datetime | None
    confirmed_at: datetime | None
    waitlist: bool = Field(description="The usager asked to be told of an earlier slot.")
    messages: list[MessageOut]


class InboundSmsOut(BaseModel):
    id: int
    provider: str
    from_number: str = Field(description="E.164")
    to_number: str | None
    body: str
    received_at: datetime
    usager_id: int | None
    rdv_id: int | None
    action: str | None = Field(
        description="cancelled, confirmed, opted_out, opted_in, forwarded, no_rdv, too_late…"
    )


class WebhookEndpointOut(BaseModel):
    id: int
    url: str
    events: list[str]
    enabled: bool
    created_at: datetime
    disabled_at: datetime | None
    disabled_reason: str | None


class WebhookEndpointCreated(WebhookEndpointOut):
    secret: str = Field(description="whsec_… : shown in this answer only; keep it.")


class MotifList(BaseModel):
    items: list[MotifOut]


class LieuList(BaseModel):
    items: list[LieuOut]


class AgentList(BaseModel):
    items: list[AgentOut]


class SlotList(BaseModel):
    items: list[SlotOut]


class RdvPage(BaseModel):
    items: list[RdvOut]
    next_cursor: str | None = Field(description="Pass it as cursor for the next page; null: done.")


class WebhookEndpointList(BaseModel):
    items: list[WebhookEndpointOut]


# --- webhook event payloads (Standard Webhooks bodies) ---


class _Event(BaseModel):
    timestamp: datetime = Field(description="When the change happened (UTC).")


class RdvEvent(_Event):
    type: Literal["rdv.created", "rdv.moved", "rdv.cancelled", "rdv.status_changed"]
    data: RdvOut


class MessageEvent(_Event):
    type: Literal["message.status_changed"]
    data: MessageOut


class InboundSmsEvent(_Event):
    type: Literal["inbound_sms.received"]
    data: InboundSmsOut


class UsagerEvent(_Event):
    type: Literal["usager.sms_opted_out"]
    data: UsagerOut


EVENT_MODELS = {
    "rdv.created": RdvEvent,
    "rdv.moved": RdvEvent,
    "rdv.cancelled": RdvEvent,
    "rdv.status_changed": RdvEvent,
    "message.status_changed": MessageEvent,
    "inbound_sms.received": InboundSmsEvent,
    "usager.sms_opted_out": UsagerEvent,
}


# --- rows to JSON ---


def iso(value: datetime | None, tz) -> str | None:
    return value.astimezone(tz).isoformat() if value else None


def message_json(m, tz) -> dict:
    """A message as the API shows it (``m``: a Message or a row with the same names)."""
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


def rdv_json(rdv) -> dict:
    """An rdv with its messages, as the API shows it."""
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
        "booked_via": rdv.booked_via,
        "cancelled_at": iso(rdv.cancelled_at, tz),
        "confirmed_at": iso(rdv.confirmed_at, tz),
        "waitlist": bool(rdv.waitlist),
        "messages": [message_json(m, tz) for m in rdv.messages],
    }


def usager_json(u) -> dict:
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


def inbound_sms_json(row, tz) -> dict:
    return {
        "id": row.id,
        "provider": row.provider,
        "from_number": row.from_number,
        "to_number": row.to_number,
        "body": row.body,
        "received_at": iso(row.received_at, tz),
        "usager_id": row.usager_id,
        "rdv_id": row.rdv_id,
        "action": row.action,
    }


def webhook_endpoint_json(endpoint, tz) -> dict:
    return {
        "id": endpoint.id,
        "url": endpoint.url,
        "events": endpoint.event_types,
        "enabled": endpoint.enabled,
        "created_at": iso(endpoint.created_at, tz),
        "disabled_at": iso(endpoint.disabled_at, tz),
        "disabled_reason": endpoint.disabled_reason,
    }
