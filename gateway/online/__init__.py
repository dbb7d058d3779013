"""Online booking by usagers ("prise de rendez-vous en ligne", SPEC section 5).

- :mod:`.service` — the rules: what is offered, the verification code that
  holds a slot, the rdv it becomes (docs/online-booking.md);
- :mod:`.pages` — the public pages ``/prendre-rdv`` and the steps under it;
- :mod:`.admin` — the admins' page for the organisation's and motifs' settings.

The usager's manage link ``/c/<code>`` (show, cancel, move) stays in
:mod:`webhooks.links` with the other links usagers receive.
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the public pages and the admins' settings page."""
    from . import admin, pages

    app.register_blueprint(pages.bp)
    app.register_blueprint(admin.bp)
