"""Per-provider-account send rate: a token bucket, in Redis when there is one.

Providers cap the rate per account (PROVIDERS.md: a Twilio long code about
1 SMS/s, Vonage answers "throttled"), so the limit must hold across every
worker process on every machine. With ``REDIS_URL`` the bucket lives in Redis
(one Lua script call per message: atomic, shared by all workers); without it
(embedded mode, one process) it lives in memory.

Why not RQ's own ``RateLimit``: it bounds how many *jobs* with a key are
queued or running at once, not how many *messages per second* leave, and one
send job may use several providers (failover). The concurrency half of the
requirement is the job's thread pool (``SMS_CONCURRENCY``).

Rates come from ``<PROVIDER>_RATE_PER_SECOND`` (e.g. ``TWILIO_RATE_PER_SECOND``);
0 or unset means unlimited. The bucket holds one second's worth of tokens, so
bursts never exceed the configured rate over any second.
"""

from __future__ import annotations

import threading
import time

from flask import Flask

# KEYS[1] bucket; ARGV rate, capacity. Returns 0 when a token was taken, else
# the milliseconds to wait before one is available. Redis's own clock is used,
# so workers on machines with skewed clocks share one timeline.
_TOKEN_BUCKET = """
if redis.replicate_commands then redis.replicate_commands() end
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = math.ceil((1 - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / rate * 1000) + 1000)
return wait
"""


class Unlimited:
    """No limit configured."""

    def acquire(self) -> None:
        return None


class LocalBucket:
    """A token bucket for one process (thread-safe)."""

    def __init__(self, rate: float):
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.at = time.monotonic()
        self.lock = threading.Lock()

    def acquire(self) -> None:
        """Block until a token is available, then take it."""
        while True:
            with self.lock:
                now = time.monotonic()
                self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
                self.at = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                wait = (1 - self.tokens) / self.rate
            time.sleep(wait)


class RedisBucket:
    """A token bucket shared by every worker through Redis."""

    def __init__(self, connection, key: str, rate: float):
        self.key = key
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.script = connection.register_script(_TOKEN_BUCKET)

    def acquire(self) -> None:
        """Block until a token is available, then take it."""
        while True:
            wait_ms = int(self.script(keys=[self.key], args=[self.rate, self.capacity]))
            if wait_ms <= 0:
                return
            time.sleep(wait_ms / 1000)


# The account a provider's limit applies to: two organisations on the same
# Twilio account share one bucket.
_ACCOUNT_KEYS = {"twilio": "TWILIO_ACCOUNT_SID", "vonage": "VONAGE_API_KEY", "smtp": "SMTP_HOST"}
_lock = threading.Lock()


def rate_limiter(app: Flask, provider: str):
    """The limiter of ``provider``'s account for this app (built once per process)."""
    cache = app.extensions.setdefault("lapin_rate_limiters", {})
    limiter = cache.get(provider)
    if limiter is not None:
        return limiter
    with _lock:
        limiter = cache.get(provider)
        if limiter is None:
            rate = float(app.config.get(f"{provider.upper()}_RATE_PER_SECOND") or 0)
            account = app.config["PROVIDER_SETTINGS"].get(
                _ACCOUNT_KEYS.get(provider, ""), "default"
            )
            if rate <= 0:
                limiter = Unlimited()
            elif app.config.get("REDIS_URL"):
                from .queue import redis_connection

                limiter = RedisBucket(
                    redis_connection(app), f"lapin:rate:{provider}:{account}", rate
                )
            else:
                limiter = LocalBucket(rate)
            cache[provider] = limiter
    return limiter
