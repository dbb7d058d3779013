"""The ``gateway`` command: a Flask CLI group with Lapin's own commands."""

from __future__ import annotations

import logging
import sys

import click
from flask import Flask
from flask.cli import FlaskGroup, with_appcontext

from .extensions import db


def _create_app():
    from . import create_app

    return create_app()


@click.group(cls=FlaskGroup, create_app=_create_app)
def main() -> None:
    """Lapin: SMS and email reminder gateway."""


def migrate_to_head() -> None:
    """Apply every Alembic migration (creates the database on first use)."""
    # Alembic's INFO lines would bury the seed's demo logins in `make run`.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    from alembic import command

    from .migrations import alembic_config

    with db.engine.begin() as connection:
        cfg = alembic_config(connection)
        command.upgrade(cfg, "head")


@click.command("init-db")
@with_appcontext
def init_db_command() -> None:
    """Create or upgrade the database schema (Alembic migrations)."""
    migrate_to_head()
    click.echo("Base de données à jour.")


@click.command("seed-demo")
@with_appcontext
def seed_demo_command() -> None:
    """Load demo data (idempotent) and print the demo logins."""
    from .seed import seed_demo

    for line in seed_demo():
        click.echo(line)


@click.command("create-agent")
@click.argument("email")
@click.option("--org", "org_id", type=int, required=True, help="Organisation id.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--first-name", default="")
@click.option("--last-name", default="")
@with_appcontext
def create_agent_command(email, org_id, password_stdin, first_name, last_name) -> None:
    """Create an agent of organisation ORG (or reset the password of an existing one)."""
    from sqlalchemy import func, select

    from .models import Agent, Organisation

    if db.session.get(Organisation, org_id) is None:
        raise click.ClickException(f"organisation {org_id} introuvable")
    if not password_stdin:
        raise click.ClickException(
            "--password-stdin est obligatoire (le mot de passe ne passe pas en argument)"
        )
    password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < 10:
        raise click.ClickException("mot de passe trop court (10 caractères au moins)")
    agent = db.session.scalar(select(Agent).where(func.lower(Agent.email) == email.strip().lower()))
    if agent is not None and agent.organisation_id != org_id:
        raise click.ClickException("cet e-mail appartient à un agent d'une autre organisation")
    if agent is None:
        agent = Agent(
            organisation_id=org_id,
            email=email.strip().lower(),
            first_name=first_name,
            last_name=last_name,
        )
        db.session.add(agent)
    agent.set_password(password)
    db.session.commit()
    click.echo(f"agent {agent.id} {agent.email}")


@click.command("create-api-token")
@click.argument("name")
@click.option("--org", "org_id", type=int, required=True, help="Organisation id.")
@with_appcontext
def create_api_token_command(name, org_id) -> None:
    """Create an API token; the token is printed alone on the last line, once."""
    from .models import ApiToken, Organisation

    if db.session.get(Organisation, org_id) is None:
        raise click.ClickException(f"organisation {org_id} introuvable")
    token_row, token = ApiToken.issue(org_id, name)
    db.session.add(token_row)
    db.session.commit()
    click.echo(
        f"# jeton « {name} » pour l'organisation {org_id} (conservez-le, il ne sera plus affiché)"
    )
    click.echo(token)


@click.command("create-webhook-endpoint")
@click.argument("url")
@click.option("--org", "org_id", type=int, required=True, help="Organisation id.")
@click.option("--events", default=None, help="Comma list of event types (default: all).")
@with_appcontext
def create_webhook_endpoint_command(url, org_id, events) -> None:
    """Register an outbound webhook URL; its whsec_ secret is printed alone on the last line."""
    from .errors import ValidationFailed
    from .models import Organisation
    from .webhook_endpoints import create_endpoint

    org = db.session.get(Organisation, org_id)
    if org is None:
        raise click.ClickException(f"organisation {org_id} introuvable")
    chosen = [e.strip() for e in events.split(",") if e.strip()] if events else None
    try:
        endpoint, secret = create_endpoint(org, url, chosen)
    except ValidationFailed as exc:
        raise click.ClickException(
            "; ".join(f"{name} : {text}" for name, text in exc.fields.items())
        ) from None
    click.echo(
        f"# point de réception {endpoint.id} de l'organisation {org_id} : {endpoint.url}\n"
        f"# événements : {', '.join(endpoint.event_types)}\n"
        "# secret de signature (conservez-le, il ne sera plus affiché) :"
    )
    click.echo(secret)


@click.command("replay-webhooks")
@click.option("--event", "webhook_id", default=None, help="One event, by its webhook-id (msg_…).")
@click.option("--from", "start", default=None, metavar="ISO8601", help="Start of a time range.")
@click.option("--to", "end", default=None, metavar="ISO8601", help="End of the range (excluded).")
@click.option("--org", "org_id", type=int, default=None, help="Only this organisation.")
@click.option("--endpoint", "endpoint_id", type=int, default=None, help="Only to this endpoint.")
@with_appcontext
def replay_webhooks_command(webhook_id, start, end, org_id, endpoint_id) -> None:
    """Send events again (one, or those of a time range); prints how many deliveries were queued.

    Replays keep each event's webhook-id, so receivers can tell them from new events.
    """
    from .timeutil import UTC, parse_iso
    from .webhook_endpoints import replay

    if bool(webhook_id) == bool(start or end):
        raise click.UsageError("donnez soit --event, soit --from et --to")
    bounds = {}
    if not webhook_id:
        if not (start and end):
            raise click.UsageError("--from et --to vont ensemble")
        for name, value in (("start", start), ("end", end)):
            try:
                bounds[name] = parse_iso(value, UTC)
            except ValueError:
                raise click.BadParameter(f"date ISO 8601 attendue, reçu {value!r}") from None
    count = replay(webhook_id=webhook_id, organisation_id=org_id, endpoint_id=endpoint_id, **bounds)
    click.echo(count)


@click.command("configure-no-show-loop")
@click.option("--org", "org_id", type=int, required=True, help="Organisation id.")
@click.option("--motif", "motif_id", type=int, help="Set the motif's override instead.")
@click.option("--second-reminder", help="Offset of the second reminder (e.g. 24h), or off.")
@click.option(
    "--noshow-only/--everyone",
    default=None,
    help="Second reminder only to usagers with a past no-show (organisation).",
)
@click.option(
    "--waitlist-notice", type=click.IntRange(0, 7 * 24 * 60), help="Minutes (default 240)."
)
@with_appcontext
def configure_no_show_loop_command(
    org_id, motif_id, second_reminder, noshow_only, waitlist_notice
) -> None:
    """Second reminder and waiting-list settings of an organisation or one of its motifs."""
    from scheduler.policy import OFF_VALUES, parse_offsets

    from .models import Motif, Organisation

    org = db.session.get(Organisation, org_id)
    if org is None:
        raise click.ClickException(f"organisation {org_id} introuvable")
    target = org
    if motif_id is not None:
        target = db.session.get(Motif, motif_id)
        if target is None or target.organisation_id != org.id:
            raise click.ClickException(f"motif {motif_id} introuvable dans l'organisation {org_id}")
    if second_reminder is not None:
        value = second_reminder.strip().lower()
        if value not in OFF_VALUES:
            try:
                offsets = parse_offsets(value)
            except ValueError as exc:
                raise click.ClickException(str(exc)) from None
            if len(offsets) != 1:
                raise click.ClickException("un seul délai pour le second rappel (ex. 24h)")
        elif motif_id is None:
            value = None  # the organisation: none; a motif keeps "off" to override it
        else:
            value = "off"
        target.second_reminder_offset = value
    if noshow_only is not None:
        org.second_reminder_noshow_only = noshow_only
    if waitlist_notice is not None:
        org.waitlist_notice_minutes = waitlist_notice
    db.session.commit()
    click.echo(
        f"organisation {org.id} : second rappel {org.second_reminder_offset or 'aucun'}"
        f"{' (absents seulement)' if org.second_reminder_noshow_only else ''}, "
        f"délai minimum des propositions {org.waitlist_notice_minutes} min"
        + (
            f" ; motif {motif_id} : {target.second_reminder_offset or 'comme l’organisation'}"
            if motif_id is not None
            else ""
        )
    )


def register_commands(app: Flask) -> None:
    for command in (
        init_db_command,
        seed_demo_command,
        create_agent_command,
        create_api_token_command,
        create_webhook_endpoint_command,
        replay_webhooks_command,
        configure_no_show_loop_command,
    ):
        app.cli.add_command(command)
    from scheduler.cli import commands

    for command in commands:
        app.cli.add_command(command)
