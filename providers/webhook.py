"""Outbound webhooks: sign one event (Standard Webhooks) and POST it to one URL, safely.

Like the SMS and email adapters, this module takes plain data in (URL,
secret, webhook id, timestamp, body) and gives plain data out (the answer's
status code, or why there was none); it knows nothing of the database,
Flask or the scheduler, which decides what to retry (:mod:`scheduler.webhook_delivery`).

Signing is the ``standardwebhooks`` package's own ``Webhook.sign``, so that
receivers verify with the same library: the headers are ``webhook-id``,
``webhook-timestamp`` and ``webhook-signature`` (``v1,<base64 HMAC-SHA256>``
of ``id.timestamp.body`` with the endpoint's ``whsec_`` secret).

Server-side request forgery: an endpoint URL is somebody else's input, and
the workers sit inside the operator's network. So:

* only ``http``/``https`` without credentials in the URL, and only ``https``
  when ``require_https`` (production);
* the host is resolved at every delivery, and every address it resolves to
  must be a global one (no loopback, private, link-local, shared, reserved or
  multicast address, IPv4-mapped ones included) unless ``allow_private``;
* the connection goes to the very address that was checked (no second DNS
  lookup that a rebinding name could answer differently), with TLS still
  verified against the host name (SNI and certificate check);
* redirects are not followed, and at most 64 KiB of the answer is read.

The guarantee is about where a request goes, not about what the receiver
does with it. Connections are kept alive per (address, port, host name).
"""

from __future__ import annotations

import base64
import ipaddress
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import urllib3
from standardwebhooks.webhooks import Webhook

SECRET_PREFIX = "whsec_"
MAX_URL_LENGTH = 2000
MAX_ANSWER_BYTES = 64 * 1024
USER_AGENT = "Lapin-Webhooks/1"

Resolver = Callable[..., list]


class UnsafeUrl(ValueError):
    """An endpoint URL we refuse to call; the message is French, for the user."""


def new_secret() -> str:
    """A fresh endpoint secret: ``whsec_`` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def check_url(url: str, *, require_https: bool) -> tuple[str, str, int, str]:
    """Check an endpoint URL's form; return (scheme, host, port, path with query).

    Raises :class:`UnsafeUrl`. The addresses are checked separately
    (:func:`check_addresses`), at creation and again at every delivery.
    """
    if not isinstance(url, str) or not url.strip():
        raise UnsafeUrl("Indiquez l'URL du point de réception.")
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeUrl(f"URL trop longue ({MAX_URL_LENGTH} caractères au plus).")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UnsafeUrl("URL invalide.") from None
    allowed = ("https",) if require_https else ("http", "https")
    if parts.scheme not in allowed:
        raise UnsafeUrl(
            "Seules les URL https sont acceptées."
            if require_https
            else "L'URL doit commencer par http:// ou https://."
        )
    if not parts.hostname:
        raise UnsafeUrl("L'URL doit indiquer un nom d'hôte.")
    if parts.username or parts.password:
        raise UnsafeUrl("L'URL ne doit pas contenir d'identifiants.")
    if any(ord(ch) < 33 for ch in url):
        raise UnsafeUrl("L'URL ne doit contenir ni espace ni caractère de contrôle.")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80), path


def is_public(address: str) -> bool:
    """Whether an IP address is a global unicast one (what a webhook may reach)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped or ip.sixtofour
        if mapped is not None:
            ip = mapped
    return ip.is_global and not ip.is_multicast


def resolve(host: str, port: int, resolver: Resolver | None = None) -> list[str]:
    """Every address ``host`` resolves to (an IP literal resolves to itself)."""
    try:
        infos = (resolver or socket.getaddrinfo)(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise UnsafeUrl(f"Nom d'hôte introuvable : {host}.") from exc
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not addresses:
        raise UnsafeUrl(f"Nom d'hôte introuvable : {host}.")
    return addresses


def check_addresses(host: str, addresses: list[str], *, allow_private: bool) -> None:
    """Refuse unless every address is public (or ``allow_private``)."""
    if allow_private:
        return
    for address in addresses:
        if not is_public(address):
            # The address itself is not told: it would map the internal network.
            raise UnsafeUrl(f"Adresse refusée : {host} mène à une adresse locale ou privée.")


def check_endpoint(
    url: str, *, require_https: bool, allow_private: bool, resolver: Resolver | None = None
) -> None:
    """Everything :class:`WebhookPoster` will check, at endpoint creation."""
    _, host, port, _ = check_url(url, require_https=require_https)
    check_addresses(host, resolve(host, port, resolver), allow_private=allow_private)


def signed_headers(secret: str, webhook_id: str, at: datetime, body: str) -> dict[str, str]:
    """The three Standard Webhooks headers of one request."""
    at = at.astimezone(UTC)
    signature = Webhook(secret).sign(msg_id=webhook_id, timestamp=at, data=body)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
    }


@dataclass(frozen=True)
class WebhookRequest:
    """One event for one endpoint: the body is the exact JSON text that is signed."""

    url: str
    secret: str
    webhook_id: str
    body: str


@dataclass(frozen=True)
class WebhookResult:
    """What came back: an HTTP status, or ``error`` when there was no answer (or it was refused).

    ``refused`` means the URL was not called at all (unsafe address).
    """

    status_code: int | None
    error: str | None
    duration: float
    refused: bool = False

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def timed_out(self) -> bool:
        return self.error == "timeout"


class WebhookPoster:
    """POSTs signed events; one instance per process, shared by threads."""

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        allow_private: bool = False,
        require_https: bool = True,
        resolver: Resolver | None = None,
        ca_bundle: str | None = None,
        pool_size: int = 8,
    ) -> None:
        self.timeout = urllib3.Timeout(connect=min(timeout, 5.0), read=timeout)
        self.allow_private = allow_private
        self.require_https = require_https
        self.resolver = resolver
        self.ca_bundle = ca_bundle
        self.pool_size = pool_size
        self._pools: dict[tuple, urllib3.HTTPConnectionPool] = {}
        self._lock = threading.Lock()

    def post(self, request: WebhookRequest, at: datetime | None = None) -> WebhookResult:
        """Sign and send one request; never raises for network trouble."""
        started = time.monotonic()
        try:
            scheme, host, port, path = check_url(request.url, require_https=self.require_https)
            addresses = resolve(host, port, self.resolver)
            check_addresses(host, addresses, allow_private=self.allow_private)
        except UnsafeUrl as exc:
            return WebhookResult(None, str(exc)[:300], time.monotonic() - started, refused=True)
        headers = signed_headers(
            request.secret, request.webhook_id, at or datetime.now(UTC), request.body
        )
        default_port = 443 if scheme == "https" else 80
        headers.update(
            {
                "Host": host if port == default_port else f"{host}:{port}",
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
            }
        )
        pool = self._pool(scheme, addresses[0], port, host)
        try:
            answer = pool.urlopen(
                "POST",
                path,
                body=request.body.encode(),
                headers=headers,
                redirect=False,
                retries=False,
                timeout=self.timeout,
                preload_content=False,
                assert_same_host=False,
            )
        except (TimeoutError, urllib3.exceptions.TimeoutError):
            return WebhookResult(None, "timeout", time.monotonic() - started)
        except urllib3.exceptions.SSLError as exc:
            return WebhookResult(None, f"TLS: {exc}"[:300], time.monotonic() - started)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            return WebhookResult(None, f"connexion : {reason}"[:300], time.monotonic() - started)
        try:
            answer.read(MAX_ANSWER_BYTES, decode_content=False)
        except (urllib3.exceptions.HTTPError, OSError):
            answer.close()
        else:
            if answer.length_remaining == 0:
                answer.release_conn()
            else:
                answer.close()  # a long or unsized answer: not worth reading, not reusable
        return WebhookResult(answer.status, None, time.monotonic() - started)

    def _pool(self, scheme: str, address: str, port: int, host: str):
        key = (scheme, address, port, host)
        with self._lock:
            pool = self._pools.get(key)
            if pool is None:
                if scheme == "https":
                    pool = urllib3.HTTPSConnectionPool(
                        address,
                        port,
                        maxsize=self.pool_size,
                        server_hostname=host,
                        assert_hostname=host,
                        cert_reqs="CERT_REQUIRED",
                        ca_certs=self.ca_bundle,
                    )
                else:
                    pool = urllib3.HTTPConnectionPool(address, port, maxsize=self.pool_size)
                self._pools[key] = pool
            return pool

    def close(self) -> None:
        with self._lock:
            for pool in self._pools.values():
                pool.close()
            self._pools.clear()
