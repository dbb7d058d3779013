"""A business tool's webhook receiver, for the tests and the webhook benchmark.

Every POST is verified with the ``standardwebhooks`` library (what a real
receiver would use) and recorded. ``mode`` decides the answer: ``up`` (204
after ``delay`` seconds), ``down`` (503), ``slow`` (answers after 2 s, longer
than the sender's timeout in the tests). A request whose signature does not
verify is answered 400 and recorded in ``rejected``. ``GET /_stats`` returns
``{"requests", "received", "distinct", "bad_signatures"}``: ``received -
distinct`` counts events delivered twice (same ``webhook-id``).

In the tests it runs in a thread (``WebhookReceiver(secret)``); the benchmark
runs it in its own process: ``python -m tests.fakes.webhook_receiver --port 0
--delay 0.1 --secret whsec_…``.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
from dataclasses import dataclass, field

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from ._http import FakeHttpServer, HttpRequest, HttpResponse
from .twilio_server import stats  # noqa: F401 - the same GET /_stats, for the benchmark


@dataclass
class Received:
    webhook_id: str
    type: str
    timestamp: str
    data: dict | None
    headers: dict = field(default_factory=dict)


class WebhookReceiver(FakeHttpServer):
    name = "fake-webhook-receiver"

    def __init__(
        self,
        secret: str | None = None,
        delay: float = 0.0,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        keep: bool = True,
        start: bool = True,
    ):
        super().__init__(host, port)
        self.secret = secret
        self.delay = delay
        self.keep = keep  # keep each request (tests); the benchmark only counts
        self.mode = "up"
        self.received: list[Received] = []
        self.rejected: list[dict] = []
        self.calls = 0
        self.ids: set[str] = set()
        self.count = 0
        self._lock = threading.Lock()
        if start:
            self.start()

    @property
    def url(self) -> str:
        return self.base_url + "/hooks/lapin"

    async def respond(self, request: HttpRequest) -> HttpResponse:
        if request.method == "GET" and request.path == "/_stats":
            return HttpResponse(200, self.stats())
        with self._lock:
            self.calls += 1
            mode = self.mode
        if mode == "down":
            return HttpResponse(503, {})
        if mode == "slow":
            await asyncio.sleep(2.0)
        elif self.delay:
            await asyncio.sleep(self.delay)
        try:
            payload = Webhook(self.secret).verify(request.body, request.headers)
        except (WebhookVerificationError, ValueError) as exc:
            with self._lock:
                self.rejected.append({"error": str(exc), "headers": request.headers})
            return HttpResponse(400, {})
        webhook_id = request.headers["webhook-id"]
        with self._lock:
            self.count += 1
            self.ids.add(webhook_id)
            if self.keep:
                self.received.append(
                    Received(
                        webhook_id,
                        payload.get("type", ""),
                        payload.get("timestamp", ""),
                        payload.get("data"),
                        dict(request.headers),
                    )
                )
        return HttpResponse(204, b"")

    def stats(self) -> dict:
        with self._lock:
            return {
                "requests": self.calls,
                "received": self.count,
                "distinct": len(self.ids),
                "bad_signatures": len(self.rejected),
            }

    def events(self, type_prefix: str = "") -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.type.startswith(type_prefix)]

    def close(self) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--delay", type=float, default=0.1, help="seconds before every answer")
    parser.add_argument("--secret", required=True)
    args = parser.parse_args(argv)
    receiver = WebhookReceiver(
        args.secret, args.delay, host=args.host, port=args.port, keep=False, start=False
    )

    def ready(server: WebhookReceiver) -> None:
        print(f"fake webhook receiver on {server.base_url}", flush=True)

    receiver.serve_forever(on_ready=ready)


if __name__ == "__main__":
    main()
