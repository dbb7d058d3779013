"""The OpenAPI 3.1 document: valid, complete, public, and rendered for people."""

from __future__ import annotations

import re

from openapi_spec_validator import validate

from gateway.openapi import document, undocumented_routes
from gateway.schemas import EVENT_TYPES


def test_the_document_is_valid_openapi_3_1(client):
    r = client.get("/api/v1/openapi.json")  # public: no token
    assert r.status_code == 200 and r.mimetype == "application/json"
    doc = r.get_json()
    assert doc["openapi"].startswith("3.1")
    validate(doc)


def test_every_api_route_is_documented(app):
    assert undocumented_routes(app) == []
    doc = document(app)
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1"):
            path = rule.rule.replace("<int:", "{").replace(">", "}")
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                assert (path, method.lower()) in documented, (path, method)


def test_auth_errors_and_webhooks_are_described(app):
    doc = document(app)
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    create = doc["paths"]["/api/v1/rdvs"]["post"]
    assert create["security"] == [{"bearerAuth": []}]
    assert {"201", "400", "401", "409", "422"} <= set(create["responses"])
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/RdvIn"
    }
    error = doc["components"]["schemas"]["ErrorDetail"]
    assert {"code", "message", "fields"} <= set(error["required"])
    assert doc["paths"]["/api/v1/openapi.json"]["get"]["security"] == []
    assert set(doc["webhooks"]) == set(EVENT_TYPES)
    hook = doc["webhooks"]["rdv.moved"]["post"]
    assert {p["name"] for p in hook["parameters"]} == {
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }
    listing = {p["name"] for p in doc["paths"]["/api/v1/rdvs"]["get"]["parameters"]}
    assert {"from", "to", "status", "cursor", "limit"} <= listing


def test_the_docs_page_renders_the_document_without_scripts(client, app):
    """The document is in the HTML: no script of its own (the layout's DSFR script only
    adds the menu behaviour), nothing from a CDN."""
    r = client.get("/api/docs")
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    scripts = re.findall(r"<script[^>]*>", html)
    assert scripts and all('src="/static/vendor/dsfr/' in tag for tag in scripts)
    assert "//cdn" not in html
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    for path in document(app)["paths"]:
        assert path in html
    assert "rdv.cancelled" in html and "standardwebhooks" in html
