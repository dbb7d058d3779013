"""A local SMTP relay (aiosmtpd) that records what it accepts and fails on demand.

Recipients starting with ``gone@`` are refused for good (550), ``later@`` for
now (451). ``credentials=(user, password)`` requires AUTH LOGIN/PLAIN
(without TLS; a wrong password gets aiosmtpd's 535).

Modes (``relay.mode``), for what can happen to a message in flight:

* ``ok``: 250 after DATA, 221 at QUIT;
* ``drop_after_data``: takes the whole message (recorded in ``envelopes``),
  then closes the connection without answering the DATA: the client cannot
  know whether the relay took it;
* ``drop_at_quit``: 250 after DATA, then closes the connection without
  answering QUIT;
* ``error_at_quit``: 250 after DATA, then answers QUIT with 421.

    with FakeSmtp() as relay:
        ...  # send with SMTP_HOST/SMTP_PORT from relay.settings
        (envelope,) = relay.envelopes
"""

from __future__ import annotations

import socket
from typing import Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

MODES = ("ok", "drop_after_data", "drop_at_quit", "error_at_quit")


class FakeSmtp:
    """The relay: aiosmtpd in a thread; ``envelopes`` holds every envelope it read to the end."""

    def __init__(self, *, credentials: tuple[str, str] | None = None) -> None:
        self.mode = "ok"
        self.envelopes: list = []
        self.quits = 0
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        options: dict = {}
        if credentials:
            user, password = credentials

            def authenticator(server, session, envelope, mechanism, auth_data):
                ok = isinstance(auth_data, LoginPassword) and (
                    auth_data.login.decode(),
                    auth_data.password.decode(),
                ) == (user, password)
                # handled=False: aiosmtpd answers 535 itself on failure.
                return AuthResult(success=ok, handled=False)

            options = {"authenticator": authenticator, "auth_require_tls": False}
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port, **options)

    @property
    def settings(self) -> dict[str, str]:
        """Provider settings (environment names) that point the gateway here."""
        return {
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(self.port),
            "MAIL_FROM": "Lapin <rdv@lapin.test>",
        }

    def start(self) -> Self:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- aiosmtpd handler hooks ----------------------------------------------------

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("gone@"):
            return "550 5.1.1 No such user"
        if address.startswith("later@"):
            return "451 4.3.0 Try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; one of {', '.join(MODES)}")
        self.envelopes.append(envelope)
        if self.mode == "drop_after_data":
            _hang_up(server)
        return "250 2.0.0 Message accepted"

    async def handle_QUIT(self, server, session, envelope):
        self.quits += 1
        if self.mode == "drop_at_quit":
            _hang_up(server)
        if self.mode == "error_at_quit":
            return "421 4.4.2 Closing transmission channel"
        return "221 Bye"


def _hang_up(server) -> None:
    """Close the connection as aiosmtpd's own QUIT does, so the pending answer is never sent."""
    server._handler_coroutine.cancel()
    server.transport.close()
