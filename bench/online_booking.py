"""Online booking: the public slot page, and a whole booking (code sent, code checked).

In-process with Flask's test client, one request at a time: the figures are the
application's own time (routing, slot engine, rendering, the hold under the
agent's lock, the code's message, the booking with its messages, commit),
without HTTP parsing or gunicorn scheduling. The organisation has 20 agents open
09:00-12:00 and 14:00-17:00 every day at one lieu for a 30-minute motif bookable
online (2 h notice, 60 days ahead), and a quarter of the slots of the next four
weeks already booked. The slot page is fetched for each of the next four weeks
in turn (the usager's "next week" clicks). A whole booking is the POST of the
details form (the slot is held, the code planned) plus the POST of the code (the
rdv booked with its confirmation and reminders, SMS and email); each booking
uses its own mobile number, so the per-number limit never applies, and the
per-address rate limit is off.
"""

from __future__ import annotations

import re
import time
from datetime import timedelta

from .booking import AGENTS, _world, create_usagers
from .common import (
    LATENCY_HEADERS,
    Context,
    Section,
    Table,
    latency_row,
    make_app,
    percentile,
    reset_schema,
)

NAME = "online-booking"


def run(ctx: Context) -> Section:
    bookings = ctx.scale(200, 40)
    page_rounds = ctx.scale(10, 3)
    reset_schema(ctx)
    app = make_app(ctx, QUIET_HOURS="20:00-08:00", REMINDER_OFFSETS="48h", RATELIMIT_ENABLED=False)
    section = Section(
        NAME,
        "Online booking: public slot page and whole booking",
        method=__doc__.split("\n\n", 1)[1].replace("\n", " "),
    )
    with app.app_context():
        from gateway.extensions import db
        from gateway.models import Participation, Rdv, Usager, VerificationCode
        from gateway.slots import free_slots
        from gateway.timeutil import utcnow

        org, lieu, motif, token = _world(db)
        headers = {"Authorization": f"Bearer {token}"}
        org.slug, org.online_booking = "bench", True
        motif.bookable_online = True
        motif.online_min_notice_minutes, motif.online_max_delay_days = 120, 60
        usager = Usager(organisation_id=org.id, first_name="Léa", last_name="Dupont")
        usager.phone = "+33612000000"
        db.session.add(usager)
        db.session.commit()
        now = utcnow()
        tz = org.tz
        slots = free_slots(
            org, motif, now + timedelta(days=1), now + timedelta(days=29), lieu_id=lieu.id
        )
        # A quarter of the agenda already taken (rows written directly: only the slot
        # engine reads them).
        for slot in slots[::4]:
            db.session.add(
                Rdv(
                    organisation_id=org.id,
                    motif_id=motif.id,
                    lieu_id=lieu.id,
                    agent_id=slot.agent_id,
                    starts_at=slot.starts_at,
                    ends_at=slot.ends_at,
                    duration_minutes=motif.duration_minutes,
                    participations=[Participation(usager=usager)],
                )
            )
        db.session.commit()
        booked = len(slots[::4])
        free = [s for i, s in enumerate(slots) if i % 4]
        step = max(1, len(free) // bookings)
        chosen = [free[i * step] for i in range(bookings)]
        taken = set(chosen)
        api_slots = [s for s in free if s not in taken][: bookings // 2]
        ids = (org.slug, motif.id, lieu.id)
        db.session.remove()

        client = app.test_client()
        base = f"/prendre-rdv/{ids[0]}/creneau?motif={ids[1]}&lieu={ids[2]}"
        api = f"/api/v1/slots?motif_id={ids[1]}&lieu_id={ids[2]}"
        first_day = (now + timedelta(minutes=120)).astimezone(tz).date()
        page_times, page_cpu, api_times, buttons = [], [], [], 0
        for _ in range(page_rounds):
            for week in range(4):
                day = first_day + timedelta(days=7 * week)
                started, cpu = time.perf_counter(), time.thread_time()
                response = client.get(f"{base}&du={day.isoformat()}")
                page_times.append(time.perf_counter() - started)
                page_cpu.append(time.thread_time() - cpu)
                assert response.status_code == 200, response.status_code
                buttons += response.get_data(as_text=True).count("/coordonnees?")
                db.session.remove()
                # The agents' API over the same week, under the same load, for reference.
                week_end = (day + timedelta(days=7)).isoformat()
                started = time.perf_counter()
                response = client.get(
                    f"{api}&from={day.isoformat()}&to={week_end}", headers=headers
                )
                api_times.append(time.perf_counter() - started)
                assert response.status_code == 200, response.get_data(as_text=True)
                db.session.remove()

        whole, whole_cpu, sent, checked = [], [], [], []
        for n, slot in enumerate(chosen):
            url = (
                f"/prendre-rdv/{ids[0]}/coordonnees?motif={ids[1]}&lieu={ids[2]}"
                f"&agent={slot.agent_id}&debut={slot.starts_at.astimezone(tz).isoformat()}"
            ).replace("+", "%2B")
            details = {
                "first_name": "Inès",
                "last_name": f"Martin{n}",
                "phone": f"06 13 {n // 10000:02d} {(n // 100) % 100:02d} {n % 100:02d}",
                "email": f"ines{n}@example.org",
                "notify_sms": "y",
                "notify_email": "y",
            }
            started, cpu = time.perf_counter(), time.thread_time()
            response = client.post(url, data=details)
            sent.append(time.perf_counter() - started)
            sent_cpu = time.thread_time() - cpu
            db.session.remove()
            if response.status_code != 303 or "/code/" not in response.headers["Location"]:
                raise RuntimeError(f"code refused: {response.status_code} {response.location}")
            code_url = response.headers["Location"]
            public_id = code_url.rsplit("/", 1)[1]
            row = db.session.query(VerificationCode).filter_by(public_id=public_id).one()
            code = re.search(r"\b(\d{6})\b", row.message.body).group(1)
            db.session.remove()
            started, cpu = time.perf_counter(), time.thread_time()
            response = client.post(code_url, data={"code": code})
            checked.append(time.perf_counter() - started)
            whole_cpu.append(sent_cpu + time.thread_time() - cpu)
            db.session.remove()
            if response.status_code != 303 or "/confirmation/" not in response.headers["Location"]:
                raise RuntimeError(f"booking refused: {response.status_code}")
            whole.append(sent[-1] + checked[-1])
        # The agents' API booking, under the same load, for reference.
        usager_ids = create_usagers(client, headers, len(api_slots))
        api_books, api_cpu = [], []
        for usager_id, slot in zip(usager_ids, api_slots, strict=True):
            payload = {
                "motif_id": ids[1],
                "lieu_id": ids[2],
                "agent_id": slot.agent_id,
                "usager_id": usager_id,
                "starts_at": slot.starts_at.isoformat(),
            }
            started, cpu = time.perf_counter(), time.thread_time()
            response = client.post("/api/v1/rdvs", headers=headers, json=payload)
            api_books.append(time.perf_counter() - started)
            api_cpu.append(time.thread_time() - cpu)
            assert response.status_code == 201, response.get_data(as_text=True)
            db.session.remove()
        db.engine.dispose()

    ctx.metrics["online.slot_page_p95_ms"] = percentile(page_times, 95) * 1000
    ctx.metrics["online.booking_p95_ms"] = percentile(whole, 95) * 1000
    ms = 1000
    section.notes.append(
        f"CPU time of the request thread, p95: slot page {percentile(page_cpu, 95) * ms:.1f} ms, "
        f"whole booking {percentile(whole_cpu, 95) * ms:.1f} ms, the API's booking "
        f"{percentile(api_cpu, 95) * ms:.1f} ms (wall time above includes waiting for the "
        "database and for a core)."
    )
    detail = f"{AGENTS} agents, {booked} rdvs booked, {buttons // len(page_times)} slots a page"
    section.tables.append(
        Table(
            LATENCY_HEADERS + ["detail"],
            [
                latency_row("GET slot page (one week of four)", page_times, [detail]),
                latency_row(
                    "reference: GET /api/v1/slots (same weeks)", api_times, ["agents' API"]
                ),
                latency_row("POST details (hold + code)", sent, [""]),
                latency_row(
                    "POST code (rdv booked)", checked, ["confirmation + reminder, SMS and email"]
                ),
                latency_row("whole online booking", whole, [f"{bookings} bookings"]),
                latency_row("reference: POST /api/v1/rdvs", api_books, ["the agents' API booking"]),
            ],
        )
    )
    return section
