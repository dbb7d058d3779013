"""Check real API answers against the OpenAPI document's schemas (jsonschema, 2020-12)."""

from __future__ import annotations

import re

from jsonschema import Draft202012Validator


class AnswerChecker:
    """Validates each ``/api/v1`` answer against its operation's documented answer."""

    def __init__(self, doc: dict):
        self.doc = doc
        self.checked = 0
        self.problems: list[str] = []
        self._routes = [
            (re.compile("^" + re.sub(r"{[a-z_]+}", r"[^/]+", path) + "$"), path)
            for path in doc["paths"]
        ]

    def _schema(self, ref_or_schema: dict) -> dict:
        return {**ref_or_schema, "components": self.doc["components"]}

    def check(self, method: str, path: str, response) -> None:
        if not path.startswith("/api/v1/"):
            return
        template = next((t for pattern, t in self._routes if pattern.match(path)), None)
        operation = self.doc["paths"].get(template, {}).get(method.lower()) if template else None
        if operation is None:
            return  # no such operation: the 404/405 of an unknown route
        answer = operation["responses"].get(str(response.status_code))
        where = f"{method} {path} -> {response.status_code}"
        if answer is None:
            self.problems.append(f"{where}: status not documented")
            return
        if "$ref" in answer:
            answer = self.doc["components"]["responses"][answer["$ref"].rsplit("/", 1)[1]]
        content = answer.get("content")
        if content is None:
            if response.get_data():
                self.problems.append(f"{where}: documented without a body, got one")
            return
        schema = self._schema(content["application/json"]["schema"])
        errors = list(Draft202012Validator(schema).iter_errors(response.get_json()))
        for error in errors:
            self.problems.append(f"{where}: {list(error.absolute_path)} {error.message}")
        self.checked += 1
