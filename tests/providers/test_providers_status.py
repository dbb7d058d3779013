import itertools

import pytest

from providers import status as s


def test_vocabulary_is_complete_and_consistent():
    assert s.ALL_STATUSES == (
        "scheduled",
        "queued",
        "sending",
        "sent",
        "delivered",
        "undelivered",
        "failed",
        "cancelled",
        "skipped",
    )
    assert s.FINAL_STATUSES == {"delivered", "undelivered", "failed", "cancelled", "skipped"}
    assert s.UNSENT_STATUSES == {"scheduled", "queued"}
    assert not (s.FINAL_STATUSES & s.UNSENT_STATUSES)


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (s.SCHEDULED, s.QUEUED),
        (s.QUEUED, s.SENDING),
        (s.SENDING, s.SENT),
        (s.SENT, s.DELIVERED),
        # jumps forward: a receipt may beat the worker's own bookkeeping
        (s.QUEUED, s.SENT),
        (s.SENDING, s.DELIVERED),
        (s.SCHEDULED, s.DELIVERED),
        # early ends
        (s.SCHEDULED, s.CANCELLED),
        (s.QUEUED, s.SKIPPED),
        (s.SENDING, s.FAILED),
        (s.SENDING, s.UNDELIVERED),
        (s.SENDING, s.CANCELLED),
        (s.SENDING, s.SKIPPED),
        # receipts after sent
        (s.SENT, s.UNDELIVERED),
        (s.SENT, s.FAILED),
    ],
)
def test_allowed_moves(current, new):
    assert s.can_transition(current, new)


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (s.SENDING, s.QUEUED),  # never backwards, even for a retry
        (s.SENT, s.SENDING),
        (s.QUEUED, s.SCHEDULED),
        (s.SENT, s.CANCELLED),  # the provider already has it
        (s.SENT, s.SKIPPED),
        (s.DELIVERED, s.SENT),  # late 'sent' receipt after 'delivered'
        (s.DELIVERED, s.UNDELIVERED),
        (s.FAILED, s.DELIVERED),
        (s.CANCELLED, s.QUEUED),
    ],
)
def test_refused_moves(current, new):
    assert not s.can_transition(current, new)


@pytest.mark.parametrize("status", s.ALL_STATUSES)
def test_same_status_is_a_no_op(status):
    assert not s.can_transition(status, status)


def test_final_statuses_never_change():
    for final, other in itertools.product(s.FINAL_STATUSES, s.ALL_STATUSES):
        assert not s.can_transition(final, other)


def test_no_cycles_exist():
    # If a -> b is allowed, b -> a never is: statuses cannot loop.
    for a, b in itertools.permutations(s.ALL_STATUSES, 2):
        assert not (s.can_transition(a, b) and s.can_transition(b, a)), (a, b)


def test_unknown_status_is_a_bug():
    with pytest.raises(ValueError, match="bogus"):
        s.can_transition("bogus", s.SENT)
    with pytest.raises(ValueError, match="bogus"):
        s.can_transition(s.SENT, "bogus")
