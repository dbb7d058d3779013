"""EXPLAIN ANALYZE the statistics queries on PostgreSQL with a large département's year.

Not a test (no timing assertion anywhere): a check to run by hand after changing
``gateway/stats.py`` or its indexes. It fills an EMPTIED database with 300 000
rdvs and 1 000 000 messages over the last twelve months (generated in SQL,
about a minute), then prints the plan and timing of each statistics query, for
all organisations and for one::

    BENCH_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/<scratch db> \\
        .venv/bin/python -m bench.stats_explain --reset

``--reset`` drops the database's ``public`` schema first: never point it at data you keep.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.dialects import postgresql

RDVS = 300_000
MESSAGES = 1_000_000
AGENTS = 40

FILL = [
    (
        "INSERT INTO organisations (name, timezone, min_cancel_notice_minutes, created_at) "
        "VALUES ('Grand département', 'Europe/Paris', 0, now()), "
        "('Petit département', 'Europe/Paris', 0, now())"
    ),
    (
        "INSERT INTO lieux (organisation_id, name, address, created_at) "
        "VALUES (1, 'MDS', '1 rue X', now())"
    ),
    (
        "INSERT INTO motifs (organisation_id, name, service, duration_minutes, location_type, "
        "created_at) "
        "VALUES (1, 'Consultation', 'PMI', 30, 'on_site', now())"
    ),
    (
        f"INSERT INTO agents (organisation_id, email, password_hash, first_name, last_name, "
        f"active, booking_version, created_at) "
        f"SELECT 1 + (g % 10 = 0)::int, 'a' || g || '@bench.test', '', 'A', 'B', true, 0, now() "
        f"FROM generate_series(1, {AGENTS}) g"
    ),
    # One rdv per agent every 70 minutes over the past year: no overlap, as the constraint wants.
    (
        f"INSERT INTO rdvs (organisation_id, motif_id, lieu_id, agent_id, starts_at, ends_at, "
        f"duration_minutes, status, "
        f"cancelled_via, cancelled_at, created_at, updated_at) "
        f"SELECT a.organisation_id, 1, 1, a.id, s, s + interval '30 minutes', 30, "
        f"(ARRAY['seen','seen','seen','seen','seen','seen',"
        f"'noshow','excused','revoked','unknown'])[1 + g % 10], "
        f"CASE g % 10 WHEN 7 THEN (ARRAY['link','sms'])[1 + g % 2] "
        f"WHEN 8 THEN (ARRAY['agent','api'])[1 + g % 2] END, "
        f"CASE WHEN g % 10 IN (7, 8) THEN s - interval '1 day' END, s - interval '10 days', s "
        f"FROM generate_series(0, {RDVS - 1}) g "
        f"JOIN agents a ON a.id = 1 + g % {AGENTS} "
        f"CROSS JOIN LATERAL (SELECT now() - interval '360 days' "
        f"+ (g / {AGENTS}) * interval '70 minutes' AS s) t"
    ),
    (
        f"INSERT INTO messages (organisation_id, rdv_id, channel, kind, status, send_at, "
        f"recipient, body, segments, "
        f"provider, attempts, sent_at, created_at) "
        f"SELECT r.organisation_id, r.id, CASE WHEN g % 4 = 0 THEN 'email' ELSE 'sms' END, "
        f"'reminder', "
        f"(ARRAY['delivered','delivered','delivered','delivered','delivered','delivered',"
        f"'sent','undelivered','failed','cancelled'])[1 + g % 10], "
        f"r.starts_at - interval '2 days', '+33612345678', 'x', "
        f"CASE WHEN g % 4 = 0 THEN NULL ELSE 1 + g % 2 END, "
        f"CASE WHEN g % 4 = 0 THEN 'smtp' WHEN g % 3 = 0 THEN 'vonage' ELSE 'twilio' END, 1, "
        f"CASE WHEN g % 10 = 9 THEN NULL ELSE r.starts_at - interval '2 days' END, "
        f"r.starts_at - interval '10 days' "
        f"FROM generate_series(0, {MESSAGES - 1}) g JOIN rdvs r ON r.id = 1 + g % {RDVS}"
    ),
    "ANALYZE",
]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--reset", action="store_true", help="drop the public schema, migrate and fill it"
    )
    args = parser.parse_args()
    url = os.environ.get("BENCH_DATABASE_URL", "")
    if not url.startswith("postgresql"):
        print("Set BENCH_DATABASE_URL to a scratch PostgreSQL database.", file=sys.stderr)
        return 2

    from gateway import create_app
    from gateway.cli import migrate_to_head
    from gateway.extensions import db
    from gateway.stats import message_statement, month_window, rdv_statement
    from gateway.timeutil import utcnow

    app = create_app(
        {"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "bench", "EMBEDDED_WORKER": False}
    )
    with app.app_context():
        if args.reset:
            with db.engine.begin() as conn:
                conn.execute(text("DROP SCHEMA public CASCADE"))
                conn.execute(text("CREATE SCHEMA public"))
            migrate_to_head()
            with db.engine.begin() as conn:
                for statement in FILL:
                    started = time.perf_counter()
                    conn.execute(text(statement))
                    print(f"-- {time.perf_counter() - started:6.1f} s  {statement[:70]}…")
        now = utcnow()
        window = month_window(now, ZoneInfo("Europe/Paris"), 12)
        for label, statement in [
            ("rdvs, all organisations", rdv_statement(None, window, now)),
            ("rdvs, organisation 1", rdv_statement(1, window, now)),
            ("messages, all organisations", message_statement(None, window)),
            ("messages, organisation 1", message_statement(1, window)),
        ]:
            compiled = statement.compile(dialect=postgresql.psycopg.dialect())
            with db.engine.connect() as conn:
                plan = conn.exec_driver_sql(
                    "EXPLAIN (ANALYZE, BUFFERS) " + str(compiled), compiled.params
                ).all()
            print(f"\n== {label}")
            print("\n".join(row[0] for row in plan))
    return 0


if __name__ == "__main__":
    sys.exit(main())
