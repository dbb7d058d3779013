"""Templates, static files and migrations: shipped in the package first, else the checkout's."""

from pathlib import Path

import pytest

import gateway
from gateway import resources
from gateway.resources import FOLDERS, resource_dir

REPOSITORY = Path(gateway.__file__).resolve().parent.parent


def test_a_checkout_uses_the_top_level_folders_of_the_repository():
    # The suite runs on the editable install: nothing is copied into the package.
    for name in FOLDERS:
        assert resource_dir(name) == REPOSITORY / name
    assert (resource_dir("templates") / "pages" / "login.html").is_file()
    assert (resource_dir("migrations") / "env.py").is_file()


def test_the_app_serves_templates_and_static_files_from_resource_dir(app):
    assert Path(app.template_folder) == resource_dir("templates")
    assert Path(app.static_folder) == resource_dir("static")


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """A site-packages-like folder: ``gateway`` resolves to ``<tmp>/site/gateway``."""
    package = tmp_path / "site" / "gateway"
    package.mkdir(parents=True)
    monkeypatch.setattr(resources.resources, "files", lambda _name: package)
    return package


def test_the_folder_shipped_in_the_package_wins(installed):
    (installed / "_data" / "templates").mkdir(parents=True)
    (installed.parent / "templates").mkdir()
    assert resource_dir("templates") == installed / "_data" / "templates"


def test_without_a_shipped_folder_the_one_beside_the_package_is_used(installed):
    (installed.parent / "static").mkdir()
    assert resource_dir("static") == installed.parent / "static"


def test_a_missing_folder_stops_with_the_paths_looked_at(installed):
    with pytest.raises(RuntimeError) as error:
        resource_dir("migrations")
    assert str(installed / "_data" / "migrations") in str(error.value)
    assert str(installed.parent / "migrations") in str(error.value)


def test_only_the_three_folders_are_resources():
    with pytest.raises(ValueError):
        resource_dir("../secrets")
