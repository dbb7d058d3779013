"""A local fake of Twilio's Messages API, for the tests and the benchmarks.

It answers ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` like
Twilio does (201 with ``sid``, ``status``, ``num_segments``…; errors as
``{"code", "message", "more_info", "status"}``), checks HTTP basic auth
(401, code 20003), refuses a send without ``To`` and ``From`` (400, 21604),
and records every send it reads. Point the gateway at it with
``TWILIO_API_BASE_URL=<fake.base_url>`` (plain http is fine for the SDK).

It is one asyncio loop (:mod:`tests.fakes._http`): keep-alive connections,
any number of requests in flight, a few tens of microseconds of CPU per
request, so it sustains well over 1 000 sends/s while holding each one
``delay`` seconds (``python -m bench --only fake-twilio`` checks it) and is
never what limits a benchmark of the sender.

Modes (``fake.mode = ...``, or ``fake.script([...])`` for the next requests):

* ``ok``: 201, the message is accepted and recorded in ``fake.accepted``;
* ``500``: HTTP 500 (code 20500), a transient outage;
* ``429``: HTTP 429 (code 20429), throttling;
* ``invalid``: HTTP 400 (code 21211), a permanent refusal;
* ``timeout``: the request hangs (until ``hang_seconds`` or ``release()``/``stop()``,
  then a 500), so the client's own timeout fires; nothing is accepted;
* ``slow``: 201 after ``slow_seconds``, like a loaded provider;
* ``drop``: the request is read, then the connection closes without an answer
  (Twilio may or may not have taken the message: the client cannot know).

``delay`` holds every send that long before its answer (a provider's round
trip; the benchmarks use 100 ms). ``fake.script(["500", "500", "ok"])``
answers the next requests with those modes in turn, then falls back to
``fake.mode``: an outage "for a while".

In a test::

    with FakeTwilio() as fake:
        fake.mode = "429"
        ...  # run the gateway with fake.settings
        assert fake.counts["429"] == ...

In its own process (benchmarks, manual runs); ``GET /_stats`` answers what it
received (:func:`stats`)::

    python -m tests.fakes.twilio_server --port 8099 --delay 0.1
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import secrets
import threading
import urllib.request
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from time import monotonic
from urllib.parse import parse_qs, urlsplit

from ._http import FakeHttpServer, HttpRequest, HttpResponse

MODES = ("ok", "500", "429", "invalid", "timeout", "slow", "drop")
_PREFIX = "/2010-04-01/Accounts/"
_SUFFIX = "/Messages.json"
_ERRORS = {
    "500": (500, 20500, "Internal Server Error"),
    "429": (429, 20429, "Too Many Requests"),
    "invalid": (400, 21211, "The 'To' number is not a valid phone number."),
}
_GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXT = set("^{}\\[~]|€\f")


@dataclass
class Request:
    """One send the fake read (authenticated, well formed), whatever it answered."""

    account_sid: str
    form: dict[str, str]
    mode: str
    at: float = field(default_factory=monotonic)


@dataclass
class Accepted:
    """One message the fake accepted (answered 201)."""

    sid: str
    to: str
    body: str
    sender: str | None
    status_callback: str | None


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


def ref_of(status_callback: str | None) -> str:
    """The gateway's message id carried in a status callback URL (``...?ref=<id>``); "" if none."""
    query = parse_qs(urlsplit(status_callback or "").query)
    return query.get("ref", [""])[-1]


class FakeTwilio(FakeHttpServer):
    """The fake server; ``with FakeTwilio() as fake`` (a thread) or ``serve_forever()``."""

    name = "fake-twilio"

    def __init__(
        self,
        *,
        account_sid: str = "ACfake",
        auth_token: str = "fake-token",
        host: str = "127.0.0.1",
        port: int = 0,
        delay: float = 0.0,
        slow_seconds: float = 0.5,
        hang_seconds: float = 30.0,
    ) -> None:
        super().__init__(host, port)
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.mode = "ok"
        self.delay = delay
        self.slow_seconds = slow_seconds
        self.hang_seconds = hang_seconds
        self.requests: list[Request] = []
        self.accepted: list[Accepted] = []
        self.counts: Counter[str] = Counter()
        self.received = 0  # every HTTP request, /_stats included
        self.errors = 0  # 401, 400 and 404 answers
        self._script: deque[str] = deque()
        self._lock = threading.Lock()
        self._released: asyncio.Event | None = None
        self._sid_prefix = "SM" + secrets.token_hex(4)
        expected = base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode()
        self._authorization = f"Basic {expected}".encode()

    # -- control -----------------------------------------------------------------

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
        if self._released is not None:
            self.call_soon(self._released.set)

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

    def stats(self) -> dict[str, int]:
        """What ``GET /_stats`` answers: requests, accepted messages, distinct
        messages (by status callback, which carries our message id), errors."""
        with self._lock:
            distinct = {a.status_callback or f"{a.to}\0{a.body}" for a in self.accepted}
            return {
                "requests": self.received,
                "messages": len(self.accepted),
                "distinct": len(distinct),
                "errors": self.errors,
            }

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.accepted.clear()
            self.counts.clear()
            self._script.clear()
            self.mode = "ok"

    def stop(self) -> None:
        self.release()
        super().stop()

    # -- serving -----------------------------------------------------------------

    async def started(self) -> None:
        self._released = asyncio.Event()

    def _next_mode(self) -> str:
        with self._lock:
            mode = self._script.popleft() if self._script else self.mode
            _check_mode(mode)
            self.counts[mode] += 1
            return mode

    async def respond(self, request: HttpRequest) -> HttpResponse | None:
        self.received += 1
        path = request.path
        if request.method == "GET" and path == "/_stats":
            return HttpResponse(200, self.stats())
        account_sid = path[len(_PREFIX) : -len(_SUFFIX)]
        if (
            request.method != "POST"
            or not path.startswith(_PREFIX)
            or not path.endswith(_SUFFIX)
            or "/" in account_sid
        ):
            return self._error(404, 20404, "The requested resource was not found")
        authorization = request.headers.get("authorization", "").encode()
        if account_sid != self.account_sid or not secrets.compare_digest(
            authorization, self._authorization
        ):
            return self._error(401, 20003, "Authenticate")
        form = request.form()
        if not form.get("To") or not (form.get("From") or form.get("MessagingServiceSid")):
            return self._error(400, 21604, "A 'To' and a 'From' are required")
        mode = self._next_mode()
        with self._lock:
            self.requests.append(Request(account_sid, form, mode))
        if self.delay:
            await asyncio.sleep(self.delay)
        if mode == "drop":
            return None
        if mode == "timeout":
            assert self._released is not None
            try:
                await asyncio.wait_for(self._released.wait(), self.hang_seconds)
            except TimeoutError:
                pass
            mode = "500"
        elif mode == "slow":
            await asyncio.sleep(self.slow_seconds)
            mode = "ok"
        if mode in _ERRORS:
            status, code, message = _ERRORS[mode]
            return _twilio_error(status, code, message)
        return HttpResponse(201, self._accept(account_sid, form))

    def _error(self, status: int, code: int, message: str) -> HttpResponse:
        with self._lock:
            self.errors += 1
        return _twilio_error(status, code, message)

    def _accept(self, account_sid: str, form: dict[str, str]) -> dict:
        body = form.get("Body", "")
        with self._lock:
            sid = f"{self._sid_prefix}{len(self.accepted):024x}"
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
            "num_segments": str(num_segments(body)),
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


def _twilio_error(status: int, code: int, message: str) -> HttpResponse:
    return HttpResponse(
        status,
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
    )


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; one of {', '.join(MODES)}")


def stats(base_url: str) -> dict:
    """What a running fake (another process) has received so far (``GET /_stats``)."""
    with urllib.request.urlopen(base_url + "/_stats", timeout=10) as response:
        return json.load(response)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099, help="0 = any free port")
    parser.add_argument("--mode", default="ok", choices=MODES)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before every answer")
    parser.add_argument("--slow-seconds", type=float, default=0.5)
    parser.add_argument("--account-sid", default="ACfake")
    parser.add_argument("--auth-token", default="fake-token")
    args = parser.parse_args(argv)
    fake = FakeTwilio(
        account_sid=args.account_sid,
        auth_token=args.auth_token,
        host=args.host,
        port=args.port,
        delay=args.delay,
        slow_seconds=args.slow_seconds,
    )
    fake.mode = args.mode

    def ready(server: FakeTwilio) -> None:
        print(
            f"fake Twilio on {server.base_url} (mode {server.mode}, "
            f"delay {server.delay * 1000:.0f} ms); Ctrl-C to stop",
            flush=True,
        )

    fake.serve_forever(on_ready=ready)


if __name__ == "__main__":
    main()
