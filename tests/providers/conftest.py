"""Fixtures shared by the provider tests."""

import socket

import pytest


@pytest.fixture
def unused_tcp_port() -> int:
    """A local TCP port with nothing listening on it (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
