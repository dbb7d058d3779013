"""Alembic environment: runs on the connection handed over by ``gateway init-db``,
or, from the ``alembic`` command line, on the app's configured database."""

from alembic import context

from gateway import models  # noqa: F401  (registers the tables)
from gateway.extensions import db

target_metadata = db.Model.metadata


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from gateway import create_app

    app = create_app()
    with app.app_context(), db.engine.begin() as conn:
        _run(conn)


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
