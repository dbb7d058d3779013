"""A local fake of Twilio's Messages API, for reliability tests and benchmarks.

It answers ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` like
Twilio does (201 with ``sid``, ``status``, ``num_segments``…; errors as
``{"code", "message", "more_info", "status"}``), checks HTTP basic auth, and
records every request. Point the gateway at it with
``TWILIO_API_BASE_URL=<fake.base_url>`` (plain http is fine for the SDK).

Modes (``fake.mode = ...`` or ``fake.script([...])`` for a sequence):

* ``ok``: 201, the message is accepted and recorded in ``fake.accepted``;
* ``500``: HTTP 500 (code 20500), a transient outage;
* ``429``: HTTP 429 (code 20429), throttling;
* ``invalid``: HTTP 400 (code 21211), a permanent refusal;
* ``timeout``: the request hangs (until ``hang_seconds`` or ``release()``/``stop()``),
  so the client's own timeout fires; nothing is accepted;
* ``slow``: 201 after ``slow_seconds``, like a loaded provider.

``fake.script(["500", "500", "ok"])`` answers the next requests with those
modes in turn, then falls back to ``fake.mode``: an outage "for a while".

In a test::

    with FakeTwilio() as fake:
        fake.mode = "429"
        ...  # run the gateway with TWILIO_API_BASE_URL=fake.base_url
        assert fake.counts["429"] == ...

From a shell (benchmarks, manual runs)::

    python -m tests.fakes.twilio_server --port 8099 --mode slow --slow-seconds 0.2
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import secrets
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self
from urllib.parse import parse_qs, urlsplit

MODES = ("ok", "500", "429", "invalid", "timeout", "slow")
_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<sid>[^/]+)/Messages\.json$")
_ERRORS = {
    "500": (500, 20500, "Internal Server Error"),
    "429": (429, 20429, "Too Many Requests"),
    "invalid": (400, 21211, "The 'To' number is not a valid phone number."),
}


@dataclass
class Request:
    """One request the fake received."""

    account_sid: str
    form: dict[str, str]
    mode: str
    at: float = field(default_factory=time.monotonic)


@dataclass
class Accepted:
    """One message the fake accepted (answered 201)."""

    sid: str
    to: str
    body: str
    sender: str | None
    status_callback: str | None


class FakeTwilio:
    """The fake server; start with ``start()`` or a ``with`` block."""

    def __init__(
        self,
        *,
        account_sid: str = "ACfake",
        auth_token: str = "fake-token",
        host: str = "127.0.0.1",
        port: int = 0,
        slow_seconds: float = 0.5,
        hang_seconds: float = 30.0,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.mode = "ok"
        self.slow_seconds = slow_seconds
        self.hang_seconds = hang_seconds
        self.requests: list[Request] = []
        self.accepted: list[Accepted] = []
        self.counts: Counter[str] = Counter()
        self._script: deque[str] = deque()
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server = _Server((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- control -----------------------------------------------------------------

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def settings(self) -> dict[str, str]:
        """Provider settings (environment names) that point the gateway here."""
        return {
            "TWILIO_ACCOUNT_SID": self.account_sid,
            "TWILIO_AUTH_TOKEN": self.auth_token,
            "TWILIO_FROM": "+33700000000",
            "TWILIO_API_BASE_URL": self.base_url,
        }

    def script(self, modes: list[str]) -> None:
        """Answer the next requests with ``modes`` in order, then with ``self.mode``."""
        for mode in modes:
            _check_mode(mode)
        with self._lock:
            self._script.extend(modes)

    def release(self) -> None:
        """Let every request held by ``timeout`` mode finish (with a 500)."""
        self._release.set()

    def posts_by_ref(self, modes: tuple[str, ...] | None = None) -> Counter[str]:
        """How many POSTs the fake received per gateway message id (the ``ref`` of
        ``StatusCallback``), whatever the answer; only those answered with ``modes`` if given."""
        with self._lock:
            requests = list(self.requests)
        return Counter(
            ref_of(r.form.get("StatusCallback"))
            for r in requests
            if modes is None or r.mode in modes
        )

    def sids_by_ref(self) -> dict[str, set[str]]:
        """The sids the fake issued (201 answers) per gateway message id."""
        with self._lock:
            accepted = list(self.accepted)
        sids: dict[str, set[str]] = {}
        for message in accepted:
            sids.setdefault(ref_of(message.status_callback), set()).add(message.sid)
        return sids

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.accepted.clear()
            self.counts.clear()
            self._script.clear()
            self.mode = "ok"

    def start(self) -> FakeTwilio:
        self._release.clear()
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="fake-twilio", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- serving -----------------------------------------------------------------

    def _next_mode(self) -> str:
        with self._lock:
            mode = self._script.popleft() if self._script else self.mode
            _check_mode(mode)
            self.counts[mode] += 1
            return mode

    def _authorised(self, header: str | None) -> bool:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return secrets.compare_digest(header or "", f"Basic {expected}")

    def _handler_class(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet: tests read fake.requests instead
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(length)
                if len(data) < length:
                    # The client died mid-request (a killed worker): no request to answer.
                    self.close_connection = True
                    return None
                raw = data.decode("utf-8", "replace")
                match = _PATH.match(self.path.split("?")[0])
                if not match:
                    return self._json(404, {"code": 20404, "message": "Not found", "status": 404})
                if (
                    not fake._authorised(self.headers.get("Authorization"))
                    or match["sid"] != fake.account_sid
                ):
                    return self._json(
                        401, {"code": 20003, "message": "Authenticate", "status": 401}
                    )
                form = {k: v[-1] for k, v in parse_qs(raw, keep_blank_values=True).items()}
                mode = fake._next_mode()
                with fake._lock:
                    fake.requests.append(Request(match["sid"], form, mode))
                if mode == "timeout":
                    fake._release.wait(fake.hang_seconds)
                    mode = "500"
                elif mode == "slow":
                    time.sleep(fake.slow_seconds)
                    mode = "ok"
                if mode in _ERRORS:
                    status, code, message = _ERRORS[mode]
                    return self._json(
                        status,
                        {
                            "code": code,
                            "message": message,
                            "status": status,
                            "more_info": f"https://www.twilio.com/docs/errors/{code}",
                        },
                    )
                return self._json(201, fake._accept(match["sid"], form))

            def _json(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (its timeout): exactly what timeout mode is for

        return Handler

    def _accept(self, account_sid: str, form: dict[str, str]) -> dict:
        sid = "SM" + secrets.token_hex(16)
        body = form.get("Body", "")
        segments = 1 if len(body) <= 160 else -(-len(body) // 153)
        with self._lock:
            self.accepted.append(
                Accepted(
                    sid, form.get("To", ""), body, form.get("From"), form.get("StatusCallback")
                )
            )
        now = format_datetime(datetime.now(UTC), usegmt=True)
        return {
            "sid": sid,
            "account_sid": account_sid,
            "to": form.get("To"),
            "from": form.get("From"),
            "messaging_service_sid": form.get("MessagingServiceSid"),
            "body": body,
            "status": "queued",
            "num_segments": str(segments),
            "num_media": "0",
            "direction": "outbound-api",
            "api_version": "2010-04-01",
            "price": None,
            "price_unit": "EUR",
            "error_code": None,
            "error_message": None,
            "date_created": now,
            "date_updated": now,
            "date_sent": None,
            "uri": f"/2010-04-01/Accounts/{account_sid}/Messages/{sid}.json",
            "subresource_uris": {},
        }


class _Server(ThreadingHTTPServer):
    # The default listen backlog (5) resets connections when a few workers open
    # dozens at once (workers x SMS_CONCURRENCY); a real API does not.
    request_queue_size = 256


def ref_of(status_callback: str | None) -> str:
    """The gateway's message id carried in a status callback URL (``...?ref=<id>``); "" if none."""
    query = parse_qs(urlsplit(status_callback or "").query)
    return query.get("ref", [""])[-1]


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; one of {', '.join(MODES)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--mode", default="ok", choices=MODES)
    parser.add_argument("--slow-seconds", type=float, default=0.5)
    parser.add_argument("--account-sid", default="ACfake")
    parser.add_argument("--auth-token", default="fake-token")
    args = parser.parse_args()
    fake = FakeTwilio(
        account_sid=args.account_sid,
        auth_token=args.auth_token,
        host=args.host,
        port=args.port,
        slow_seconds=args.slow_seconds,
    )
    fake.mode = args.mode
    print(f"fake Twilio on {fake.base_url} (mode {fake.mode}); Ctrl-C to stop", flush=True)
    fake._server.serve_forever()


if __name__ == "__main__":
    main()
