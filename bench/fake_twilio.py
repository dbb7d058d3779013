"""A local fake of Twilio's Messages API, built for throughput.

``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` answers, after an
artificial delay (default 100 ms, a real provider's round trip), ``201`` with
a JSON body shaped like Twilio's (``sid`` ``SM…``, ``status`` ``queued``,
``num_segments``...). ``GET /_stats`` returns what it received:
``{"messages": n, "distinct": n, "requests": n, "errors": n}``, where
``distinct`` counts distinct status-callback URLs (each carries our message
id), so ``messages - distinct`` is the number of messages sent twice.

It is one asyncio process speaking HTTP/1.1 with keep-alive (a coroutine per
connection, no thread per request), so thousands of requests can wait out
their delay at once: it sustains well over 1 000 requests/s with a 100 ms
delay on one core (``python -m bench --only fake-twilio`` checks it).

Run it: ``python -m bench.fake_twilio --port 8765 --delay 0.1``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import re
import secrets
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from urllib.parse import parse_qsl

_PATH = re.compile(r"^/2010-04-01/Accounts/(AC[0-9a-zA-Z]{32})/Messages\.json$")
_GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXT = set("^{}\\[~]|€\f")


def num_segments(body: str) -> int:
    """Segments as Twilio counts them: 160/153 GSM-7 septets, else 70/67 UCS-2 units."""
    if all(c in _GSM7 or c in _GSM7_EXT for c in body):
        length = sum(2 if c in _GSM7_EXT else 1 for c in body)
        single, multi = 160, 153
    else:
        length = len(body.encode("utf-16-le")) // 2
        single, multi = 70, 67
    if length <= single:
        return 1
    return -(-length // multi)


class Stats:
    def __init__(self) -> None:
        self.requests = 0
        self.messages = 0
        self.errors = 0
        self.callbacks: set[str] = set()

    def as_json(self) -> dict:
        return {
            "requests": self.requests,
            "messages": self.messages,
            "distinct": len(self.callbacks),
            "errors": self.errors,
        }


def _message_json(account_sid: str, form: dict[str, str]) -> dict:
    now = format_datetime(datetime.now(UTC), usegmt=True)
    sid = "SM" + secrets.token_hex(16)
    body = form.get("Body", "")
    return {
        "account_sid": account_sid,
        "api_version": "2010-04-01",
        "body": body,
        "date_created": now,
        "date_sent": None,
        "date_updated": now,
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": form.get("From"),
        "messaging_service_sid": form.get("MessagingServiceSid"),
        "num_media": "0",
        "num_segments": str(num_segments(body)),
        "price": None,
        "price_unit": "EUR",
        "sid": sid,
        "status": "queued",
        "subresource_uris": {
            "media": f"/2010-04-01/Accounts/{account_sid}/Messages/{sid}/Media.json"
        },
        "to": form.get("To"),
        "uri": f"/2010-04-01/Accounts/{account_sid}/Messages/{sid}.json",
    }


def _response(status: int, reason: str, payload: dict, keep_alive: bool) -> bytes:
    body = json.dumps(payload).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
    )
    return head.encode() + body


def _error(status: int, reason: str, code: int, message: str, keep_alive: bool) -> bytes:
    return _response(
        status,
        reason,
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        keep_alive,
    )


class FakeTwilio:
    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.stats = Stats()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                try:
                    method, target, version = lines[0].split(" ", 2)
                except ValueError:
                    return
                headers = {}
                for line in lines[1:]:
                    name, sep, value = line.partition(":")
                    if sep:
                        headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length") or 0)
                body = await reader.readexactly(length) if length else b""
                keep_alive = (
                    headers.get("connection", "").lower() != "close" and version == "HTTP/1.1"
                )
                writer.write(await self.respond(method, target, headers, body, keep_alive))
                await writer.drain()
                if not keep_alive:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def respond(
        self, method: str, target: str, headers: dict, body: bytes, keep_alive: bool
    ) -> bytes:
        self.stats.requests += 1
        path = target.split("?", 1)[0]
        if method == "GET" and path == "/_stats":
            return _response(200, "OK", self.stats.as_json(), keep_alive)
        match = _PATH.match(path)
        if method != "POST" or not match:
            self.stats.errors += 1
            return _error(
                404, "Not Found", 20404, "The requested resource was not found", keep_alive
            )
        account_sid = match.group(1)
        if not _authorised(headers.get("authorization", ""), account_sid):
            self.stats.errors += 1
            return _error(401, "Unauthorized", 20003, "Authenticate", keep_alive)
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        if not form.get("To") or not (form.get("From") or form.get("MessagingServiceSid")):
            self.stats.errors += 1
            return _error(400, "Bad Request", 21604, "A 'To' and a 'From' are required", keep_alive)
        if self.delay:
            await asyncio.sleep(self.delay)
        self.stats.messages += 1
        self.stats.callbacks.add(
            form.get("StatusCallback") or (form["To"] + "\0" + form.get("Body", ""))
        )
        return _response(201, "Created", _message_json(account_sid, form), keep_alive)


def _authorised(header: str, account_sid: str) -> bool:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, _, _password = base64.b64decode(value).decode().partition(":")
    except ValueError:
        return False
    return user == account_sid


async def serve(port: int, delay: float) -> None:
    fake = FakeTwilio(delay)
    server = await asyncio.start_server(fake.handle, "127.0.0.1", port, backlog=4096)
    print(f"fake twilio on http://127.0.0.1:{port} (delay {delay * 1000:.0f} ms)", flush=True)
    async with server:
        await server.serve_forever()


@contextlib.contextmanager
def in_thread(delay: float = 0.0) -> Iterator[tuple[str, FakeTwilio]]:
    """Run the fake on an event loop in a daemon thread (for tests); yields (base URL, fake)."""
    import threading

    loop = asyncio.new_event_loop()
    fake = FakeTwilio(delay)
    server = loop.run_until_complete(asyncio.start_server(fake.handle, "127.0.0.1", 0))
    port = server.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}", fake
    finally:
        loop.call_soon_threadsafe(server.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


@contextlib.contextmanager
def running(ctx, delay: float = 0.1) -> Iterator[str]:
    """Run the fake in its own process for the block; yields its base URL."""
    from .common import free_port, port_open, process, wait_for

    port = free_port()
    args = [sys.executable, "-m", "bench.fake_twilio", "--port", str(port), "--delay", str(delay)]
    env = dict(os.environ)
    with process(args, env, "fake-twilio", ctx) as proc:
        wait_for(lambda: proc.poll() is None and port_open(port), 20, what="the fake Twilio API")
        yield f"http://127.0.0.1:{port}"


def stats(base_url: str) -> dict:
    """What the fake has received so far."""
    import urllib.request

    with urllib.request.urlopen(base_url + "/_stats", timeout=10) as response:
        return json.load(response)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--delay", type=float, default=0.1, help="seconds before answering a send")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, args.delay))


if __name__ == "__main__":
    main()
