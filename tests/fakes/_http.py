"""The HTTP/1.1 server under the fake provider APIs: asyncio, one thread, optional TLS.

One event loop serves every connection (keep-alive, any number of requests in
flight), so a fake costs a few tens of microseconds of CPU per request and
can hold thousands of requests through an artificial delay: the same fake
serves the tests (error modes, recording) and the benchmarks (thousands of
sends per second). The price is a deliberately small HTTP: requests with a
``Content-Length`` body (what the provider SDKs send), answers always with a
``Content-Length``; no chunked bodies, no pipelining.

A fake subclasses :class:`FakeHttpServer` and implements :meth:`respond`,
which returns an :class:`HttpResponse`, or ``None`` to close the connection
without answering (after the request was read: the client cannot know whether
it was acted on). It runs in a daemon thread (``with Fake() as fake:``) or in
the foreground (``fake.serve_forever()``, for a separate process).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import ssl
import threading
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import parse_qsl

_REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass
class HttpRequest:
    """One request as read from the wire; header names are lower-case."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    def form(self) -> dict[str, str]:
        """The urlencoded body as a dict (the last value of a repeated name wins)."""
        return dict(parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True))


@dataclass
class HttpResponse:
    """An answer: ``body`` is JSON-encoded unless it is bytes or str."""

    status: int
    body: Any = field(default_factory=dict)
    content_type: str = "application/json"

    def encode(self, keep_alive: bool) -> bytes:
        body = self.body
        if isinstance(body, str):
            body = body.encode()
        elif not isinstance(body, bytes):
            body = json.dumps(body).encode()
        head = (
            f"HTTP/1.1 {self.status} {_REASONS.get(self.status, 'Status')}\r\n"
            f"Content-Type: {self.content_type}\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
        )
        return head.encode() + body


class FakeHttpServer:
    """Serve :meth:`respond` over HTTP/1.1 (HTTPS with ``ssl_context``) on ``host:port``."""

    name = "fake-http"

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Future | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task] = set()

    async def respond(self, request: HttpRequest) -> HttpResponse | None:
        """The answer to ``request``; ``None`` closes the connection without one."""
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://{self.host}:{self.port}"

    # -- running -----------------------------------------------------------------

    def start(self) -> Self:
        """Serve from a daemon thread; returns once the port is bound."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            try:
                asyncio.run(self._main(ready))
            except BaseException as exc:  # noqa: BLE001 - reported to start()
                failure.append(exc)
                ready.set()

        self._thread = threading.Thread(target=run, name=self.name, daemon=True)
        self._thread.start()
        if not ready.wait(10) or failure:
            raise RuntimeError(f"{self.name} did not start") from (failure or [None])[0]
        return self

    def stop(self) -> None:
        """Stop serving: held requests are cancelled, connections closed."""
        if self.loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                self.loop.call_soon_threadsafe(_resolve, self._stop)
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def serve_forever(self, on_ready=None) -> None:
        """Serve in the foreground until SIGTERM or SIGINT (a fake in its own process)."""
        asyncio.run(self._main(on_ready=on_ready, signals=True))

    def call_soon(self, callback, *args) -> None:
        """Run ``callback(*args)`` on the server's loop (from any thread)."""
        if self.loop is not None:
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(callback, *args)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    async def _main(self, ready=None, on_ready=None, signals: bool = False) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = self.loop.create_future()
        server = await asyncio.start_server(
            self._serve, self.host, self.port, ssl=self.ssl_context, backlog=4096
        )
        self.port = server.sockets[0].getsockname()[1]
        if signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self.loop.add_signal_handler(sig, _resolve, self._stop)
        await self.started()
        if ready is not None:
            ready.set()
        if on_ready is not None:
            on_ready(self)
        async with server:
            await self._stop
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def started(self) -> None:
        """Hook: runs on the loop once the port is bound, before serving."""

    # -- one connection ----------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    return  # the client closed, or died mid-request: nothing to answer
                keep_alive = request.headers.get("connection", "").lower() != "close"
                response = await self.respond(request)
                if response is None:
                    return  # drop: close without answering
                writer.write(response.encode(keep_alive))
                await writer.drain()
                if not keep_alive:
                    return
        except (ConnectionError, ssl.SSLError, asyncio.CancelledError):
            return
        finally:
            self._tasks.discard(task)
            with contextlib.suppress(Exception):
                writer.close()


async def _read_request(reader: asyncio.StreamReader) -> HttpRequest | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, _version = lines[0].split(" ", 2)
    except ValueError:
        return None
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    try:
        length = int(headers.get("content-length") or 0)
        body = await reader.readexactly(length) if length else b""
    except (ValueError, asyncio.IncompleteReadError):
        return None
    return HttpRequest(method, target, headers, body)


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)
