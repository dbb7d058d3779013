"""The queue runs the same job functions embedded and on Redis."""

import pytest

from scheduler.queue import enqueue, run_pending

CALLS: list = []


def record(value, *, tag=None):
    """A job: plain importable function, plain arguments."""
    CALLS.append((value, tag))


@pytest.fixture
def on_backend(app_config, redis_url, request):
    """The app on the embedded queue, and on Redis when TEST_REDIS_URL is set."""
    if request.param == "redis":
        if not redis_url:
            pytest.skip("TEST_REDIS_URL not set: no Redis server for this test")
        app_config["REDIS_URL"] = redis_url
        from redis import Redis

        Redis.from_url(redis_url).flushdb()
    return request.param


@pytest.mark.parametrize("on_backend", ["embedded", "redis"], indirect=True)
def test_jobs_wait_until_run_and_run_once(on_backend, app):
    CALLS.clear()
    enqueue("tests.scheduler.test_queue.record", 1, tag="a")
    enqueue("tests.scheduler.test_queue.record", 2)
    assert CALLS == []
    assert run_pending(app) == 2
    assert CALLS == [(1, "a"), (2, None)]
    assert run_pending(app) == 0
    assert app.test_client().get("/health").json["queue"]["backend"] == on_backend
