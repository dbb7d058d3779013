"""The Alembic migrations build exactly the schema the models declare (SQLite and PostgreSQL)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from gateway.extensions import db


def test_migrated_schema_equals_the_models(app):
    # The suite's database was built by the migrations alone (tests/conftest.py: _migrated).
    with db.engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), db.Model.metadata)
    assert differences == []


def test_the_migrations_form_one_line_to_the_head(app):
    from alembic.script import ScriptDirectory

    from gateway.migrations import alembic_config

    script = ScriptDirectory.from_config(alembic_config())
    assert len(script.get_heads()) == 1
    revisions = list(script.walk_revisions())
    assert revisions[-1].down_revision is None and len(revisions) == 10
