"""The outbound webhook POSTer: Standard Webhooks signatures, and SSRF refusals."""

from __future__ import annotations

import socket
from datetime import UTC, datetime

import pytest
import trustme
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from providers.webhook import (
    UnsafeUrl,
    WebhookPoster,
    WebhookRequest,
    check_addresses,
    check_endpoint,
    check_url,
    new_secret,
    signed_headers,
)
from tests.fakes.webhook_receiver import WebhookReceiver


@pytest.fixture
def receiver():
    r = WebhookReceiver(secret=new_secret())
    yield r
    r.close()


def resolver_of(*answers):
    """A resolver answering each call with the next address (the last one repeats)."""
    calls = []

    def resolve(host, port, **kwargs):
        address = answers[min(len(calls), len(answers) - 1)]
        calls.append(host)
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (address, port))]

    resolve.calls = calls
    return resolve


def test_signatures_verify_with_the_standardwebhooks_library():
    secret = new_secret()
    assert secret.startswith("whsec_")
    at = datetime.now(UTC)
    body = '{"type":"rdv.created","timestamp":"2026-06-01T08:00:00Z","data":{"id":1}}'
    headers = signed_headers(secret, "msg_1", at, body)
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(secret).verify(body, headers)["data"] == {"id": 1}
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace("1}", "2}"), headers)


def test_a_post_reaches_the_receiver_signed(receiver):
    poster = WebhookPoster(allow_private=True, require_https=False)
    result = poster.post(WebhookRequest(receiver.url, receiver.secret, "msg_a", '{"type":"x"}'))
    assert result.ok and result.status_code == 204
    assert [r.webhook_id for r in receiver.received] == ["msg_a"]
    receiver.mode = "down"
    result = poster.post(WebhookRequest(receiver.url, receiver.secret, "msg_b", '{"type":"x"}'))
    assert not result.ok and result.status_code == 503 and result.error is None


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.org/hook",
        "file:///etc/passwd",
        "https://user:pw@example.org/hook",
        "https:///no-host",
        "https://example.org:99999/",
        "javascript:alert(1)",
        "https://exa mple.org/",
        "",
    ],
)
def test_malformed_urls_are_refused(url):
    with pytest.raises(UnsafeUrl):
        check_url(url, require_https=False)


def test_production_takes_https_only():
    with pytest.raises(UnsafeUrl, match="https"):
        check_url("http://example.org/hook", require_https=True)
    assert check_url("https://example.org/hook?a=1", require_https=True) == (
        "https",
        "example.org",
        443,
        "/hook?a=1",
    )


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.5.5.5",
        "10.0.0.1",
        "172.16.3.4",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",
        "224.0.0.1",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
    ],
)
def test_local_and_private_addresses_are_refused(address):
    with pytest.raises(UnsafeUrl, match="locale ou privée"):
        check_addresses("hooks.example.org", [address], allow_private=False)
    check_addresses("hooks.example.org", [address], allow_private=True)


def test_a_name_with_one_private_address_among_public_ones_is_refused():
    with pytest.raises(UnsafeUrl):
        check_addresses("h", ["93.184.216.34", "10.1.2.3"], allow_private=False)
    check_addresses("h", ["93.184.216.34", "2606:2800:220:1::"], allow_private=False)


def test_loopback_is_never_called_without_allow_private(receiver):
    poster = WebhookPoster(allow_private=False, require_https=False)
    result = poster.post(WebhookRequest(receiver.url, receiver.secret, "msg_1", "{}"))
    assert result.refused and "locale ou privée" in result.error
    assert receiver.calls == 0


def test_dns_rebinding_is_checked_at_delivery(receiver):
    """A name that resolved to a public address when registered, and to loopback later."""
    port = receiver.port
    url = f"http://hooks.example.org:{port}/hook"
    rebinding = resolver_of("93.184.216.34", "127.0.0.1")
    check_endpoint(url, require_https=False, allow_private=False, resolver=rebinding)
    poster = WebhookPoster(allow_private=False, require_https=False, resolver=rebinding)
    result = poster.post(WebhookRequest(url, receiver.secret, "msg_1", "{}"))
    assert result.refused and receiver.calls == 0
    assert rebinding.calls == ["hooks.example.org", "hooks.example.org"]


def test_the_connection_goes_to_the_address_that_was_checked(receiver):
    """The name is resolved once per delivery and the socket goes to that address."""
    port = receiver.port
    url = f"http://hooks.example.org:{port}/hook"
    once = resolver_of("127.0.0.1")
    poster = WebhookPoster(allow_private=True, require_https=False, resolver=once)
    result = poster.post(WebhookRequest(url, receiver.secret, "msg_1", "{}"))
    assert result.ok and once.calls == ["hooks.example.org"]
    assert receiver.received[0].headers["host"] == f"hooks.example.org:{port}"


def test_unresolvable_names_are_refused():
    def nothing(host, port, **kwargs):
        raise socket.gaierror("no such name")

    with pytest.raises(UnsafeUrl, match="introuvable"):
        check_endpoint(
            "https://nowhere.invalid/", require_https=True, allow_private=False, resolver=nothing
        )


def test_https_is_verified_against_the_host_name(tmp_path):
    """TLS to the pinned address still checks the certificate of the name (SNI)."""
    import http.server
    import ssl
    import threading

    ca = trustme.CA()
    cert = ca.issue_cert("hooks.example.org")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(context)

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    port = server.server_address[1]
    try:
        good = WebhookPoster(
            allow_private=True, resolver=resolver_of("127.0.0.1"), ca_bundle=str(bundle)
        )
        result = good.post(
            WebhookRequest(f"https://hooks.example.org:{port}/h", new_secret(), "msg_1", "{}")
        )
        assert result.ok, result
        wrong_name = good.post(
            WebhookRequest(f"https://other.example.org:{port}/h", new_secret(), "msg_2", "{}")
        )
        assert not wrong_name.ok and wrong_name.error.startswith("TLS")
    finally:
        server.shutdown()
        server.server_close()
