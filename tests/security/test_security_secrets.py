"""Secrets: passwords hashed with scrypt, API tokens stored hashed only, nothing secret in
the logs, phone numbers and emails masked in the logs."""

from __future__ import annotations

import hashlib
import io
import logging

from sqlalchemy import select

from gateway.extensions import db
from gateway.log_privacy import PersonalDataFilter, mask_personal_data
from gateway.models import Agent, ApiToken

PASSWORD = "Tr0ub4dor&3-horse-staple"


def _all_text_of(row) -> str:
    return " ".join(str(getattr(row, c.key)) for c in row.__table__.columns)


def test_passwords_are_hashed_with_scrypt(runner, world):
    result = runner.invoke(
        args=["create-agent", "nadia@example.org", "--org", str(world.org.id), "--password-stdin"],
        input=PASSWORD + "\n",
    )
    assert result.exit_code == 0, result.output
    agent = db.session.scalar(select(Agent).where(Agent.email == "nadia@example.org"))
    assert agent.password_hash.startswith("scrypt:")
    assert PASSWORD not in _all_text_of(agent)
    assert agent.check_password(PASSWORD) and not agent.check_password(PASSWORD + "x")
    # Two agents with the same password get different hashes (salted).
    runner.invoke(
        args=["create-agent", "omar@example.org", "--org", str(world.org.id), "--password-stdin"],
        input=PASSWORD + "\n",
    )
    other = db.session.scalar(select(Agent).where(Agent.email == "omar@example.org"))
    assert other.password_hash != agent.password_hash


def test_api_tokens_are_stored_hashed_only(runner, world):
    result = runner.invoke(args=["create-api-token", "erp", "--org", str(world.org.id)])
    assert result.exit_code == 0, result.output
    token = result.output.strip().splitlines()[-1]
    assert len(token) >= 40
    row = db.session.scalar(select(ApiToken).where(ApiToken.name == "erp"))
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in _all_text_of(row)


def test_secrets_never_reach_the_logs(app, client, runner, world, caplog):
    caplog.set_level(logging.DEBUG)
    # SQL statements and their parameters too: the most verbose setting an operator could pick.
    logging.getLogger("sqlalchemy.engine").setLevel(logging.DEBUG)
    try:
        created = runner.invoke(
            args=[
                "create-agent",
                "nadia@example.org",
                "--org",
                str(world.org.id),
                "--password-stdin",
            ],
            input=PASSWORD + "\n",
        )
        issued = runner.invoke(args=["create-api-token", "erp", "--org", str(world.org.id)])
        token = issued.output.strip().splitlines()[-1]
        client.post("/login", data={"email": "nadia@example.org", "password": PASSWORD + "-wrong"})
        client.post("/login", data={"email": "nadia@example.org", "password": PASSWORD})
        client.get("/agenda")
        client.get("/api/v1/motifs", headers={"Authorization": f"Bearer {token}"})
        client.get("/api/v1/motifs", headers={"Authorization": f"Bearer {token}x"})
        client.post(
            "/api/v1/usagers",
            headers={"Authorization": f"Bearer {token}"},
            json={
                "first_name": "Léa",
                "last_name": "Martin",
                "phone": "06 98 76 54 32",
                "email": "lea.martin@example.org",
            },
        )
    finally:
        logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
    assert created.exit_code == 0 and issued.exit_code == 0
    logged = caplog.text + "".join(repr(r.args) for r in caplog.records)
    assert "SELECT" in logged  # the capture did see the SQL log
    for secret in (PASSWORD, token, world.token, app.config["SECRET_KEY"]):
        assert secret not in logged
    for personal in (
        "+33698765432",
        "0698765432",
        "06 98 76 54 32",
        "lea.martin@example.org",
        "nadia@example.org",
    ):
        assert personal not in logged, personal


def test_phone_numbers_and_emails_are_masked_in_log_records(app, caplog):
    caplog.set_level(logging.INFO)
    log = logging.getLogger("gateway.anything")
    log.info("SMS to %s for %s", "+33612345678", "lea@example.org")
    try:
        raise ValueError("bad number 06 12 34 56 78")
    except ValueError:
        log.exception("send failed for lea@example.org")
    text = caplog.text
    assert (
        "+33612345678" not in text
        and "lea@example.org" not in text
        and "06 12 34 56 78" not in text
    )
    assert "+*********78" in text and "l***@example.org" in text
    assert "ValueError" in text  # the traceback is kept, masked


def test_the_filter_masks_records_on_any_handler():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(PersonalDataFilter())
    record = logging.LogRecord(
        "x",
        logging.WARNING,
        __file__,
        1,
        "to %s / %s / msisdn=%s",
        ("+262692123456", "jean.dupont@mairie.fr", "33612345678"),
        None,
    )
    handler.handle(record)
    out = stream.getvalue()
    assert (
        "+262692123456" not in out
        and "jean.dupont@mairie.fr" not in out
        and "33612345678" not in out
    )
    assert out.strip() == "to +**********56 / j***@mairie.fr / msisdn=*********78"


def test_masking_keeps_ordinary_log_content():
    line = "message 1234 rdv 42 at 2026-06-05T10:00:00+02:00 provider SM0123456789abcdef status 500"
    assert mask_personal_data(line) == line
