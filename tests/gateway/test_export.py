"""The agents' export of a period (CSV and XLSX): what each row says, on both databases."""

from __future__ import annotations

import csv
import io
from datetime import datetime

import openpyxl
import pytest
import time_machine
from sqlalchemy import select

from gateway.booking import book, cancel
from gateway.extensions import db
from gateway.models import Message
from gateway.planning import plan_email_fallback
from providers import status as S
from scheduler.transitions import transition

from ..factories import make_usager
from .test_api import NOW, PARIS


@pytest.fixture
def period(world):
    """Three rdvs on 5 June (one reminder delivered, one SMS failed with its email
    fallback, one cancelled by the usager's link) and one on 20 June."""
    with time_machine.travel(NOW, tick=False):
        sms_only = make_usager(world.org, first="Ana", last="Silva", phone="+33611111111")
        both = make_usager(
            world.org,
            first="Bob",
            last="Durand",
            phone="+33622222222",
            email="bob@example.org",
            notify_email=False,  # SMS only; the email address serves the fallback
        )
        rdvs = {}
        for name, usager, start in (
            ("delivered", sms_only, datetime(2026, 6, 5, 9, 0, tzinfo=PARIS)),
            ("fallback", both, datetime(2026, 6, 5, 10, 0, tzinfo=PARIS)),
            ("cancelled", world.usager, datetime(2026, 6, 5, 11, 0, tzinfo=PARIS)),
            ("later", world.usager, datetime(2026, 6, 20, 9, 0, tzinfo=PARIS)),
        ):
            rdvs[name] = book(
                world.org,
                motif_id=world.motif.id,
                lieu_id=world.lieu.id,
                agent_id=world.agent.id,
                usager_ids=[usager.id],
                starts_at=start,
            )
        cancel(rdvs["cancelled"], via="link")

        def reminder(rdv, channel):
            return db.session.scalar(
                select(Message).where(
                    Message.rdv_id == rdv.id, Message.kind == "reminder", Message.channel == channel
                )
            )

        transition(reminder(rdvs["delivered"], "sms"), S.SENT, detail=None)
        transition(reminder(rdvs["delivered"], "sms"), S.DELIVERED)
        sms = reminder(rdvs["fallback"], "sms")
        transition(sms, S.FAILED, detail="numéro invalide")
        fallback = plan_email_fallback(sms, NOW)
        db.session.flush()
        transition(fallback, S.SENT)
        db.session.commit()
    return rdvs


def _csv_rows(client, **query):
    r = client.get("/rdvs/export", query_string={"format": "csv", **query})
    assert r.status_code == 200 and r.mimetype == "text/csv"
    assert "attachment" in r.headers["Content-Disposition"]
    text = r.get_data(as_text=True)
    assert text.startswith("\ufeff")
    return list(csv.DictReader(io.StringIO(text[1:]), delimiter=";"))


def test_csv_rows_say_who_what_where_and_each_reminder(login, world, period):
    rows = _csv_rows(login, **{"from": "2026-06-05", "to": "2026-06-05"})
    assert [int(r["N° rdv"]) for r in rows] == [
        period["delivered"].id,
        period["fallback"].id,
        period["cancelled"].id,
    ]
    delivered, fallback, cancelled = rows
    assert delivered["Usager(s)"] == "Ana Silva" and delivered["Téléphone(s)"] == "+33611111111"
    assert delivered["Date"] == "2026-06-05" and delivered["Heure"] == "09:00"
    assert (delivered["Motif"], delivered["Lieu"], delivered["Agent"]) == (
        "Consultation PMI",
        "MDS Calais",
        "Anne Martin",
    )
    assert delivered["Statut"] == "À venir" and delivered["Annulé via"] == ""
    assert delivered["Rappels"] == "SMS 03/06 09:00 : reçu"
    assert fallback["Rappels"] == "SMS 03/06 10:00 : échec → repli e-mail : envoyé"
    assert cancelled["Statut"] == "Annulé par l'usager"
    assert cancelled["Annulé via"] == "le lien d'annulation"
    assert cancelled["Annulé le"] == "2026-06-01 10:00"
    assert cancelled["Rappels"] == "SMS 03/06 11:00 : annulé ; E-mail 03/06 11:00 : annulé"
    # The whole month: the rdv of the 20th too, after the others.
    month = _csv_rows(login, **{"from": "2026-06-01", "to": "2026-06-30"})
    assert [int(r["N° rdv"]) for r in month][-1] == period["later"].id and len(month) == 4


def test_xlsx_has_the_same_rows(login, world, period):
    r = login.get(
        "/rdvs/export", query_string={"from": "2026-06-05", "to": "2026-06-05", "format": "xlsx"}
    )
    assert r.status_code == 200 and r.mimetype.endswith("spreadsheetml.sheet")
    sheet = openpyxl.load_workbook(io.BytesIO(r.get_data())).active
    rows = list(sheet.iter_rows(values_only=True))
    header, body = rows[0], rows[1:]
    as_csv = _csv_rows(login, **{"from": "2026-06-05", "to": "2026-06-05"})
    assert list(header) == list(as_csv[0].keys())
    assert [row[0] for row in body] == [int(r["N° rdv"]) for r in as_csv]
    assert body[0][1] == datetime(2026, 6, 5) and body[0][2] == "09:00"
    assert body[1][header.index("Rappels")] == as_csv[1]["Rappels"]
    assert body[2][header.index("Annulé le")] == datetime(2026, 6, 1, 10, 0)


def test_export_streams_many_rdvs_in_chunks(login, world, monkeypatch):
    from gateway import export

    monkeypatch.setattr(export, "CHUNK", 7)  # many chunks, same answer
    with time_machine.travel(NOW, tick=False):
        usager = make_usager(world.org, first="Chloé", last="Petit", phone="+33633333333")
        ids = []
        for day in range(2, 7):
            for hour in (9, 10, 11):
                for agent in (world.agent, world.other_agent):
                    ids.append(
                        book(
                            world.org,
                            motif_id=world.motif.id,
                            lieu_id=world.lieu.id,
                            agent_id=agent.id,
                            usager_ids=[usager.id],
                            starts_at=datetime(2026, 6, day, hour, 0, tzinfo=PARIS),
                        ).id
                    )
    r = login.get("/rdvs/export", query_string={"from": "2026-06-01", "to": "2026-06-30"})
    assert r.is_streamed
    rows = list(csv.DictReader(io.StringIO(r.get_data(as_text=True)[1:]), delimiter=";"))
    assert sorted(int(x["N° rdv"]) for x in rows) == sorted(ids) and len(rows) == 30


@pytest.mark.parametrize(
    "query",
    [
        {"from": "x", "to": "2026-06-05"},
        {"from": "2026-06-05", "to": "2026-06-01"},
        {"from": "2026-01-01", "to": "2027-12-31"},
        {"from": "2026-06-05", "format": "pdf"},
    ],
)
def test_bad_export_requests_are_400(login, world, query):
    assert login.get("/rdvs/export", query_string=query).status_code == 400


def test_export_needs_a_login_and_shows_one_organisation(client, world, period):
    r = client.get("/rdvs/export", query_string={"from": "2026-06-05"})
    assert r.status_code == 302 and "/login" in r.headers["Location"]


def test_export_lists_the_second_reminder_with_the_reminders(login, world):
    world.org.second_reminder_offset = "24h"
    db.session.commit()
    with time_machine.travel(NOW, tick=False):
        usager = make_usager(world.org, first="Ana", last="Silva", phone="+33611111111")
        book(
            world.org,
            motif_id=world.motif.id,
            lieu_id=world.lieu.id,
            agent_id=world.agent.id,
            usager_ids=[usager.id],
            starts_at=datetime(2026, 6, 5, 9, 0, tzinfo=PARIS),
        )
    [row] = _csv_rows(login, **{"from": "2026-06-05", "to": "2026-06-05"})
    assert (
        row["Rappels"]
        == "SMS 03/06 09:00 : programmé ; SMS (second rappel) 04/06 09:00 : programmé"
    )
