"""The job queue: RQ on Redis when ``REDIS_URL`` is set, else embedded in-process."""

from __future__ import annotations

from flask import Flask


def queue_health(app: Flask) -> dict:
    """Queue status for ``/health``: Redis answers a PING, or the embedded queue is in use."""
    url = app.config.get("REDIS_URL")
    if not url:
        return {"status": "ok", "backend": "embedded"}
    from redis import Redis
    from redis.exceptions import RedisError

    try:
        Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2).ping()
    except RedisError as exc:
        return {"status": "error", "backend": "redis", "error": exc.__class__.__name__}
    return {"status": "ok", "backend": "redis"}
