"""A local fake of Vonage's SMS API over TLS, for the adapter and pipeline tests.

The SDK always calls ``https://{rest_host}``, so the fake speaks HTTPS with a
certificate from its own throw-away authority (trustme); the client trusts it
through ``REQUESTS_CA_BUNDLE=<fake.ca_file>``, as production trusts Vonage's,
and is pointed at it with ``VONAGE_REST_HOST=<fake.host>``.

``POST /sms/json`` checks HTTP basic auth (key and secret, 401 otherwise),
records the request, and answers as Vonage does: HTTP 200 with
``{"message-count": "n", "messages": [{"status": "0", "message-id": ...,
"client-ref": ...}, ...]}``, one entry per part of a long message.

Modes (``fake.mode``):

* ``ok``: the answer above;
* ``drop``: read the whole POST, then close the connection without answering
  (the client cannot know whether the SMS went; the provider may have sent it).

``fake.respond(body, status)`` answers every request with that JSON instead
(error statuses, partial failures, gateway errors).

    with FakeVonage() as fake:
        os.environ.update(fake.env)   # REQUESTS_CA_BUNDLE
        ...  # send with VONAGE_REST_HOST=fake.host
        assert fake.posts_by_ref() == {"42": 1}
"""

from __future__ import annotations

import base64
import secrets
import shutil
import ssl
import tempfile
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustme

from ._http import FakeHttpServer, HttpRequest, HttpResponse

MODES = ("ok", "drop")


@dataclass
class RecordedRequest:
    """One request the fake received (header names lower-case)."""

    method: str
    path: str
    headers: dict[str, str]
    form: dict[str, str]
    mode: str


class FakeVonage(FakeHttpServer):
    """The fake SMS API; ``with FakeVonage() as fake`` or ``start()``/``stop()``."""

    name = "fake-vonage"

    def __init__(
        self, *, api_key: str = "fakekey", api_secret: str = "fake-secret", port: int = 0
    ) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="fake-vonage-"))
        authority = trustme.CA()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        authority.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        self.ca_file = str(self._dir / "ca.pem")
        authority.cert_pem.write_to_path(self.ca_file)
        super().__init__("127.0.0.1", port, ssl_context=context)
        self.api_key = api_key
        self.api_secret = api_secret
        self.mode = "ok"
        self.requests: list[RecordedRequest] = []
        self._canned: tuple[int, Any] | None = None
        self._lock = threading.Lock()

    # -- control -----------------------------------------------------------------

    @property
    def rest_host(self) -> str:
        """What ``VONAGE_REST_HOST`` must be: ``127.0.0.1:<port>``."""
        return f"{self.host}:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """Process environment the client needs to trust the fake's certificate."""
        return {"REQUESTS_CA_BUNDLE": self.ca_file}

    @property
    def settings(self) -> dict[str, str]:
        """Provider settings (environment names) that point the gateway here."""
        return {
            "VONAGE_API_KEY": self.api_key,
            "VONAGE_API_SECRET": self.api_secret,
            "VONAGE_FROM": "LAPIN",
            "VONAGE_REST_HOST": self.rest_host,
        }

    def respond_with(self, body: Any, status: int = 200) -> None:
        """Answer every request with ``body`` (JSON) and ``status`` from now on."""
        self._canned = (status, body)

    def posts_by_ref(self) -> Counter[str]:
        """How many ``/sms/json`` POSTs the fake received per ``client-ref``, answered or not."""
        with self._lock:
            return Counter(r.form.get("client-ref", "") for r in self.requests)

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    # -- serving -----------------------------------------------------------------

    async def respond(self, request: HttpRequest) -> HttpResponse | None:
        if request.method != "POST" or request.path != "/sms/json":
            return HttpResponse(404, {"type": "NOT_FOUND", "title": "Not Found"})
        if not self._authorised(request.headers.get("authorization", "")):
            return HttpResponse(401, {"type": "UNAUTHORIZED", "title": "Invalid credentials"})
        form = request.form()
        mode = self.mode
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {', '.join(MODES)}")
        with self._lock:
            self.requests.append(
                RecordedRequest(request.method, request.path, request.headers, form, mode)
            )
        if mode == "drop":
            return None
        if self._canned is not None:
            status, body = self._canned
            return HttpResponse(status, body)
        return HttpResponse(200, _accepted(form))

    def _authorised(self, header: str) -> bool:
        expected = base64.b64encode(f"{self.api_key}:{self.api_secret}".encode()).decode()
        return secrets.compare_digest(header.encode(), f"Basic {expected}".encode())


def _accepted(form: dict[str, str]) -> dict:
    text = form.get("text", "")
    single, multi = (70, 67) if form.get("type") == "unicode" else (160, 153)
    parts = 1 if len(text) <= single else -(-len(text) // multi)
    return {
        "message-count": str(parts),
        "messages": [
            {
                "to": form.get("to", ""),
                "message-id": secrets.token_hex(8).upper(),
                "status": "0",
                "remaining-balance": "10.00",
                "message-price": "0.0333",
                "network": "20801",
                "client-ref": form.get("client-ref", ""),
            }
            for _ in range(parts)
        ],
    }
