"""Where the app finds its templates, static files and Alembic scripts.

They live in the top-level ``templates/``, ``static/`` and ``migrations/``
folders of the repository, and the wheel ships them as package data under
``gateway/_data/`` (see ``setup.py``). This module is the one place that knows
both: the folder shipped inside the installed package wins, and a checkout
(editable install, ``make run``, the tests) falls back to the repository's
own folders, so no file is ever copied and no edit in a checkout goes stale.

Guarantee: :func:`resource_dir` returns an existing directory or raises; an
install that lacks one fails at start-up with the path it looked for, not at
the first page that needs a template.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

FOLDERS = ("templates", "static", "migrations")


def resource_dir(name: str) -> Path:
    """The directory of ``templates``, ``static`` or ``migrations``, as a filesystem path.

    A real path, not a ``Traversable``: Flask and Alembic read files from disk,
    which a wheel installed by pip always is.
    """
    if name not in FOLDERS:
        raise ValueError(f"unknown resource folder {name!r}; expected one of {FOLDERS}")
    package = Path(str(resources.files(__package__)))
    candidates = (package / "_data" / name, package.parent / name)
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise RuntimeError(
        f"the {name}/ folder is missing: looked in {', '.join(map(str, candidates))}"
    )
