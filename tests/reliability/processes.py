"""Fault injection: ``gateway worker`` (or any) subprocesses started with a given
environment and killed with SIGKILL, the way an OOM killer or a lost machine would.

Used by the reliability tests that run real workers against PostgreSQL and
Redis::

    env = worker_env(database_url, redis_url, instance, extra=fake_twilio.settings)
    with WorkerPool(env, size=3, log_dir=tmp_path) as pool:
        pool.wait_ready()
        ...
        pool.kill(0)          # SIGKILL to worker 0 and its work horse
        pool.restart(0)
        ...

Each process runs in its own session (process group): ``kill`` signals the
whole group, so RQ's forked work horse dies with its parent instead of
finishing the job in the background.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Self

GATEWAY = str(Path(sys.executable).with_name("gateway"))
# Variables of the test run that must not leak into a worker's configuration.
_DROP = (
    "TEST_DATABASE_URL",
    "TEST_REDIS_URL",
    "LAPIN_NO_SKIP",
    "PYTEST_CURRENT_TEST",
    "PYTEST_ADDOPTS",
)


def worker_env(
    database_url: str,
    redis_url: str | None,
    instance_path: str | os.PathLike,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of a worker process.

    This process's own, pointed at the test's database and Redis.
    """
    env = {k: v for k, v in os.environ.items() if k not in _DROP}
    env.update(
        {
            "DATABASE_URL": database_url,
            "SECRET_KEY": "test-secret",
            "INSTANCE_PATH": str(instance_path),
            "PUBLIC_BASE_URL": "https://lapin.test",
            "EMBEDDED_WORKER_DISABLED": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    else:
        env.pop("REDIS_URL", None)
    env.update(extra or {})
    return env


class ManagedProcess:
    """One subprocess with its output in a log file; ``kill`` is SIGKILL to its process group."""

    def __init__(self, command: Sequence[str], env: Mapping[str, str], log_path: str | os.PathLike):
        self.command = list(command)
        self.env = dict(env)
        self.log_path = Path(log_path)
        self.process: subprocess.Popen | None = None
        self.kills = 0
        self._offset = 0

    def start(self) -> ManagedProcess:
        if self.alive:
            raise RuntimeError("already running")
        # output() shows this run only: a restarted worker's log is appended to.
        self._offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child, closed below
        try:
            self.process = subprocess.Popen(
                self.command,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            log.close()
        return self

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def output(self) -> str:
        """What the current run printed so far."""
        if not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as log:
            log.seek(self._offset)
            return log.read().decode(errors="replace")

    def wait_for_output(self, text: str, timeout: float = 30.0) -> None:
        """Wait until ``text`` appears in the process's output; fail if it dies or times out."""
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if not self.alive:
                raise RuntimeError(
                    f"{self.command[:3]} exited ({self.process.returncode}):\n"
                    f"{self.output()[-3000:]}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"{text!r} not seen within {timeout}s:\n{self.output()[-3000:]}")
            time.sleep(0.05)

    def kill(self) -> int:
        """SIGKILL the whole process group (no cleanup handlers run) and reap it."""
        if not self.alive:
            return self.process.returncode if self.process else 0
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.kills += 1
        return self.process.wait(timeout=30)

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM (a graceful stop: RQ finishes the current job), SIGKILL after ``timeout``."""
        if not self.alive:
            return self.process.returncode if self.process else 0
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return self.kill()


class WorkerPool:
    """``size`` ``gateway worker`` processes sharing one environment; a context manager that
    never leaves a process behind."""

    def __init__(
        self,
        env: Mapping[str, str],
        size: int,
        log_dir: str | os.PathLike,
        command: Sequence[str] = (GATEWAY, "worker"),
        ready_text: str | None = None,
    ):
        self.env = dict(env)
        self.command = list(command)
        self.ready_text = ready_text
        self.workers = [
            ManagedProcess(self.command, self.env, Path(log_dir) / f"worker-{i}.log")
            for i in range(size)
        ]

    def start(self) -> WorkerPool:
        for worker in self.workers:
            worker.start()
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until every worker printed ``ready_text`` (if given) and is still alive."""
        for worker in self.workers:
            if self.ready_text:
                worker.wait_for_output(self.ready_text, timeout)
            elif not worker.alive:
                raise RuntimeError(f"worker exited:\n{worker.output()[-3000:]}")

    def kill(self, index: int) -> int:
        return self.workers[index].kill()

    def restart(self, index: int) -> None:
        worker = self.workers[index]
        worker.kill()
        worker.start()

    @property
    def kills(self) -> int:
        return sum(w.kills for w in self.workers)

    def stop(self) -> None:
        for worker in self.workers:
            worker.terminate(timeout=10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        for worker in self.workers:
            worker.kill()
