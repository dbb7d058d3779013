"""The model test's app: the simulator under the model's control, Redis when the run has it."""

from __future__ import annotations

import pytest

from .machine import MODEL_APP_CONFIG


@pytest.fixture
def app_config(app_config, redis_url):
    """The suite's test configuration, with the model's pipeline settings.

    With ``TEST_REDIS_URL`` (CI's second pass) the jobs go through RQ on Redis,
    as in production; else through the embedded queue.
    """
    app_config.update(MODEL_APP_CONFIG)
    if redis_url:
        from redis import Redis

        Redis.from_url(redis_url).flushdb()
        app_config["REDIS_URL"] = redis_url
    return app_config
