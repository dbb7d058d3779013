"""A business tool's webhook receiver, run in the test process on 127.0.0.1.

It verifies every request with the ``standardwebhooks`` library (what a real
receiver would use) and records what it got. ``mode`` decides its answer:
``up`` (204 after ``delay`` seconds), ``down`` (503), ``slow`` (sleeps longer
than the sender's timeout). Requests whose signature does not verify are
answered 400 and recorded in ``rejected``.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass
class Received:
    webhook_id: str
    type: str
    timestamp: str
    data: dict
    headers: dict = field(default_factory=dict)


class WebhookReceiver:
    def __init__(self, secret: str | None = None, delay: float = 0.0):
        self.secret = secret
        self.delay = delay
        self.mode = "up"
        self.received: list[Received] = []
        self.rejected: list[dict] = []
        self.calls = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                status = receiver._handle(body, dict(self.headers.items()))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/lapin"

    def _handle(self, body: bytes, headers: dict) -> int:
        with self._lock:
            self.calls += 1
            mode = self.mode
        if mode == "down":
            return 503
        if mode == "slow":
            time.sleep(2.0)
        elif self.delay:
            time.sleep(self.delay)
        try:
            payload = Webhook(self.secret).verify(body, headers)
        except (WebhookVerificationError, ValueError) as exc:
            with self._lock:
                self.rejected.append({"error": str(exc), "headers": headers})
            return 400
        lower = {k.lower(): v for k, v in headers.items()}
        with self._lock:
            self.received.append(
                Received(
                    lower["webhook-id"],
                    payload.get("type", ""),
                    payload.get("timestamp", ""),
                    payload.get("data"),
                    lower,
                )
            )
        return 204

    def events(self, type_prefix: str = "") -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.type.startswith(type_prefix)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @staticmethod
    def parse(body: str) -> dict:
        return json.loads(body)
