"""Booking: API rdv creation with its planned messages, and the 4-week slot search.

Both go through the JSON API with Flask's test client, in-process and one
request at a time: the figures are the application's own latency (routing,
token check, validation, overlap lock, planning and rendering the messages,
commit on PostgreSQL), without HTTP parsing or gunicorn scheduling, which
the receipt storm measures. The organisation has 20 agents open 09:00-12:00
and 14:00-17:00 every day at one lieu for a 30-minute motif; every usager
has a mobile number and an email address, so a booking plans 4 messages
(confirmation and 48 h reminder, SMS and email).
"""

from __future__ import annotations

import time
from datetime import time as clock
from datetime import timedelta

from .common import LATENCY_HEADERS, Context, Section, Table, latency_row, make_app, reset_schema

NAME = "booking"
AGENTS = 20


def _world(db):
    from gateway.models import Agent, ApiToken, Lieu, Motif, OpeningHours, Organisation

    org = Organisation(
        name="Bench", timezone="Europe/Paris", phone="+33321000000", sms_sender="Lapin"
    )
    db.session.add(org)
    db.session.flush()
    lieu = Lieu(
        organisation_id=org.id, name="MDS Calais", address="12 rue X, Calais", phone="+33321000001"
    )
    motif = Motif(
        organisation_id=org.id, name="Consultation PMI", service="PMI", duration_minutes=30
    )
    db.session.add_all([lieu, motif])
    db.session.flush()
    for i in range(AGENTS):
        agent = Agent(
            organisation_id=org.id,
            email=f"agent{i}@bench.invalid",
            first_name="Agent",
            last_name=f"N{i}",
        )
        db.session.add(agent)
        db.session.flush()
        for weekday in range(7):
            for start, end in ((clock(9), clock(12)), (clock(14), clock(17))):
                db.session.add(
                    OpeningHours(
                        organisation_id=org.id,
                        agent_id=agent.id,
                        lieu_id=lieu.id,
                        weekday=weekday,
                        start_time=start,
                        end_time=end,
                        motifs=[motif],
                    )
                )
    token_row, token = ApiToken.issue(org.id, "bench")
    db.session.add(token_row)
    db.session.commit()
    return org, lieu, motif, token


def create_usagers(client, headers: dict, n: int) -> list[int]:
    """``n`` usagers with a mobile and an email, through the API; their ids."""
    ids = []
    for i in range(n):
        response = client.post(
            "/api/v1/usagers",
            headers=headers,
            json={
                "first_name": "Léa",
                "last_name": f"Dupont{i}",
                "phone": f"06 12 {i // 10000:02d} {(i // 100) % 100:02d} {i % 100:02d}",
                "email": f"lea{i}@example.org",
            },
        )
        assert response.status_code == 201, response.get_data(as_text=True)
        ids.append(response.get_json()["id"])
    return ids


def run(ctx: Context) -> Section:
    bookings = ctx.scale(300, 60)
    searches = ctx.scale(20, 5)
    reset_schema(ctx)
    app = make_app(ctx, QUIET_HOURS="20:00-08:00", REMINDER_OFFSETS="48h", RATELIMIT_ENABLED=False)
    section = Section(
        NAME,
        "Booking: rdv creation and slot search",
        method=__doc__.split("\n\n", 1)[1].replace("\n", " "),
    )
    with app.app_context():
        from gateway.extensions import db
        from gateway.models import Message
        from gateway.slots import free_slots
        from gateway.timeutil import utcnow

        org, lieu, motif, token = _world(db)
        client = app.test_client()
        headers = {"Authorization": f"Bearer {token}"}
        usager_ids = create_usagers(client, headers, bookings)
        now = utcnow()
        # Three days ahead, so the 48 h reminders are planned too.
        slots = free_slots(
            org, motif, now + timedelta(days=3), now + timedelta(days=31), lieu_id=lieu.id
        )
        if len(slots) < bookings:
            raise RuntimeError(f"only {len(slots)} free slots for {bookings} bookings")
        step = len(slots) // bookings
        chosen = [slots[i * step] for i in range(bookings)]
        db.session.remove()

        book_times = []
        for usager_id, slot in zip(usager_ids, chosen, strict=True):
            payload = {
                "motif_id": motif.id,
                "lieu_id": lieu.id,
                "agent_id": slot.agent_id,
                "usager_id": usager_id,
                "starts_at": slot.starts_at.isoformat(),
            }
            started = time.perf_counter()
            response = client.post("/api/v1/rdvs", headers=headers, json=payload)
            book_times.append(time.perf_counter() - started)
            if response.status_code != 201:
                raise RuntimeError(
                    f"booking refused: {response.status_code} {response.get_data(as_text=True)}"
                )
        messages = db.session.query(Message).count()
        db.session.remove()

        start = (now + timedelta(days=1)).astimezone(org.tz).date().isoformat()
        end = (now + timedelta(days=29)).astimezone(org.tz).date().isoformat()
        search_times, found = [], 0
        for _ in range(searches):
            started = time.perf_counter()
            response = client.get(
                f"/api/v1/slots?motif_id={motif.id}&lieu_id={lieu.id}&from={start}&to={end}",
                headers=headers,
            )
            search_times.append(time.perf_counter() - started)
            assert response.status_code == 200, response.get_data(as_text=True)
            found = len(response.get_json()["items"])
        db.session.remove()
        db.engine.dispose()
    ctx.metrics["booking.p50_ms"] = sorted(book_times)[len(book_times) // 2] * 1000
    section.tables.append(
        Table(
            LATENCY_HEADERS + ["detail"],
            [
                latency_row(
                    "POST /api/v1/rdvs",
                    book_times,
                    [f"{messages} messages planned ({messages / bookings:.1f} per rdv)"],
                ),
                latency_row(
                    "GET /api/v1/slots (4 weeks)",
                    search_times,
                    [f"{found} free slots, {AGENTS} agents, {bookings} rdvs booked"],
                ),
            ],
        )
    )
    return section
