import threading

import pytest

from providers import status as st
from providers.base import (
    OutboundEmail,
    OutboundSms,
    PermanentProviderError,
    TransientProviderError,
)
from providers.simulator import SimulatorEmail, SimulatorSms


def _sms(to="+33612345678", body="Bonjour", reference="m1"):
    return OutboundSms(reference=reference, to=to, body=body)


def test_send_returns_sim_id_and_segments_and_emits_delivered_receipt():
    receipts = []
    provider = SimulatorSms(receipt_sink=receipts.append)
    result = provider.send_sms(_sms(body="a" * 161))
    assert result.provider == "simulator"
    assert result.provider_message_id.startswith("SIM") and len(result.provider_message_id) == 35
    assert result.segments == 2
    (receipt,) = receipts
    assert receipt.provider_message_id == result.provider_message_id
    assert receipt.reference == "m1"
    assert receipt.status == st.DELIVERED
    assert receipt.error_code is None
    assert provider.outbox == [_sms(body="a" * 161)]


def test_message_ids_are_unique():
    provider = SimulatorSms()
    ids = {provider.send_sms(_sms()).provider_message_id for _ in range(50)}
    assert len(ids) == 50


def test_number_ending_0000_is_permanently_invalid():
    receipts = []
    provider = SimulatorSms(receipt_sink=receipts.append)
    with pytest.raises(PermanentProviderError) as info:
        provider.send_sms(_sms(to="+33612340000"))
    assert info.value.code == "invalid_number"
    assert receipts == [] and provider.outbox == []


def test_number_ending_0001_is_sent_then_undelivered():
    receipts = []
    result = SimulatorSms(receipt_sink=receipts.append).send_sms(_sms(to="+33612340001"))
    assert result.provider_message_id
    assert receipts[0].status == st.UNDELIVERED
    assert receipts[0].error_code


def test_receipts_can_be_turned_off():
    receipts = []
    SimulatorSms(receipts=False, receipt_sink=receipts.append).send_sms(_sms())
    assert receipts == []


def test_failure_rate_is_seeded_and_reproducible():
    def outcomes(seed):
        provider = SimulatorSms(failure_rate=0.5, seed=seed)
        results = []
        for _ in range(40):
            try:
                provider.send_sms(_sms())
                results.append("ok")
            except TransientProviderError as exc:
                assert exc.code == "simulated"
                results.append("fail")
        return results

    first = outcomes(7)
    assert first == outcomes(7)
    assert 5 < first.count("fail") < 35


def test_failure_rate_extremes():
    with pytest.raises(TransientProviderError):
        SimulatorSms(failure_rate=1.0).send_sms(_sms())
    SimulatorSms(failure_rate=0.0).send_sms(_sms())
    with pytest.raises(ValueError):
        SimulatorSms(failure_rate=1.5)
    with pytest.raises(ValueError):
        SimulatorSms(latency=-1)


def test_thread_safe_under_concurrency():
    receipts = []
    lock = threading.Lock()

    def sink(receipt):
        with lock:
            receipts.append(receipt)

    provider = SimulatorSms(failure_rate=0.3, seed=1, receipt_sink=sink)
    errors = []

    def worker(n):
        for i in range(50):
            try:
                provider.send_sms(_sms(reference=f"{n}-{i}"))
            except TransientProviderError:
                errors.append(1)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(receipts) + len(errors) == 400
    assert len(provider.outbox) == len(receipts)
    assert len({r.provider_message_id for r in receipts}) == len(receipts)


def test_email_simulator():
    receipts = []
    provider = SimulatorEmail(receipt_sink=receipts.append)
    email = OutboundEmail(reference="e1", to="alice@example.org", subject="RDV", text="Bonjour")
    result = provider.send_email(email)
    assert result.provider == "simulator"
    assert result.provider_message_id.startswith("SIM")
    assert receipts[0].reference == "e1" and receipts[0].status == st.DELIVERED
    with pytest.raises(PermanentProviderError) as info:
        provider.send_email(
            OutboundEmail(reference="e2", to="bob@Invalid.Test", subject="s", text="t")
        )
    assert info.value.code == "invalid_address"
    assert provider.outbox == [email]
