"""A fast fake of Twilio's Messages API for throughput runs (asyncio, one thread).

:mod:`tests.fakes.twilio_server` (a thread per connection, error modes,
request recording) is the fake for tests. This one only answers
``POST .../Messages.json`` with a 201 after ``--latency`` seconds, like a
provider that takes 100 ms, but costs little CPU per request (a few tens of
microseconds), so that on a 2-core machine the fake is not what limits a
benchmark of the sender. Keep-alive connections, any number in flight.

    python -m tests.fakes.async_twilio --port 8099 --latency 0.1

``GET /stats`` answers ``{"accepted": n}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal

_SID_PREFIX = f"SM{os.getpid():08x}"


class FastFakeTwilio:
    """The server state: latency and how many messages it accepted."""

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.accepted = 0

    def _answer(self, method: bytes, path: bytes) -> tuple[int, bytes]:
        if method == b"GET" and path == b"/stats":
            return 200, json.dumps({"accepted": self.accepted}).encode()
        if method != b"POST" or not path.endswith(b"/Messages.json"):
            return 404, b'{"code": 20404, "message": "Not Found", "status": 404}'
        self.accepted += 1
        sid = f"{_SID_PREFIX}{self.accepted:024x}"
        return 201, json.dumps(
            {
                "sid": sid,
                "status": "queued",
                "num_segments": "1",
                "error_code": None,
                "error_message": None,
                "direction": "outbound-api",
            }
        ).encode()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one keep-alive connection: one request at a time, as HTTP/1.1 clients do."""
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, _, headers = head.partition(b"\r\n")
                method, path, _ = request_line.split(b" ", 2)
                length = 0
                for line in headers.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if length:
                    await reader.readexactly(length)
                if method == b"POST" and self.latency > 0:
                    await asyncio.sleep(self.latency)
                status, body = self._answer(method, path.split(b"?", 1)[0])
                reason = {200: b"OK", 201: b"CREATED", 404: b"NOT FOUND"}[status]
                writer.write(
                    b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (status, reason, len(body), body)
                )
        except (asyncio.IncompleteReadError, asyncio.CancelledError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()


async def serve(host: str, port: int, latency: float, ready=None) -> None:
    """Serve until cancelled; print (or hand ``ready``) the port once listening."""
    fake = FastFakeTwilio(latency)
    server = await asyncio.start_server(fake.handle, host, port, backlog=1024)
    bound = server.sockets[0].getsockname()[1]
    if ready is not None:
        ready(bound)
    else:
        print(bound, flush=True)
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set_result, None)
    async with server:
        await stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = any free port (printed)")
    parser.add_argument("--latency", type=float, default=0.1, help="seconds before each 201")
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port, args.latency))


if __name__ == "__main__":
    main()
