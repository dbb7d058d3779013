"""What comes in: delivery receipts, inbound SMS, cancellation links.

:func:`init_app` registers the blueprints: the provider webhooks (CSRF-exempt:
they are authenticated by the providers' signatures instead), the
cancellation link pages (CSRF-protected), and the simulator's outbox page when
the simulator is among the configured providers.
"""

from __future__ import annotations

import logging

from flask import Flask

log = logging.getLogger(__name__)


def init_app(app: Flask) -> None:
    """Register every inbound surface on ``app``."""
    from gateway.extensions import csrf, limiter

    from . import links, routes, simulator

    app.register_blueprint(routes.bp)
    csrf.exempt(routes.bp)
    # Providers post from a few addresses at their own pace: rate limits would only
    # turn receipts into retries. (Signatures, not limits, keep others out.)
    limiter.exempt(routes.bp)
    app.register_blueprint(links.bp)
    if simulator.enabled(app):
        app.register_blueprint(simulator.bp)
    settings = app.config.get("PROVIDER_SETTINGS") or {}
    if app.config.get("VONAGE_UNSIGNED_WEBHOOKS") and not settings.get("VONAGE_SIGNATURE_SECRET"):
        log.warning(
            "VONAGE_UNSIGNED_WEBHOOKS=accept: unsigned Vonage webhooks are accepted, so anyone "
            "who can reach /webhooks/vonage/ can cancel rdvs and opt numbers out; "
            "set VONAGE_SIGNATURE_SECRET instead"
        )
