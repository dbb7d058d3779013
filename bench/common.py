"""Shared pieces of the benchmarks: settings, results, statistics, processes, database.

Settings come from the environment: ``BENCH_DATABASE_URL`` then
``TEST_DATABASE_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/bench``)
and ``BENCH_REDIS_URL`` then ``TEST_REDIS_URL`` (default
``redis://127.0.0.1:6379/5``). The benchmarks drop and re-create the
database's ``public`` schema and flush the Redis database: both must be
throw-away ones, which is checked (the database name must contain ``bench``
or ``test``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/5"

# Credentials of the fake Twilio account: nothing real ever sees them.
TWILIO_ACCOUNT_SID = "AC" + "0" * 31 + "1"
TWILIO_AUTH_TOKEN = "bench-auth-token-0123456789abcdef"
TWILIO_FROM = "+33700000001"

# The Procfile's web settings, used for every gunicorn the benchmarks start.
GUNICORN_WORKERS = 2
GUNICORN_THREADS = 4


class NotAvailable(Exception):
    """The part of Lapin this benchmark measures does not exist yet."""


# ---------------------------------------------------------------- settings


def database_url() -> str:
    url = (
        os.environ.get("BENCH_DATABASE_URL")
        or os.environ.get("TEST_DATABASE_URL")
        or DEFAULT_DATABASE_URL
    )
    if url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url[len("postgres://") :]
    elif url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def redis_url() -> str:
    return (
        os.environ.get("BENCH_REDIS_URL") or os.environ.get("TEST_REDIS_URL") or DEFAULT_REDIS_URL
    )


@dataclass
class Context:
    """What every benchmark gets: settings, scale, and the figures measured so far."""

    database_url: str
    redis_url: str
    quick: bool
    workdir: Path
    # Figures other benchmarks (and the goals) refer to, e.g. "rq.simple_jobs_per_s".
    metrics: dict[str, float] = field(default_factory=dict)

    def scale(self, full: int, quick: int) -> int:
        return quick if self.quick else full


# ---------------------------------------------------------------- results


@dataclass
class Table:
    headers: list[str]
    rows: list[list[Any]]


@dataclass
class Section:
    """One benchmark's outcome, printed as a table and written to BENCHMARKS.md."""

    name: str
    title: str
    method: str = ""
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # Pre-formatted blocks (query plans), written in code fences.
    blocks: list[tuple[str, str]] = field(default_factory=list)
    available: bool = True
    seconds: float = 0.0


def fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if value >= 100:
            return f"{value:,.0f}".replace(",", " ")
        if value >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}".replace(",", " ")
    return str(value)


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (0-100), linear between closest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    k = (len(ordered) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def latency_row(label: str, seconds: list[float], extra: list[Any] | None = None) -> list[Any]:
    """[label, n, p50 ms, p95 ms, p99 ms, mean ms] (+ extra)."""
    ms = [s * 1000 for s in seconds]
    return [
        label,
        len(ms),
        percentile(ms, 50),
        percentile(ms, 95),
        percentile(ms, 99),
        statistics.fmean(ms) if ms else None,
    ] + (extra or [])


LATENCY_HEADERS = ["", "n", "p50 ms", "p95 ms", "p99 ms", "mean ms"]


# ---------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(
    predicate: Callable[[], bool], timeout: float, interval: float = 0.05, what: str = "condition"
) -> None:
    """Poll ``predicate`` until true; RuntimeError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
        return True
    return False


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its reaped children so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


@contextlib.contextmanager
def fake_twilio(ctx: Context, delay: float = 0.1) -> Iterator[tuple[str, subprocess.Popen]]:
    """The fake Twilio API (``tests/fakes/twilio_server.py``, asyncio) in its own process for
    the block, answering every send after ``delay`` seconds; yields (base URL, process)."""
    port = free_port()
    args = [
        sys.executable,
        "-m",
        "tests.fakes.twilio_server",
        "--port",
        str(port),
        "--delay",
        str(delay),
        "--account-sid",
        TWILIO_ACCOUNT_SID,
        "--auth-token",
        TWILIO_AUTH_TOKEN,
    ]
    with process(args, dict(os.environ), "fake-twilio", ctx) as proc:
        wait_for(lambda: proc.poll() is None and port_open(port), 20, what="the fake Twilio API")
        yield f"http://127.0.0.1:{port}", proc


def fake_twilio_stats(base_url: str) -> dict:
    """What the fake Twilio API has received (``GET /_stats``): requests, messages (accepted),
    distinct (messages by status callback, i.e. by our message id) and errors."""
    from tests.fakes.twilio_server import stats

    return stats(base_url)


def gateway_env(ctx: Context, **extra: str) -> dict[str, str]:
    """Environment for gateway processes (gunicorn, ``gateway worker``) in a benchmark."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "VONAGE_", "SMTP_"))}
    env.update(
        {
            "DATABASE_URL": ctx.database_url,
            "REDIS_URL": ctx.redis_url,
            "SECRET_KEY": "bench-secret-key",
            "INSTANCE_PATH": str(ctx.workdir / "instance"),
            "SMS_PROVIDERS": "twilio",
            "EMAIL_PROVIDER": "simulator",
            "TWILIO_ACCOUNT_SID": TWILIO_ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": TWILIO_AUTH_TOKEN,
            "TWILIO_FROM": TWILIO_FROM,
            # Reminders must go whatever the hour the benchmark runs at.
            "QUIET_HOURS": "none",
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
        }
    )
    env.update(extra)
    return env


def bin_path(name: str) -> str:
    """A console script of this virtual environment (``gateway``, ``gunicorn``, ``rq``)."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} not found next to {sys.executable} nor on PATH")
    return found


@contextlib.contextmanager
def process(
    args: list[str], env: dict[str, str] | None, log_name: str, ctx: Context, cwd: Path = ROOT
) -> Iterator[subprocess.Popen]:
    """Run a subprocess for the duration of the block; its output goes to a log file.

    On exit it gets SIGTERM, then SIGKILL after 10 s; its whole process group
    is signalled so forked children (gunicorn, RQ work horses) go too.
    """
    log_path = ctx.workdir / f"{log_name}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            args, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield proc
        finally:
            stop(proc)


def stop(proc: subprocess.Popen, timeout: float = 10) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def log_tail(ctx: Context, log_name: str, lines: int = 20) -> str:
    path = ctx.workdir / f"{log_name}.log"
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def gunicorn(
    ctx: Context,
    app_spec: str,
    env: dict[str, str],
    log_name: str,
    ready_path: str = "/",
    port: int | None = None,
) -> Iterator[int]:
    """Serve ``app_spec`` with the Procfile's gunicorn settings on a free port; yields the port."""
    port = port or free_port()
    # The access log names the worker that served each request (<pid>), so that the
    # load starts only once every worker has loaded the app.
    args = [
        sys.executable,
        "-m",
        "gunicorn",
        app_spec,
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(GUNICORN_WORKERS),
        "--threads",
        str(GUNICORN_THREADS),
        "--access-logfile",
        "-",
        "--access-logformat",
        '%(p)s %(h)s "%(r)s" %(s)s',
    ]
    log_path = ctx.workdir / f"{log_name}.log"
    start = log_path.stat().st_size if log_path.exists() else 0
    with process(args, env, log_name, ctx) as proc:

        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"gunicorn exited ({proc.returncode}):\n{log_tail(ctx, log_name)}"
                )
            return port_open(port)

        wait_for(ready, 60, what=f"gunicorn {app_spec}")
        wait_for(
            lambda: _workers_serving(port, ready_path, log_path, start) >= GUNICORN_WORKERS,
            60,
            what=f"all {GUNICORN_WORKERS} gunicorn workers of {app_spec}",
        )
        yield port


def _workers_serving(port: int, path: str, log_path: Path, start: int) -> int:
    """Send a few requests on new connections; return how many workers have served one."""
    import http.client
    import re

    for _ in range(10):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", path)
        conn.getresponse().read()
        conn.close()
    with open(log_path, "rb") as log:
        log.seek(start)
        text = log.read().decode("utf-8", "replace")
    return len(set(re.findall(r"^<(\d+)> ", text, flags=re.MULTILINE)))


def tempdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="lapin-bench-"))


# ---------------------------------------------------------------- database


def check_throwaway(url: str) -> None:
    """Refuse to wipe a database whose name does not say it is for benchmarks or tests."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise SystemExit(f"benchmarks need PostgreSQL, got {parsed.get_backend_name()}")
    name = parsed.database or ""
    if "bench" not in name and "test" not in name:
        raise SystemExit(
            f"refusing to wipe database {name!r}: its name must contain 'bench' or 'test'"
        )


def ensure_database(url: str) -> None:
    """Create the benchmark database if it does not exist yet."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": parsed.database}
            )
            if not exists:
                conn.execute(text(f'CREATE DATABASE "{parsed.database}"'))
    finally:
        admin.dispose()


def bench_config(ctx: Context, **extra: Any) -> dict:
    """``create_app`` test_config for in-process use by a benchmark."""
    config = {
        "SQLALCHEMY_DATABASE_URI": ctx.database_url,
        "REDIS_URL": ctx.redis_url,
        "RATELIMIT_STORAGE_URI": ctx.redis_url,
        "SECRET_KEY": "bench-secret-key",
        "EMBEDDED_WORKER": False,
        "WTF_CSRF_ENABLED": False,
        "SMS_PROVIDERS": ["twilio"],
        "EMAIL_PROVIDER": "simulator",
        "QUIET_HOURS": "none",
        "PROVIDER_SETTINGS": {
            "TWILIO_ACCOUNT_SID": TWILIO_ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": TWILIO_AUTH_TOKEN,
            "TWILIO_FROM": TWILIO_FROM,
        },
    }
    config.update(extra)
    return config


def make_app(ctx: Context, **extra: Any):
    os.environ.setdefault("INSTANCE_PATH", str(ctx.workdir / "instance"))
    from gateway import create_app

    return create_app(bench_config(ctx, **extra))


def reset_schema(ctx: Context) -> None:
    """Drop every table and migrate afresh (the real Alembic migrations), flush Redis."""
    from sqlalchemy import create_engine, text

    engine = create_engine(ctx.database_url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    app = make_app(ctx)
    with app.app_context():
        from gateway.cli import migrate_to_head
        from gateway.extensions import db

        migrate_to_head()
        db.engine.dispose()
    flush_redis(ctx)


def flush_redis(ctx: Context) -> None:
    from redis import Redis

    conn = Redis.from_url(ctx.redis_url)
    conn.flushdb()
    conn.close()


def has_route(app, rule: str, method: str = "POST") -> bool:
    return any(r.rule == rule and method in (r.methods or ()) for r in app.url_map.iter_rules())


def has_cli_command(app, name: str) -> bool:
    return name in app.cli.commands
