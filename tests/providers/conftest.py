"""Fixtures shared by the provider tests: free ports and a local TLS fake API."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import trustme


@pytest.fixture
def unused_tcp_port() -> int:
    """A local TCP port with nothing listening on it (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    form: dict[str, str]


@dataclass
class FakeHttpsApi:
    """A real HTTPS server on 127.0.0.1 answering canned JSON responses."""

    port: int
    ca_file: str
    requests: list[RecordedRequest] = field(default_factory=list)
    status: int = 200
    body: Any = field(default_factory=dict)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def respond(self, body: Any, status: int = 200) -> None:
        self.status, self.body = status, body


@pytest.fixture
def fake_https_api(tmp_path, monkeypatch):
    """Start an HTTPS fake trusted through ``REQUESTS_CA_BUNDLE``, as in production."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode("utf-8")
            form = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
            api.requests.append(
                RecordedRequest("POST", urlsplit(self.path).path, dict(self.headers), form)
            )
            payload = api.body if isinstance(api.body, str) else json.dumps(api.body)
            data = payload.encode("utf-8")
            self.send_response(api.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    api = FakeHttpsApi(port=server.server_address[1], ca_file=str(ca_file))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca_file))
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield api
    server.shutdown()
    server.server_close()
    thread.join()
