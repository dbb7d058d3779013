"""The OpenAPI 3.1 document of the JSON API, generated from the code, and its page for humans.

Each API view declares what it takes and answers with :func:`operation`
(pydantic models from :mod:`gateway.schemas`, the same ones that validate
the requests); :func:`document` walks the app's ``/api/v1`` routes and builds
the document from those declarations and the models' JSON Schemas (2020-12,
what OpenAPI 3.1 embeds). The webhook event payloads go in the document's
``webhooks`` section. A route without a declaration is a test failure
(tests/gateway/test_openapi.py), so nothing is left out silently.

``GET /api/docs`` renders the same document server-side (no script, no CDN,
the site's own stylesheet), which keeps the Content-Security-Policy strict.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import lru_cache

from flask import Blueprint, Flask, current_app, render_template
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from . import schemas

API_PREFIX = "/api/v1"
REF = "#/components/schemas/{model}"
ERROR_TEXT = {
    400: "Corps illisible (pas un objet JSON, caractère invalide).",
    401: "Jeton manquant ou invalide.",
    404: "Introuvable dans l'organisation du jeton.",
    409: "Conflit avec l'état actuel (créneau pris, rdv annulé, usager existant…).",
    413: "Corps trop gros (MAX_CONTENT_LENGTH, 256 Kio par défaut).",
    422: "Champs invalides : chacun est listé dans error.fields.",
}


def operation(
    summary: str,
    *,
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    answers: dict[int, type[BaseModel] | None] | None = None,
    errors: tuple[int, ...] = (),
    public: bool = False,
    description: str | None = None,
) -> Callable:
    """Declare a view's contract; the view stays unchanged."""

    def mark(view: Callable) -> Callable:
        view.openapi = {
            "summary": summary,
            "description": description or (view.__doc__ or "").strip() or None,
            "body": body,
            "query": query,
            "answers": answers or {200: None},
            "errors": errors,
            "public": public,
        }
        return view

    return mark


def _models(app: Flask) -> list[tuple[type[BaseModel], str]]:
    found: list[tuple[type[BaseModel], str]] = []
    for spec in _operations(app).values():
        for model in (spec["body"], spec["query"]):
            if model is not None:
                found.append((model, "validation"))
        found.extend((m, "serialization") for m in spec["answers"].values() if m is not None)
    found.append((schemas.ErrorOut, "serialization"))
    found.extend((m, "serialization") for m in dict.fromkeys(schemas.EVENT_MODELS.values()))
    return list(dict.fromkeys(found))


def _operations(app: Flask) -> dict[tuple[str, str], dict]:
    """(OpenAPI path, method) -> declaration, for every ``/api/v1`` route."""
    found = {}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(API_PREFIX):
            continue
        spec = getattr(app.view_functions[rule.endpoint], "openapi", None)
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            found[(path, method.lower())] = spec
    return found


def undocumented_routes(app: Flask) -> list[str]:
    """``METHOD path`` of every ``/api/v1`` route without :func:`operation`."""
    return [f"{m.upper()} {p}" for (p, m), spec in _operations(app).items() if spec is None]


def document(app: Flask) -> dict:
    """The OpenAPI 3.1 document of ``app``'s JSON API."""
    return json.loads(_document_text(app))


@lru_cache(maxsize=8)
def _cached(app: Flask, base_url: str) -> str:
    return json.dumps(_build(app, base_url), ensure_ascii=False)


def _document_text(app: Flask) -> str:
    return _cached(app, app.config["PUBLIC_BASE_URL"])


def _build(app: Flask, base_url: str) -> dict:
    keys, defs = models_json_schema(_models(app), ref_template=REF)
    components = defs.get("$defs", {})

    def ref(model: type[BaseModel], mode: str = "serialization") -> dict:
        return keys[(model, mode)]

    paths: dict[str, dict] = {}
    for (path, method), spec in sorted(_operations(app).items()):
        if spec is None:
            continue
        op: dict = {
            "summary": spec["summary"],
            "operationId": f"{method}_{path}".replace("/", "_")
            .strip("_")
            .replace("{", "")
            .replace("}", "")
            .replace("-", "_"),
            "tags": [path.removeprefix(API_PREFIX).split("/")[1] or "api"],
            "responses": {},
        }
        if spec["description"]:
            op["description"] = spec["description"]
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "integer"}}
            for name in re.findall(r"{([a-z_]+)}", path)
        ]
        if spec["query"] is not None:
            parameters.extend(_query_parameters(spec["query"], components))
        if parameters:
            op["parameters"] = parameters
        if spec["body"] is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": ref(spec["body"], "validation")}},
            }
        for status, model in spec["answers"].items():
            answer: dict = {"description": "OK" if status < 300 else str(status)}
            if status == 201:
                answer["description"] = "Créé."
            if status == 204:
                answer["description"] = "Supprimé."
            if model is not None:
                answer["content"] = {"application/json": {"schema": ref(model)}}
            op["responses"][str(status)] = answer
        errors = set(spec["errors"])
        if not spec["public"]:
            errors.add(401)
            op["security"] = [{"bearerAuth": []}]
        else:
            op["security"] = []
        if spec["body"] is not None:
            errors.update({400, 413, 422})
        for status in sorted(errors):
            op["responses"][str(status)] = {"$ref": f"#/components/responses/E{status}"}
        paths.setdefault(path, {})[method] = op

    webhooks = {}
    for event_type, model in schemas.EVENT_MODELS.items():
        webhooks[event_type] = {
            "post": {
                "summary": f"Événement {event_type}",
                "description": _EVENT_TEXT[event_type]
                + " Signed per the Standard Webhooks specification (see docs/webhooks.md).",
                "operationId": "webhook_" + event_type.replace(".", "_"),
                "parameters": [
                    {
                        "name": name,
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string"},
                        "description": text,
                    }
                    for name, text in _WEBHOOK_HEADERS
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": ref(model)}},
                },
                "responses": {
                    "200": {"description": "Any 2xx answer: received. Anything else is retried."}
                },
                "security": [],
            }
        }
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "Lapin — API JSON",
            "version": "1",
            "summary": "Rendez-vous, usagers, messages et événements d'une organisation.",
            "description": (
                "Every call carries `Authorization: Bearer <token>` (from `gateway "
                "create-api-token`) and acts within that token's organisation. Errors are "
                '`{"error": {"code", "message", "fields"}}`; `fields` lists every invalid '
                "field at once. Datetimes are ISO 8601 with an offset; a `starts_at` without "
                "one is read in the organisation's time zone."
            ),
        },
        "servers": [{"url": base_url}],
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "webhooks": webhooks,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API token of the organisation (`gateway create-api-token`).",
                }
            },
            "responses": {
                f"E{status}": {
                    "description": text,
                    "content": {"application/json": {"schema": ref(schemas.ErrorOut)}},
                }
                for status, text in ERROR_TEXT.items()
            },
        },
    }


def _query_parameters(model: type[BaseModel], components: dict) -> list[dict]:
    schema = model.model_json_schema(ref_template=REF, mode="validation")
    required = set(schema.get("required", ()))
    parameters = []
    for name, prop in schema["properties"].items():
        prop = dict(prop)
        description = prop.pop("description", None)
        prop.pop("title", None)
        parameter = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if description:
            parameter["description"] = description
        parameters.append(parameter)
    for name, sub in schema.get("$defs", {}).items():
        components.setdefault(name, sub)
    return parameters


_WEBHOOK_HEADERS = (
    ("webhook-id", "The event's id (msg_…): the same on every retry; de-duplicate on it."),
    ("webhook-timestamp", "Seconds since the epoch when this attempt was signed."),
    ("webhook-signature", "v1,<base64 HMAC-SHA256 of id.timestamp.body with the secret>."),
)
_EVENT_TEXT = {
    "rdv.created": "An rdv was booked (by an agent, the API or online).",
    "rdv.moved": "An rdv's start or lieu changed.",
    "rdv.cancelled": "An rdv was cancelled (cancelled_via says by whom).",
    "rdv.status_changed": "An rdv's outcome was recorded (seen, noshow).",
    "message.status_changed": (
        "A message reached sent, delivered, undelivered, failed, cancelled or skipped."
    ),
    "inbound_sms.received": "An SMS from a known usager was received and acted on.",
    "usager.sms_opted_out": "A usager's number was opted out of SMS (STOP).",
}


bp = Blueprint("api_docs", __name__)


@bp.get("/api/docs")
def api_docs():
    """The document, rendered for people."""
    doc = document(current_app._get_current_object())
    return render_template(
        "pages/api_docs.html",
        doc=doc,
        pretty=lambda value: json.dumps(value, ensure_ascii=False, indent=2),
    )


def openapi_json_response():
    """The document as served by ``GET /api/v1/openapi.json``."""
    return current_app.response_class(
        _document_text(current_app._get_current_object()), mimetype="application/json"
    )
