"""The wheel's layout, the one part of packaging that pyproject.toml cannot say.

The code packages are found, as before: ``gateway``, ``providers``,
``scheduler``, ``webhooks`` and whatever package is added under them later
(``tests`` and ``bench`` are never shipped). The top-level ``templates/``,
``static/`` and ``migrations/`` folders stay where they are in the repository
and ship as package data under ``gateway/_data/`` in the wheel, every file of
them (a new template or static file needs no change here).
``gateway/resources.py`` is the one place that finds them, in the wheel or in
the checkout (editable install).
"""

from setuptools import find_namespace_packages, setup

CODE = ["gateway", "providers", "scheduler", "webhooks"]
DATA = {f"gateway._data.{folder}": folder for folder in ("templates", "static", "migrations")}

setup(
    packages=find_namespace_packages(include=[f"{name}*" for name in CODE]) + list(DATA),
    package_dir=DATA,
    package_data={package: ["**/*"] for package in DATA},
    # Bytecode of the migrations, left by a run from the checkout (fnmatch: * spans folders).
    exclude_package_data={package: ["*.pyc"] for package in DATA},
    include_package_data=False,
)
