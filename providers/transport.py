"""The ``requests`` transport under the HTTP provider SDKs: one send, at most one POST.

A POST whose connection drops before the answer may have been acted on: the
provider may already have sent the SMS. Resending it is a policy decision
(how many attempts, which provider next, how long to wait) that belongs to
the scheduler, not to a transport that cannot tell a lost request from a
lost answer. The SDKs disagree: Vonage's ``HttpClient.make_request`` resends
a request up to ``pool_maxsize`` times when the connection closes before the
answer (``RemoteDisconnected``), whatever its ``max_retries`` says, so one
SMS could go out 64 times.

:class:`SingleSendAdapter` is mounted on the SDK's ``requests`` session and
guarantees, whatever the SDK does above it:

* **at most one request per send**: the adapter carries a per-thread budget,
  opened by :meth:`SingleSendAdapter.one_request` around one SDK call; a
  second request inside it is refused before anything is written;
* **no retries in urllib3** (``max_retries=0``);
* **connection failures leave as** :class:`TransportError` (a
  ``requests.RequestException`` that is *not* a ``requests.ConnectionError``),
  so an SDK loop that catches ``ConnectionError`` to resend never sees them.
  :class:`NotSent` means the request never left (connection refused, DNS,
  connect timeout, TLS handshake); :class:`AnswerLost` that it was written
  and the connection closed or broke before the answer: the provider may
  have taken the message. Both are transient for the scheduler, which retries
  within ``MAX_ATTEMPTS_PER_PROVIDER`` and fails over; an ``AnswerLost``
  retried is the only way the pipeline may send an SMS twice, and the
  message's error code (``no_answer``) says so.

Read timeouts stay ``requests.ReadTimeout`` (no SDK resends them).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError


class TransportError(requests.RequestException):
    """A send failed in the transport; ``code`` is the error code the adapters report."""

    code = "transport"


class NotSent(TransportError):
    """The request never reached the provider: trying again cannot duplicate it."""

    code = "connection"


class AnswerLost(TransportError):
    """The request was written but no answer came back: the provider may have taken it."""

    code = "no_answer"


class ResendRefused(TransportError):
    """A second request inside one send: refused, nothing was written."""

    code = "resend_refused"


def _never_left(exc: requests.ConnectionError) -> bool:
    """True when ``exc`` happened before the request was written."""
    if isinstance(
        exc, requests.ConnectTimeout | requests.exceptions.SSLError | requests.exceptions.ProxyError
    ):
        return True  # TLS and proxy failures come from the handshake (MaxRetryError in urllib3)
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    # NameResolutionError is a NewConnectionError.
    return isinstance(reason, NewConnectionError | ConnectTimeoutError)


class SingleSendAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` that writes at most one request per :meth:`one_request` block.

    Outside a block every request is refused: the adapter exists for sends.
    One instance is safe to share between threads (the budget is per thread).
    """

    def __init__(self, pool_maxsize: int = 64) -> None:
        super().__init__(pool_connections=4, pool_maxsize=pool_maxsize, max_retries=0)
        self._budget = threading.local()

    @contextmanager
    def one_request(self) -> Iterator[None]:
        """Allow one request on this thread for the duration of the block."""
        self._budget.left = 1
        try:
            yield
        finally:
            self._budget.left = 0

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        """Send ``request`` once, or raise a :class:`TransportError`; never retries."""
        if getattr(self._budget, "left", 0) < 1:
            raise ResendRefused(
                f"{request.method} {request.url}: a second request in one send (a retry under "
                "the adapter) or a request outside SingleSendAdapter.one_request()",
                request=request,
            )
        self._budget.left -= 1
        try:
            return super().send(
                request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies
            )
        except requests.ConnectionError as exc:
            kind = NotSent if _never_left(exc) else AnswerLost
            raise kind(str(exc), request=request) from exc
