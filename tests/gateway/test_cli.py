"""The ``gateway`` commands."""

from sqlalchemy import func, select

from gateway.extensions import db
from gateway.models import Agent, ApiToken, Message, Organisation, Rdv


def test_seed_demo_is_idempotent_and_prints_logins(runner, app):
    first = runner.invoke(args=["seed-demo"])
    assert first.exit_code == 0, first.output
    assert "anne.martin@demo.lapin.fr" in first.output and "lapin-demo-2026" in first.output
    counts = [
        db.session.scalar(select(func.count(m.id))) for m in (Organisation, Agent, Rdv, Message)
    ]
    assert counts[0] == 1 and counts[1] == 3 and counts[2] >= 4 and counts[3] > 0
    again = runner.invoke(args=["seed-demo"])
    assert again.exit_code == 0
    assert [
        db.session.scalar(select(func.count(m.id))) for m in (Organisation, Agent, Rdv, Message)
    ] == counts


def test_create_agent_reads_the_password_from_stdin(runner, world, client):
    result = runner.invoke(
        args=["create-agent", "new@example.org", "--org", str(world.org.id), "--password-stdin"],
        input="a very long secret\n",
    )
    assert result.exit_code == 0, result.output
    assert "a very long secret" not in result.output
    r = client.post("/login", data={"email": "new@example.org", "password": "a very long secret"})
    assert r.status_code == 302


def test_create_agent_refuses_short_passwords_and_unknown_orgs(runner, world):
    assert (
        runner.invoke(
            args=["create-agent", "x@example.org", "--org", str(world.org.id), "--password-stdin"],
            input="short\n",
        ).exit_code
        != 0
    )
    assert (
        runner.invoke(
            args=["create-agent", "x@example.org", "--org", "999", "--password-stdin"],
            input="long enough password\n",
        ).exit_code
        != 0
    )
    assert (
        db.session.scalar(select(func.count(Agent.id)).where(Agent.email == "x@example.org")) == 0
    )


def test_create_api_token_prints_the_token_alone_on_the_last_line(runner, world, client):
    result = runner.invoke(args=["create-api-token", "partner", "--org", str(world.org.id)])
    assert result.exit_code == 0, result.output
    token = result.output.strip().splitlines()[-1]
    assert " " not in token and len(token) > 30
    assert (
        db.session.scalar(
            select(func.count(ApiToken.id)).where(ApiToken.token_hash == ApiToken.hash(token))
        )
        == 1
    )
    assert (
        client.get("/api/v1/motifs", headers={"Authorization": f"Bearer {token}"}).status_code
        == 200
    )


def test_init_db_is_repeatable(runner):
    result = runner.invoke(args=["init-db"])
    assert result.exit_code == 0, result.output


def test_create_webhook_endpoint_prints_the_secret_last_and_replay(runner, world):
    from sqlalchemy import select

    from gateway.models import WebhookEndpoint, WebhookEvent, WebhookOutbox

    result = runner.invoke(
        args=[
            "create-webhook-endpoint",
            "http://127.0.0.1:9/hook",
            "--org",
            str(world.org.id),
            "--events",
            "rdv.created,rdv.cancelled",
        ]
    )
    assert result.exit_code == 0, result.output
    secret = result.output.strip().splitlines()[-1]
    endpoint = db.session.scalar(select(WebhookEndpoint))
    assert secret.startswith("whsec_") and endpoint.secret == secret
    assert endpoint.event_types == ["rdv.created", "rdv.cancelled"]
    refused = runner.invoke(
        args=["create-webhook-endpoint", "ftp://x", "--org", str(world.org.id), "--events", "nope"]
    )
    assert refused.exit_code != 0 and "url" in refused.output and "events" in refused.output

    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    from gateway.booking import book

    rdv = book(
        world.org,
        motif_id=world.motif.id,
        lieu_id=world.lieu.id,
        agent_id=world.agent.id,
        usager_ids=[world.usager.id],
        starts_at=(datetime.now(ZoneInfo("Europe/Paris")) + timedelta(days=7)).replace(
            hour=10, minute=0, second=0, microsecond=0
        ),
    )
    event = db.session.scalar(select(WebhookEvent))
    assert event.type == "rdv.created" and event.rdv_id == rdv.id
    one = runner.invoke(args=["replay-webhooks", "--event", event.webhook_id])
    assert one.exit_code == 0 and one.output.strip() == "1"
    start = (event.occurred_at - timedelta(minutes=1)).isoformat()
    end = (event.occurred_at + timedelta(minutes=1)).isoformat()
    ranged = runner.invoke(args=["replay-webhooks", "--from", start, "--to", end])
    assert ranged.exit_code == 0 and ranged.output.strip() == "1"
    assert len(db.session.scalars(select(WebhookOutbox)).all()) == 3
    assert runner.invoke(args=["replay-webhooks"]).exit_code != 0


def test_configure_no_show_loop(runner, world):
    org = str(world.org.id)
    args = ["configure-no-show-loop", "--org", org]
    result = runner.invoke(args=[*args, "--second-reminder", "24h", "--noshow-only"])
    assert result.exit_code == 0, result.output
    assert "second rappel 24h (absents seulement)" in result.output
    motif = str(world.motif.id)
    assert runner.invoke(args=[*args, "--motif", motif, "--second-reminder", "off"]).exit_code == 0
    assert runner.invoke(args=[*args, "--waitlist-notice", "60"]).exit_code == 0
    db.session.expire_all()
    assert (world.org.second_reminder_offset, world.org.second_reminder_noshow_only) == (
        "24h",
        True,
    )
    assert (world.motif.second_reminder_offset, world.org.waitlist_notice_minutes) == ("off", 60)
    bad = runner.invoke(args=[*args, "--second-reminder", "2d,2h"])
    assert bad.exit_code != 0 and "un seul délai" in bad.output
    assert runner.invoke(args=[*args, "--second-reminder", "demain"]).exit_code != 0
    assert runner.invoke(args=["configure-no-show-loop", "--org", "999"]).exit_code != 0
    assert runner.invoke(args=[*args, "--second-reminder", "off"]).exit_code == 0
    db.session.expire_all()
    assert world.org.second_reminder_offset is None
