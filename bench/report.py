"""Tables on the terminal, goals, the machine, and BENCHMARKS.md."""

from __future__ import annotations

import math
import os
import platform
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .common import Context, Section, fmt


@dataclass
class Goal:
    name: str
    target: str
    measured: str
    met: bool | None  # None: could not be measured (not available yet, baseline not run)


# ---------------------------------------------------------------- machine


def _first_line(path: str, prefix: str) -> str | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def machine(ctx: Context) -> list[tuple[str, str]]:
    """What the figures were measured on."""
    from redis import Redis
    from sqlalchemy import create_engine, text

    cpu = _first_line("/proc/cpuinfo", "model name") or platform.processor() or "?"
    mem_kb = _first_line("/proc/meminfo", "MemTotal")
    ram = f"{int(mem_kb.split()[0]) / 1024 / 1024:.1f} GiB" if mem_kb else "?"
    os_name = platform.platform()
    try:
        pretty = next(
            (
                line.split("=", 1)[1].strip('"')
                for line in Path("/etc/os-release").read_text().splitlines()
                if line.startswith("PRETTY_NAME=")
            ),
            None,
        )
    except OSError:
        pretty = None
    engine = create_engine(ctx.database_url)
    with engine.connect() as conn:
        pg = conn.scalar(text("SHOW server_version"))
    engine.dispose()
    redis = Redis.from_url(ctx.redis_url)
    redis_version = redis.info("server").get("redis_version", "?")
    redis.close()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        ("CPU", cpu),
        ("Cores", str(os.cpu_count())),
        ("RAM", ram),
        ("OS", f"{pretty} ({os_name})" if pretty else os_name),
        ("Python", sys.version.split()[0]),
        ("PostgreSQL", str(pg)),
        ("Redis", str(redis_version)),
        ("Load average at start (1, 5, 15 min)", load),
    ]


# ---------------------------------------------------------------- goals


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b or math.isnan(a) or math.isnan(b):
        return None
    return a / b


def goals(metrics: dict[str, float]) -> list[Goal]:
    """The issue's goals, from the figures of this run."""
    out = []
    best_sms = max(
        (metrics[k] for k in ("burst.sms_per_s.1", "burst.sms_per_s.2") if k in metrics),
        default=None,
    )
    out.append(
        Goal(
            "Reminder burst: SMS/s on this machine",
            "≥ 500 SMS/s",
            f"{fmt(best_sms)} SMS/s (best of 1 and 2 workers)" if best_sms else "not available yet",
            None if best_sms is None else best_sms >= 500,
        )
    )
    rq = max(
        (metrics[k] for k in ("rq.simple_jobs_per_s", "rq.fork_jobs_per_s") if k in metrics),
        default=None,
    )
    ratio = _ratio(best_sms, rq)
    out.append(
        Goal(
            "Reminder burst vs RQ no-op jobs/s",
            "≥ 2×",
            f"{ratio:.2f}× ({fmt(best_sms)} SMS/s vs {fmt(rq)} jobs/s)"
            if ratio
            else ("not available yet" if best_sms is None else "baseline not run"),
            None if ratio is None else ratio >= 2,
        )
    )
    receipts, bare = metrics.get("receipts.per_s"), metrics.get("flask.per_s")
    ratio = _ratio(receipts, bare)
    measured = (
        f"{ratio * 100:.0f} % ({fmt(receipts)} vs {fmt(bare)} req/s)"
        if ratio
        else ("not available yet" if receipts is None else "baseline not run")
    )
    floor = _ratio(metrics.get("flask.insert_per_s"), bare)
    if ratio and floor:
        measured += (
            f"; the bare endpoint with one INSERT per request: {floor * 100:.0f} % "
            f"({fmt(metrics['flask.insert_per_s'])} req/s)"
        )
    out.append(
        Goal(
            "Receipt storm vs bare Flask endpoint",
            "≥ 40 %",
            measured,
            None if ratio is None else ratio >= 0.40,
        )
    )
    growth = metrics.get("growth.ratio")
    available = metrics.get("growth.available")
    if growth is None:
        measured, met = "not run", None
    elif not available:
        measured, met = (f"{growth:.2f}× (due SELECT only: dispatch_due not available yet)", None)
    else:
        measured, met = f"{growth:.2f}× from the smallest to the largest table", growth <= 1.5
    out.append(
        Goal(
            "Growth: dispatch cost per due message stays flat",
            "≤ 1.5× from 10 000 to 1 000 000",
            measured,
            met,
        )
    )
    ratio = metrics.get("webhooks.booking_p95_ratio")
    out.append(
        Goal(
            "Booking with 3 webhook endpoints vs none (p95)",
            "≤ 1.10×",
            "not run" if ratio is None else f"{ratio:.2f}×",
            None if ratio is None else ratio <= 1.10,
        )
    )
    events = max(
        (
            metrics[k]
            for k in ("webhooks.events_per_s.1", "webhooks.events_per_s.2")
            if k in metrics
        ),
        default=None,
    )
    out.append(
        Goal(
            "Webhook delivery to a receiver answering in 100 ms",
            "≥ 500 events/s",
            "not run" if events is None else f"{fmt(events)} events/s (best of 1 and 2 workers)",
            None if events is None else events >= 500,
        )
    )
    for key, label, target in (
        ("online.slot_page_p95_ms", "Online booking: public slot page, 20 agents (p95)", 100),
        ("online.booking_p95_ms", "Online booking: code sent + code checked (p95)", 50),
    ):
        value = metrics.get(key)
        out.append(
            Goal(
                label,
                f"< {target} ms in-process",
                "not run" if value is None else f"{value:.1f} ms",
                None if value is None else value < target,
            )
        )
    return out


def _verdict(goal: Goal) -> str:
    return "—" if goal.met is None else ("met" if goal.met else "MISSED")


# ---------------------------------------------------------------- terminal


def text_table(headers: list[str], rows: list[list]) -> str:
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)
    ]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    for raw, row in zip(rows, cells, strict=True):
        out.append(
            "  ".join(
                c.rjust(w) if isinstance(v, int | float) else c.ljust(w)
                for v, c, w in zip(raw, row, widths, strict=True)
            )
        )
    return "\n".join(out)


def print_section(section: Section) -> None:
    print(f"\n== {section.title} ({section.seconds:.0f} s)", flush=True)
    for table in section.tables:
        print(text_table(table.headers, table.rows))
    for note in section.notes:
        print("  * " + note)
    sys.stdout.flush()


def print_goals(items: list[Goal]) -> None:
    print("\n== Goals")
    print(
        text_table(
            ["goal", "target", "measured", "verdict"],
            [[g.name, g.target, g.measured, _verdict(g)] for g in items],
        )
    )


# ---------------------------------------------------------------- markdown


def _md_table(headers: list[str], rows: list[list]) -> str:
    def cell(value) -> str:
        return fmt(value).replace("|", "\\|")

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown(
    ctx: Context,
    sections: list[Section],
    items: list[Goal],
    machine_rows: list[tuple[str, str]],
    command: str,
    seconds: float,
) -> str:
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        "# Benchmarks",
        "",
        (
            f"Written by `{command}` on {date} ({seconds / 60:.1f} minutes). Do not edit by hand: "
            "run `make bench` again (see docs/benchmarks.md)."
        ),
        "",
        "## Machine",
        "",
        _md_table(["", ""], [list(r) for r in machine_rows]),
        "",
        "## Goals",
        "",
        _md_table(
            ["goal", "target", "measured", "verdict"],
            [[g.name, g.target, g.measured, _verdict(g)] for g in items],
        ),
        "",
    ]
    if any(g.met is False for g in items):
        out += [
            'A goal marked MISSED is analysed in docs/benchmarks.md ("What misses and why").',
            "",
        ]
    if ctx.quick:
        out += ["**Quick run (`--quick`): reduced sizes, not the recorded figures.**", ""]
    for section in sections:
        out += [f"## {section.title}", ""]
        if not section.available:
            out += ["**Not available yet** — see the notes below.", ""]
        if section.method:
            out += [section.method, ""]
        for table in section.tables:
            out += [_md_table(table.headers, table.rows), ""]
        for note in section.notes:
            out += [f"- {note}"]
        if section.notes:
            out.append("")
        for title, block in section.blocks:
            out += [f"{title}:", "", "```", block, "```", ""]
        out += [f"_{section.seconds:.0f} s._", ""]
    return "\n".join(out)
