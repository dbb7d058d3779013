"""Baseline: RQ no-op jobs per second on the same Redis, per worker class.

This is the raw cost of one RQ job on this machine; the reminder burst must
beat it at least twice (SMS/s vs jobs/s), which one-job-per-SMS cannot do.
Jobs are queued in one pipeline, then one ``rq worker --burst`` process runs
them; the rate is counted between the first job's start and the last job's
end as RQ recorded them, so worker start-up is left out.
"""

from __future__ import annotations

import sys
import time

from .common import (
    ROOT,
    Context,
    Section,
    Table,
    bin_path,
    flush_redis,
    gateway_env,
    process,
    wait_for,
)

NAME = "rq-baseline"
QUEUE = "bench-noop"
WORKERS = {
    "SimpleWorker (no fork)": "rq.worker.SimpleWorker",
    "Worker (fork per job, RQ's default)": "rq.worker.Worker",
}


def _enqueue(conn, n: int) -> list[str]:
    from rq import Queue

    queue = Queue(QUEUE, connection=conn)
    jobs = [Queue.prepare_data("bench.jobs.noop", result_ttl=600) for _ in range(n)]
    return [job.id for job in queue.enqueue_many(jobs)]


def _measure(ctx: Context, worker_class: str, n: int) -> tuple[float, float, int]:
    """(jobs/s from RQ's timestamps, wall seconds of the worker process, jobs finished)."""
    from redis import Redis
    from rq.job import Job, JobStatus

    flush_redis(ctx)
    conn = Redis.from_url(ctx.redis_url)
    ids = _enqueue(conn, n)
    args = [
        bin_path("rq"),
        "worker",
        "--burst",
        "--url",
        ctx.redis_url,
        "--worker-class",
        worker_class,
        "--path",
        str(ROOT),
        "--logging_level",
        "WARNING",
        QUEUE,
    ]
    started = time.perf_counter()
    with process(args, gateway_env(ctx), "rq-" + worker_class.rsplit(".", 1)[1], ctx) as proc:
        wait_for(lambda: proc.poll() is not None, 300, interval=0.1, what="the RQ burst worker")
    wall = time.perf_counter() - started
    jobs = [j for j in Job.fetch_many(ids, connection=conn) if j is not None]
    done = [j for j in jobs if j.get_status() == JobStatus.FINISHED]
    conn.close()
    if len(done) < 2:
        raise RuntimeError(f"{worker_class}: only {len(done)} of {n} no-op jobs finished")
    first = min(j.started_at for j in done)
    last = max(j.ended_at for j in done)
    return (len(done) - 1) / (last - first).total_seconds(), wall, len(done)


def run(ctx: Context) -> Section:
    n = ctx.scale(2000, 300)
    section = Section(
        NAME,
        "Baseline: RQ no-op jobs per second",
        method=(
            f"{n} no-op jobs ({n // 2} for the forking worker; `bench.jobs.noop`) queued on "
            f"`{QUEUE}` in one pipeline, then one "
            "`rq worker --burst` process per worker class on the same Redis. Rate = jobs / "
            "(last job's end − first job's start) from RQ's own timestamps."
        ),
    )
    rows = []
    for label, worker_class in WORKERS.items():
        # The forking worker is ~4x slower per job: half the jobs give as steady a rate.
        count = n if "Simple" in worker_class else n // 2
        rate, wall, done = _measure(ctx, worker_class, count)
        key = "simple" if "Simple" in worker_class else "fork"
        ctx.metrics[f"rq.{key}_jobs_per_s"] = rate
        rows.append([label, done, rate, 1000 / rate, wall])
    section.tables.append(Table(["worker", "jobs", "jobs/s", "ms/job", "wall s"], rows))
    section.notes.append(
        f"Python {sys.version.split()[0]}; the faster of the two is the baseline "
        "the reminder burst is compared with."
    )
    return section
