"""The fault-injection harness: SIGKILL reaches a worker and the work horse it forked."""

from __future__ import annotations

import os
import signal
import sys
import time

from .processes import WorkerPool, worker_env

# Stands in for an RQ worker: forks a "work horse" that would finish a job unless killed too.
FAKE_WORKER = """
import os, sys, time
pid = os.fork()
if pid == 0:
    time.sleep(120)
    os._exit(0)
print("ready horse=%d" % pid, flush=True)
os.waitpid(pid, 0)
"""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (killed, not yet reaped by init) counts as dead.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def _dies_within(pid: int, timeout: float = 10.0) -> bool:
    """Poll until ``pid`` is gone (or a zombie); False if it outlives ``timeout``.

    SIGKILL is asynchronous for a process that is not our child: the kernel tears
    the horse down after ``killpg`` returns, later on a loaded machine.
    """
    deadline = time.monotonic() + timeout
    while _pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_sigkill_takes_the_worker_and_its_work_horse(tmp_path):
    env = worker_env(
        "sqlite:///" + str(tmp_path / "db.sqlite3"), None, tmp_path, extra={"X_TEST": "1"}
    )
    assert (
        env["DATABASE_URL"].startswith("sqlite")
        and "TEST_DATABASE_URL" not in env
        and "REDIS_URL" not in env
    )
    with WorkerPool(
        env,
        size=2,
        log_dir=tmp_path,
        command=[sys.executable, "-c", FAKE_WORKER],
        ready_text="ready",
    ) as pool:
        pool.wait_ready(timeout=30)
        horse = int(pool.workers[0].output().split("horse=")[1].split()[0])
        assert _pid_alive(horse)
        assert pool.kill(0) == -signal.SIGKILL
        assert _dies_within(horse), f"the work horse {horse} outlived its worker's SIGKILL"
        assert pool.workers[1].alive  # the others keep running
        pool.restart(0)
        pool.wait_ready(timeout=30)
        new_horse = int(pool.workers[0].output().split("horse=")[1].split()[0])
        assert new_horse != horse and _pid_alive(new_horse)
        assert pool.workers[0].alive and pool.kills == 1
    assert not any(w.alive for w in pool.workers)
