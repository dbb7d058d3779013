"""Helpers for the reliability tests: committed row counts, response checks."""

from __future__ import annotations

from sqlalchemy import func, select

from gateway.extensions import db


def committed_counts() -> dict[str, int]:
    """Rows of every table as other connections see them (committed data only).

    Uses its own connection, not the test's session, so rows a request flushed
    but did not commit do not count: a "partial write" is a committed one.
    """
    with db.engine.connect() as connection:
        return {
            table.name: connection.scalar(select(func.count()).select_from(table))
            for table in db.Model.metadata.sorted_tables
        }


class WriteGuard:
    """Tracks committed row counts across requests of a fuzz run.

    ``check(response)``: a refused request (4xx) must have changed no count;
    an accepted one (2xx/3xx) moves the baseline.
    """

    def __init__(self):
        self.baseline = committed_counts()

    def check(self, response, what: str = "") -> None:
        # Mimic the end of a real request: the session does not outlive it.
        db.session.rollback()
        assert response.status_code < 500, (
            f"{what}: HTTP {response.status_code}\n{response.get_data(as_text=True)[:2000]}"
        )
        after = committed_counts()
        if response.status_code >= 400:
            changed = {k: (self.baseline[k], v) for k, v in after.items() if self.baseline[k] != v}
            assert not changed, (
                f"{what}: refused with {response.status_code} but wrote rows {changed}"
            )
        self.baseline = after


def assert_api_error_shape(response) -> None:
    """A refused API request answers JSON ``{"error": {"code", "message", "fields"}}``."""
    body = response.get_json(silent=True)
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), response.get_data(
        as_text=True
    )[:500]
    error = body["error"]
    assert isinstance(error.get("code"), str) and isinstance(error.get("message"), str)
    assert isinstance(error.get("fields"), dict)
