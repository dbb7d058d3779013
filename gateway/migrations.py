"""Alembic wiring: the migration scripts live in ``migrations/`` at the top of the repo."""

from __future__ import annotations

from alembic.config import Config

from . import ROOT


def alembic_config(connection=None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg
