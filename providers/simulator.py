"""In-process fake providers for demos, tests and benchmarks.

Magic recipients make outcomes deterministic:
- an SMS to a number ending in ``0000`` is refused (permanent, ``invalid_number``);
- an SMS to a number ending in ``0001`` is accepted, then its receipt says undelivered;
- an email to a domain ``invalid.test`` is refused (permanent, ``invalid_address``).
Otherwise ``failure_rate`` draws transient failures from a seeded generator.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable

from . import status as st
from .base import (
    EmailProvider,
    OutboundEmail,
    OutboundSms,
    PermanentProviderError,
    Receipt,
    SendResult,
    SmsProvider,
    TransientProviderError,
)
from .sms_text import count_segments

NAME = "simulator"
INVALID_NUMBER_SUFFIX = "0000"
UNDELIVERED_NUMBER_SUFFIX = "0001"
INVALID_EMAIL_DOMAIN = "invalid.test"

ReceiptSink = Callable[[Receipt], None]


class _Simulator:
    name = NAME

    def __init__(
        self,
        latency: float = 0.0,
        failure_rate: float = 0.0,
        seed: int | None = None,
        receipts: bool = True,
        receipt_sink: ReceiptSink | None = None,
    ) -> None:
        if latency < 0:
            raise ValueError("latency must be >= 0")
        if not 0.0 <= failure_rate <= 1.0:
            raise ValueError("failure_rate must be between 0 and 1")
        self.latency = latency
        self.failure_rate = failure_rate
        self.receipts = receipts
        self.receipt_sink = receipt_sink
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        # The last messages accepted, for demos and tests to look at.
        self._outbox: deque[object] = deque(maxlen=1000)

    @property
    def outbox(self) -> list[object]:
        """The last (up to 1000) messages accepted, oldest first."""
        with self._lock:
            return list(self._outbox)

    def _simulate_network(self) -> None:
        if self.latency:
            time.sleep(self.latency)
        if self.failure_rate:
            # random.Random is not safe to share between threads.
            with self._lock:
                roll = self._random.random()
            if roll < self.failure_rate:
                raise TransientProviderError(NAME, "simulated transient failure", "simulated")

    def _accept(self, message: object) -> str:
        with self._lock:
            self._outbox.append(message)
        return "SIM" + uuid.uuid4().hex

    def _emit(self, receipt: Receipt) -> None:
        # Called synchronously in the sender's thread: the sink must not block
        # (record or enqueue, nothing slow).
        if self.receipts and self.receipt_sink is not None:
            self.receipt_sink(receipt)


class SimulatorSms(_Simulator, SmsProvider):
    """A fake SMS provider: accepts, optionally fails, emits receipts."""

    def _send_sms(self, sms: OutboundSms) -> SendResult:
        self._simulate_network()
        if sms.to.endswith(INVALID_NUMBER_SUFFIX):
            raise PermanentProviderError(NAME, "simulated invalid number", "invalid_number")
        message_id = self._accept(sms)
        _, segments = count_segments(sms.body)
        undelivered = sms.to.endswith(UNDELIVERED_NUMBER_SUFFIX)
        self._emit(
            Receipt(
                provider=NAME,
                provider_message_id=message_id,
                reference=sms.reference,
                raw_status="undelivered" if undelivered else "delivered",
                status=st.UNDELIVERED if undelivered else st.DELIVERED,
                error_code="simulated_undelivered" if undelivered else None,
                error_message="Simulated unreachable handset" if undelivered else None,
                raw={"to": sms.to, "segments": segments},
            )
        )
        return SendResult(
            provider=NAME, provider_message_id=message_id, segments=segments, raw={"to": sms.to}
        )


class SimulatorEmail(_Simulator, EmailProvider):
    """A fake email provider: accepts, optionally fails, emits receipts."""

    def _send_email(self, email: OutboundEmail) -> SendResult:
        self._simulate_network()
        domain = email.to.rpartition("@")[2].strip().lower()
        if domain == INVALID_EMAIL_DOMAIN:
            raise PermanentProviderError(NAME, "simulated invalid address", "invalid_address")
        message_id = self._accept(email)
        self._emit(
            Receipt(
                provider=NAME,
                provider_message_id=message_id,
                reference=email.reference,
                raw_status="delivered",
                status=st.DELIVERED,
                error_code=None,
                error_message=None,
                raw={"to": email.to},
            )
        )
        return SendResult(provider=NAME, provider_message_id=message_id, raw={"to": email.to})
