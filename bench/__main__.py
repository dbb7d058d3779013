"""``python -m bench`` (``make bench``): run the benchmarks, print them, rewrite BENCHMARKS.md.

    python -m bench                  # everything, writes BENCHMARKS.md (under 10 minutes)
    python -m bench --quick          # reduced sizes, for iterating; writes nothing
    python -m bench --only growth    # one benchmark (repeatable or comma list); writes nothing
    python -m bench --quick --write --output /tmp/B.md

Settings: BENCH_DATABASE_URL / TEST_DATABASE_URL and BENCH_REDIS_URL /
TEST_REDIS_URL (see bench/common.py); both are wiped.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import sys
import time
import traceback

from . import report
from .common import (
    ROOT,
    Context,
    NotAvailable,
    Section,
    check_throwaway,
    database_url,
    ensure_database,
    redis_url,
    tempdir,
)

# In run order: baselines first, so the goals can be computed against them.
BENCHMARKS = {
    "rq-baseline": "bench.baseline_rq",
    "flask-baseline": "bench.baseline_flask",
    "fake-twilio": "bench.fake_twilio_check",
    "booking": "bench.booking",
    "online-booking": "bench.online_booking",
    "growth": "bench.growth",
    "burst": "bench.reminder_burst",
    "receipts": "bench.receipt_storm",
    "webhooks": "bench.webhooks_out",
}


def _selected(only: list[str]) -> list[str]:
    names = [n.strip() for item in only for n in item.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise SystemExit(
            f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}"
        )
    return [n for n in BENCHMARKS if n in names] if names else list(BENCHMARKS)


def _run_one(name: str, ctx: Context) -> Section:
    module = importlib.import_module(BENCHMARKS[name])
    started = time.perf_counter()
    try:
        section = module.run(ctx)
    except NotAvailable as exc:
        section = Section(
            name,
            getattr(module, "TITLE", name),
            method=(module.__doc__ or "").strip(),
            available=False,
            notes=[f"Not available yet: {exc}"],
        )
    except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the others
        traceback.print_exc()
        section = Section(
            name,
            getattr(module, "TITLE", name),
            available=False,
            notes=[f"FAILED: {exc.__class__.__name__}: {exc}"],
        )
    section.seconds = time.perf_counter() - started
    return section


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="reduced sizes (seconds, not minutes)")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help=f"run only these: {', '.join(BENCHMARKS)}",
    )
    parser.add_argument(
        "--write", action="store_true", help="write the report even for --quick or --only runs"
    )
    parser.add_argument("--output", default=str(ROOT / "BENCHMARKS.md"))
    parser.add_argument("--keep", action="store_true", help="keep the work folder (process logs)")
    args = parser.parse_args(argv)

    names = _selected(args.only)
    # The app logs every migration step at INFO; the tables are what matters here.
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    ctx = Context(database_url(), redis_url(), args.quick, tempdir())
    check_throwaway(ctx.database_url)
    ensure_database(ctx.database_url)
    machine = report.machine(ctx)
    print("Lapin benchmarks" + (" (quick)" if args.quick else ""))
    for label, value in machine:
        print(f"  {label}: {value}")
    print(f"  database {ctx.database_url}, redis {ctx.redis_url}, logs in {ctx.workdir}")

    started = time.perf_counter()
    sections = []
    for name in names:
        section = _run_one(name, ctx)
        sections.append(section)
        report.print_section(section)
    seconds = time.perf_counter() - started
    goals = report.goals(ctx.metrics)
    report.print_goals(goals)
    print(f"\n{seconds:.0f} s in all.")

    if args.write or (not args.quick and not args.only):
        command = "make bench" if not sys.argv[1:] else "python -m bench " + " ".join(sys.argv[1:])
        text = report.markdown(ctx, sections, goals, machine, command, seconds)
        with open(args.output, "w") as out:
            out.write(text)
        print(f"Wrote {args.output}")
    if not args.keep:
        shutil.rmtree(ctx.workdir, ignore_errors=True)
    failed = [s.name for s in sections if any(n.startswith("FAILED") for n in s.notes)]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
