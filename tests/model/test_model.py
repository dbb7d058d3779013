"""The stateful model test of issue 11: random lives of rdvs, invariants after every step.

The budget is bounded for CI (``LAPIN_MODEL_EXAMPLES`` examples of
``LAPIN_MODEL_STEPS`` steps; see docs/testing.md for a long run). Runs are
derandomised, so CI is reproducible; ``LAPIN_MODEL_RANDOM=1`` draws new
sequences each run (and keeps failures in hypothesis' example database).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test
from sqlalchemy import event

from gateway.extensions import db

from .machine import make_machine, model_budget


def model_settings() -> settings:
    examples, steps = model_budget()
    randomised = os.environ.get("LAPIN_MODEL_RANDOM") == "1"
    return settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        derandomize=not randomised,
        database=settings.default.database if randomised else None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.filter_too_much,
            HealthCheck.data_too_large,
        ],
        print_blob=True,
    )


def _no_fsync_on_sqlite() -> None:
    """SQLite waits for the disk at every commit (most of a step's time here); the model
    does not test durability, so its connections skip that wait."""
    if db.engine.dialect.name != "sqlite":
        return

    def no_sync(connection, _record) -> None:
        connection.execute("PRAGMA synchronous = OFF")

    event.listen(db.engine, "connect", no_sync)
    db.engine.dispose()


def test_message_rules_hold_through_random_lives_of_rdvs(app):
    _no_fsync_on_sqlite()
    run_state_machine_as_test(make_machine(app), settings=model_settings())
