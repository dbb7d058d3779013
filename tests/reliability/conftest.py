"""Shared pieces of the reliability suite: hypothesis profiles and row counting.

Hypothesis profiles (choose with ``HYPOTHESIS_PROFILE``):

* ``ci`` (default): 100 examples per property, no deadline (CI machines are
  shared and slow; a deadline would only make the suite flaky), derandomised
  so that a run is reproducible.
* ``dev``: 30 examples, for quick iteration.
* ``thorough``: 2 000 examples, random seeds, for a bug hunt before a release.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# The fuzz tests reuse one ``world`` for all examples on purpose: every refused
# request must leave it unchanged, which is the very property under test.
_SHARED = {
    "deadline": None,
    "suppress_health_check": [
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
}
settings.register_profile("ci", max_examples=100, derandomize=True, print_blob=True, **_SHARED)
settings.register_profile("dev", max_examples=30, **_SHARED)
settings.register_profile("thorough", max_examples=2000, **_SHARED)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# The webhook suite's fixtures, for the replay, fuzz and database fault tests of the webhooks.
from ..webhooks.conftest import backend, frozen, signed_config  # noqa: F401
