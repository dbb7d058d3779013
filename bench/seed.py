"""Bulk data for the benchmarks, written with ``INSERT ... SELECT generate_series``.

Rows are what the application itself writes (same columns, same kinds of
values), only many at once: going through the ORM would make seeding
1 000 000 messages take longer than the whole benchmark run may.
Ids are given explicitly (the next free ones) so related rows can be joined
by arithmetic, then each sequence is moved past them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.engine import Connection

from .common import TWILIO_FROM

SMS_BODY = "RDV PMI mar. 24/11 14h30, MDS Calais, 12 rue X. Annuler: https://lapin.example/c/"


@dataclass(frozen=True)
class Org:
    id: int
    lieu_id: int
    motif_id: int
    agent_ids: list[int]


def _next_id(conn: Connection, table: str) -> int:
    return int(conn.scalar(text(f"SELECT coalesce(max(id), 0) + 1 FROM {table}")))


def _bump_sequence(conn: Connection, table: str) -> None:
    conn.execute(
        text(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
            f"(SELECT coalesce(max(id), 1) FROM {table}))"
        )
    )


def org(conn: Connection, agents: int = 100) -> Org:
    """One organisation without quiet hours, a lieu, a 30-minute motif and ``agents`` agents."""
    org_id = conn.scalar(
        text(
            "INSERT INTO organisations (name, timezone, phone, sms_sender, quiet_hours, "
            "min_cancel_notice_minutes, created_at) "
            "VALUES ('Bench', 'Europe/Paris', '+33321000000', "
            ":sender, 'none', 0, now()) RETURNING id"
        ),
        {"sender": TWILIO_FROM},
    )
    lieu_id = conn.scalar(
        text(
            "INSERT INTO lieux (organisation_id, name, address, phone, created_at) "
            "VALUES (:o, 'MDS Calais', '12 rue X, Calais', '+33321000001', now()) RETURNING id"
        ),
        {"o": org_id},
    )
    motif_id = conn.scalar(
        text(
            "INSERT INTO motifs (organisation_id, name, service, duration_minutes, location_type, "
            "created_at) VALUES (:o, 'Consultation PMI', 'PMI', 30, 'on_site', now()) RETURNING id"
        ),
        {"o": org_id},
    )
    first = _next_id(conn, "agents")
    conn.execute(
        text(
            "INSERT INTO agents (id, organisation_id, email, password_hash, first_name, last_name, "
            "active, booking_version, created_at) "
            "SELECT :first + g, :o, 'agent' || (:first + g) || '@bench.invalid', '', 'Agent', "
            "'N' || g, true, 0, now() FROM generate_series(0, :n - 1) g"
        ),
        {"first": first, "o": org_id, "n": agents},
    )
    _bump_sequence(conn, "agents")
    return Org(org_id, lieu_id, motif_id, list(range(first, first + agents)))


def reminders(
    conn: Connection,
    o: Org,
    n: int,
    *,
    status: str,
    send_at: datetime,
    rdv_start: datetime,
    provider: str | None = None,
) -> tuple[int, int]:
    """``n`` usagers, each with one rdv and one SMS reminder in ``status``.

    Returns the messages' ids as the range [a, b] (first and last).

    Rdvs are spread over the organisation's agents, back to back (30 minutes
    each) from ``rdv_start``, so none overlap. With ``provider`` the messages
    are as a send left them: provider name and a Twilio-like sid ``SM…``.
    """
    u0, r0 = _next_id(conn, "usagers"), _next_id(conn, "rdvs")
    p0, m0 = _next_id(conn, "participations"), _next_id(conn, "messages")
    agents = len(o.agent_ids)
    params = {
        "n": n,
        "o": o.id,
        "u0": u0,
        "r0": r0,
        "p0": p0,
        "m0": m0,
        "lieu": o.lieu_id,
        "motif": o.motif_id,
        "a0": o.agent_ids[0],
        "agents": agents,
        "start": rdv_start,
        "send_at": send_at,
        "status": status,
        "provider": provider,
        "body": SMS_BODY,
    }
    conn.execute(
        text(
            "INSERT INTO usagers (id, organisation_id, first_name, last_name, phone, email, "
            "notify_sms, notify_email, sms_opted_out, created_at) "
            "SELECT :u0 + g, :o, 'Léa', 'Usager' || (:u0 + g), "
            "'+336' || lpad((:u0 + g)::text, 8, '0'), "
            "NULL, true, true, false, now() FROM generate_series(0, :n - 1) g"
        ),
        params,
    )
    conn.execute(
        text(
            "INSERT INTO rdvs (id, organisation_id, motif_id, lieu_id, agent_id, starts_at, "
            "ends_at, duration_minutes, status, updated_at, created_at) "
            "SELECT :r0 + g, :o, :motif, :lieu, :a0 + (g % :agents), "
            ":start + ((g / :agents) * interval '30 minutes'), "
            ":start + ((g / :agents) * interval '30 minutes') + interval '30 minutes', "
            "30, 'unknown', now(), now() FROM generate_series(0, :n - 1) g"
        ),
        params,
    )
    conn.execute(
        text(
            "INSERT INTO participations (id, rdv_id, usager_id, cancel_code) "
            "SELECT :p0 + g, :r0 + g, :u0 + g, 'b' || lpad((:p0 + g)::text, 11, '0') "
            "FROM generate_series(0, :n - 1) g"
        ),
        params,
    )
    conn.execute(
        text(
            "INSERT INTO messages (id, organisation_id, rdv_id, usager_id, channel, kind, status, "
            "send_at, recipient, body, segments, encoding, provider, provider_message_id, "
            "attempts, queued_at, sent_at, status_changed_at, created_at) "
            "SELECT :m0 + g, :o, :r0 + g, :u0 + g, 'sms', 'reminder', :status, :send_at, "
            "'+336' || lpad((:u0 + g)::text, 8, '0'), "
            ":body || 'b' || lpad((:p0 + g)::text, 11, '0') || ' ou repondez ANNULER', 1, 'GSM-7', "
            "CAST(:provider AS varchar), "
            "CASE WHEN CAST(:provider AS varchar) IS NULL THEN NULL "
            "     ELSE 'SM' || md5('bench' || (:m0 + g)) END, "
            "CASE WHEN CAST(:provider AS varchar) IS NULL THEN 0 ELSE 1 END, "
            "CASE WHEN CAST(:provider AS varchar) IS NULL THEN NULL ELSE now() END, "
            "CASE WHEN CAST(:provider AS varchar) IS NULL THEN NULL ELSE now() END, now(), now() "
            "FROM generate_series(0, :n - 1) g"
        ),
        params,
    )
    conn.execute(
        text(
            "INSERT INTO message_status_changes (message_id, status, at) "
            "SELECT :m0 + g, :status, now() FROM generate_series(0, :n - 1) g"
        ),
        params,
    )
    for table in ("usagers", "rdvs", "participations", "messages"):
        _bump_sequence(conn, table)
    return m0, m0 + n - 1


def filler_messages(conn: Connection, o: Org, n: int, now: datetime) -> None:
    """``n`` messages of the past and future, none of them due (the growth benchmark's bulk).

    90 % are done with (70 % delivered or sent, 20 % cancelled, skipped or
    failed) and were due in the past year; 10 % are scheduled for the next
    30 days. They have no rdv: nothing reads them but the due query.
    """
    m0 = _next_id(conn, "messages")
    conn.execute(
        text(
            "INSERT INTO messages (id, organisation_id, channel, kind, status, send_at, recipient, "
            "body, segments, encoding, provider, provider_message_id, attempts, sent_at, "
            "status_changed_at, created_at) "
            "SELECT :m0 + g, :o, 'sms', 'reminder', s.status, "
            "CASE WHEN s.status = 'scheduled' THEN :now + (g % 43200) * interval '1 minute' "
            "     ELSE :now - (1 + g % 525600) * interval '1 minute' END, "
            "'+336' || lpad((g % 100000000)::text, 8, '0'), :body || 'filler', 1, 'GSM-7', "
            "CASE WHEN s.status IN ('sent', 'delivered') THEN 'twilio' END, "
            "CASE WHEN s.status IN ('sent', 'delivered') THEN 'SM' || md5('f' || (:m0 + g)) END, "
            "CASE WHEN s.status IN ('sent', 'delivered', 'failed') THEN 1 ELSE 0 END, "
            "CASE WHEN s.status IN ('sent', 'delivered') "
            "THEN :now - (1 + g % 525600) * interval '1 minute' END, "
            ":now, :now "
            "FROM generate_series(0, :n - 1) g, LATERAL (SELECT CASE "
            "  WHEN g % 10 < 6 THEN 'delivered' WHEN g % 10 = 6 THEN 'sent' "
            "  WHEN g % 10 = 7 THEN 'cancelled' "
            "  WHEN g % 10 = 8 THEN (ARRAY['skipped', 'failed', 'cancelled'])[1 + (g / 10) % 3] "
            "  ELSE 'scheduled' END AS status) s"
        ),
        {"m0": m0, "o": o.id, "n": n, "now": now, "body": SMS_BODY},
    )
    _bump_sequence(conn, "messages")


def at_minute(now: datetime) -> datetime:
    """The start of ``now``'s minute: every reminder of a burst is due at that instant."""
    return now.replace(second=0, microsecond=0)
