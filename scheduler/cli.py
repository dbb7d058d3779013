"""The scheduler's commands: ``dispatch-due``, ``worker``, ``scheduler``."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext

from gateway.timeutil import UTC, parse_iso, utcnow

from .retention import retention_command


@click.command("dispatch-due")
@click.option(
    "--at",
    "at",
    default=None,
    metavar="ISO8601",
    help="Queue what is due at or before this instant (default: now).",
)
@with_appcontext
def dispatch_due_command(at: str | None) -> None:
    """Queue every message due at or before --at (default now); print the count.

    Without Redis (embedded queue) the send jobs are then run in this process,
    since an in-process queue dies with it; with Redis the workers send them.
    """
    from .dispatch import dispatch_all_due
    from .queue import run_pending

    due_before = None
    if at:
        try:
            due_before = parse_iso(at, UTC)
        except ValueError:
            raise click.BadParameter(
                f"date ISO 8601 attendue, reçu {at!r}", param_hint="--at"
            ) from None
    count = dispatch_all_due(now=utcnow(), due_before=due_before)
    app = current_app._get_current_object()
    if not app.config.get("REDIS_URL"):
        run_pending(app)
    click.echo(count)


@click.command("worker")
@click.option("--burst", is_flag=True, help="Stop when the queue is empty.")
@with_appcontext
def worker_command(burst: bool) -> None:
    """Run an RQ worker on the ``lapin`` queue (needs REDIS_URL)."""
    from .queue import make_worker

    app = current_app._get_current_object()
    if not app.config.get("REDIS_URL"):
        raise click.ClickException(
            "REDIS_URL n'est pas défini : sans Redis, le worker tourne dans le serveur web "
            "(mode embarqué) ou dans `gateway scheduler`."
        )
    make_worker(app).work(burst=burst, with_scheduler=False)


@click.command("scheduler")
@with_appcontext
def scheduler_command() -> None:
    """Run the periodic jobs: dispatch due messages every ~2 s, reconcile every minute.

    Without REDIS_URL it also runs the embedded worker thread, so that one
    process sends everything (e.g. beside a web process with EMBEDDED_WORKER off).
    """
    from .periodic import run_forever
    from .queue import embedded_queue

    app = current_app._get_current_object()
    if not app.config.get("REDIS_URL"):
        embedded_queue(app).start_worker()
    try:
        run_forever(app)
    except KeyboardInterrupt:
        click.echo("scheduler arrêté")


commands: list = [dispatch_due_command, worker_command, scheduler_command, retention_command]
