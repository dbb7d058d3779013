"""Browser test fixtures: the app served on a free local port, and Debian's chromium
driven headless by Playwright (no browser download: ``executable_path``).

One browser for the whole session, one fresh context (cookies) per test. When
a test fails, a screenshot of its page is kept in ``test-artifacts/``.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from gateway import create_app

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item, so the ``page`` fixture knows a test failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(
            f"{CHROMIUM} is absent: install Debian's chromium (apt-get install chromium) "
            "to run the browser tests"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def live_app(app_config, world):
    """The app the live server serves (test config, CSRF on).

    No quiet hours, so that an SMS goes whatever the wall clock says. Its
    embedded queue is not worked by a thread (``EMBEDDED_WORKER`` off): a test
    runs the pipeline when it chooses, with ``run_pipeline``.
    """
    return create_app({**app_config, "WTF_CSRF_ENABLED": True, "QUIET_HOURS": "none"})


@pytest.fixture
def live_server(live_app):
    """``live_app`` served by werkzeug in a thread on 127.0.0.1; its base URL."""
    server = make_server("127.0.0.1", 0, live_app, threaded=True)
    base_url = f"http://127.0.0.1:{server.server_port}"
    live_app.config["PUBLIC_BASE_URL"] = base_url
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield base_url
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


def _open_page(browser, live_server, request, **options):
    """A fresh context and page.

    Console errors (CSP included) fail the test; a screenshot is taken on failure.
    """
    context = browser.new_context(
        base_url=live_server, locale="fr-FR", timezone_id="Europe/Paris", **options
    )
    context.set_default_timeout(10_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.console_errors = errors
    yield page
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)
        suffix = "-phone" if options.get("is_mobile") else ""
        page.screenshot(path=str(ARTIFACTS / f"{name}{suffix}.png"), full_page=True)
    context.close()
    assert errors == [], f"errors in the browser console: {errors}"


@pytest.fixture
def page(browser, live_server, request):
    """A fresh desktop browser page on the live server (the agent's)."""
    yield from _open_page(browser, live_server, request)


@pytest.fixture
def phone(browser, live_server, request):
    """A fresh page in a phone-sized, touch browser (the usager's), with no agent session."""
    yield from _open_page(
        browser,
        live_server,
        request,
        viewport={"width": 360, "height": 740},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
