"""Fixtures shared by the provider tests: free ports and the fake Vonage API over TLS."""

from __future__ import annotations

import socket

import pytest

from tests.fakes.vonage_server import FakeVonage


@pytest.fixture
def unused_tcp_port() -> int:
    """A local TCP port with nothing listening on it (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def fake_vonage(monkeypatch):
    """The fake Vonage SMS API, trusted through ``REQUESTS_CA_BUNDLE`` as in production."""
    with FakeVonage(api_key="abcd1234", api_secret="sekret") as fake:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", fake.ca_file)
        monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        yield fake
