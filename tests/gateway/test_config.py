"""The instance folder: ``INSTANCE_PATH``, by default ``./instance`` of the working directory."""

import os

from gateway import config, create_app
from gateway.extensions import db


def test_the_instance_folder_defaults_to_instance_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert config.instance_path({}) == str(tmp_path / "instance")
    assert config.instance_path({"INSTANCE_PATH": ""}) == str(tmp_path / "instance")


def test_instance_path_is_made_absolute_from_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert config.instance_path({"INSTANCE_PATH": "data/lapin"}) == str(tmp_path / "data" / "lapin")
    assert config.instance_path({"INSTANCE_PATH": "/srv/lapin"}) == "/srv/lapin"


def test_the_app_keeps_its_secret_and_sqlite_file_in_instance_path(tmp_path, monkeypatch):
    for name in ("SECRET_KEY", "DATABASE_URL", "REDIS_URL", "GATEWAY_ENV"):
        monkeypatch.delenv(name, raising=False)
    instance = tmp_path / "elsewhere" / "instance"
    monkeypatch.setenv("INSTANCE_PATH", str(instance))
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    monkeypatch.chdir(workdir)

    app = create_app({"TESTING": True, "EMBEDDED_WORKER": False})
    with app.app_context():
        db.engine.dispose()

    assert app.instance_path == str(instance)
    assert (instance / "secret_key").read_text().strip() == app.config["SECRET_KEY"]
    assert oct((instance / "secret_key").stat().st_mode & 0o777) == oct(0o600)
    assert app.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{instance / 'lapin.sqlite3'}"
    assert os.listdir(workdir) == []
