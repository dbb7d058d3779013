"""Providers the model controls: the simulator, told to fail on demand, with a shared log.

Each adapter is the built-in simulator (:mod:`providers.simulator`, the real
adapter class) with two additions: ``fail_next(mode, count)`` makes its next
sends raise a transient or a permanent :class:`~providers.base.ProviderError`,
and every send it accepts is appended to a :class:`SendLog` shared by all the
model's adapters, with the model clock's time. The log is the model's view of
what reached a provider: the database only says what the gateway believes.
Receipts are not emitted here (``SIMULATOR_RECEIPTS`` is off): the model
sends its own, duplicated, reordered or late.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gateway.timeutil import utcnow
from providers.base import (
    OutboundEmail,
    OutboundSms,
    PermanentProviderError,
    SendResult,
    TransientProviderError,
)
from providers.simulator import SimulatorEmail, SimulatorSms

TRANSIENT, PERMANENT = "transient", "permanent"


@dataclass
class Sent:
    """One message a provider accepted, as the provider saw it."""

    provider: str
    channel: str
    message_id: int
    to: str
    body: str
    provider_message_id: str
    at: datetime
    # What the model knew when it went (set by the model after the step).
    context: Any = None


@dataclass
class SendLog:
    entries: list[Sent] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, entry: Sent) -> None:
        with self.lock:
            self.entries.append(entry)


class _OnDemand:
    """Failures queued by the model, consumed one per send attempt."""

    def _setup(self, name: str, log: SendLog) -> None:
        self.name = name
        self.log = log
        self.failures: deque[str] = deque()

    def fail_next(self, mode: str, count: int = 1) -> None:
        self.failures.extend([mode] * count)

    def _maybe_fail(self) -> None:
        try:
            mode = self.failures.popleft()
        except IndexError:
            return
        if mode == PERMANENT:
            raise PermanentProviderError(self.name, "refused on demand", "model_permanent")
        raise TransientProviderError(self.name, "unavailable on demand", "model_transient")


class ControlledSms(_OnDemand, SimulatorSms):
    """The simulator's SMS adapter, under the model's control, named ``name``."""

    def __init__(self, name: str, log: SendLog) -> None:
        SimulatorSms.__init__(self, receipts=False)
        self._setup(name, log)

    def _send_sms(self, sms: OutboundSms) -> SendResult:
        self._maybe_fail()
        result = super()._send_sms(sms)
        self.log.add(
            Sent(
                self.name,
                "sms",
                int(sms.reference),
                sms.to,
                sms.body,
                result.provider_message_id,
                utcnow(),
            )
        )
        return result


class ControlledEmail(_OnDemand, SimulatorEmail):
    """The simulator's email adapter, under the model's control."""

    def __init__(self, name: str, log: SendLog) -> None:
        SimulatorEmail.__init__(self, receipts=False)
        self._setup(name, log)

    def _send_email(self, email: OutboundEmail) -> SendResult:
        self._maybe_fail()
        result = super()._send_email(email)
        self.log.add(
            Sent(
                self.name,
                "email",
                int(email.reference),
                email.to,
                email.text,
                result.provider_message_id,
                utcnow(),
            )
        )
        return result
