"""Alembic wiring: the migration scripts are the ``migrations/`` folder at the top of the
repository, shipped inside the wheel (:mod:`gateway.resources` finds it)."""

from __future__ import annotations

from alembic.config import Config

from .resources import resource_dir


def alembic_config(connection=None) -> Config:
    """Alembic's configuration, run on ``connection`` when given (``gateway init-db``)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(resource_dir("migrations")))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg
