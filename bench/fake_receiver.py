"""A local webhook receiver for the outbound webhook benchmark: answers 204 after a delay.

Every ``POST`` is verified with the ``standardwebhooks`` library (the endpoint's
secret is given with ``--secret``) and answered ``204`` after ``--delay``
seconds (100 ms by default, a business tool's round trip). ``GET /_stats``
returns ``{"received", "distinct", "bad_signatures", "requests"}``; ``received
- distinct`` is the number of events delivered twice (same ``webhook-id``).

One asyncio process with HTTP/1.1 keep-alive, the same server loop as
:mod:`bench.fake_twilio`.

Run it: ``python -m bench.fake_receiver --port 8766 --delay 0.1 --secret whsec_…``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Iterator

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from .fake_twilio import FakeTwilio, _response


class FakeReceiver(FakeTwilio):
    def __init__(self, delay: float, secret: str) -> None:
        super().__init__(delay)
        self.webhook = Webhook(secret)
        self.received = 0
        self.ids: set[str] = set()
        self.bad = 0

    async def respond(
        self, method: str, target: str, headers: dict, body: bytes, keep_alive: bool
    ) -> bytes:
        self.stats.requests += 1
        if method == "GET" and target.startswith("/_stats"):
            stats = {
                "requests": self.stats.requests,
                "received": self.received,
                "distinct": len(self.ids),
                "bad_signatures": self.bad,
            }
            return _response(200, "OK", stats, keep_alive)
        if self.delay:
            await asyncio.sleep(self.delay)
        try:
            self.webhook.verify(body, headers, json_parse=False)
        except WebhookVerificationError:
            self.bad += 1
            return _response(400, "Bad Request", {}, keep_alive)
        self.received += 1
        self.ids.add(headers["webhook-id"])
        return b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n" + (
            b"Connection: keep-alive\r\n\r\n" if keep_alive else b"Connection: close\r\n\r\n"
        )


async def serve(port: int, delay: float, secret: str) -> None:
    fake = FakeReceiver(delay, secret)
    server = await asyncio.start_server(fake.handle, "127.0.0.1", port, backlog=4096)
    print(f"fake receiver on http://127.0.0.1:{port} (delay {delay * 1000:.0f} ms)", flush=True)
    async with server:
        await server.serve_forever()


@contextlib.contextmanager
def running(ctx, secret: str, delay: float = 0.1) -> Iterator[str]:
    """Run the receiver in its own process for the block; yields its base URL."""
    from .common import free_port, port_open, process, wait_for

    port = free_port()
    args = [sys.executable, "-m", "bench.fake_receiver", "--port", str(port)]
    args += ["--delay", str(delay), "--secret", secret]
    with process(args, dict(os.environ), "fake-receiver", ctx) as proc:
        wait_for(lambda: proc.poll() is None and port_open(port), 20, what="the fake receiver")
        yield f"http://127.0.0.1:{port}"


def stats(base_url: str) -> dict:
    import urllib.request

    with urllib.request.urlopen(base_url + "/_stats", timeout=10) as response:
        return json.load(response)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--delay", type=float, default=0.1)
    parser.add_argument("--secret", required=True)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, args.delay, args.secret))


if __name__ == "__main__":
    main()
