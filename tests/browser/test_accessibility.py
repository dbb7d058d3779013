"""Accessibility, measured: axe-core on every page of ``pages.ROUTES``, at desktop and
phone widths, logged in and out; any serious or critical violation fails. And no page
scrolls sideways on a 390 px wide phone.

axe-core is vendored from the npm registry (``make axe-core``, tests/browser/vendor/)
and evaluated in the page by Playwright (not a <script> tag: the pages' CSP allows
only their own scripts).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page

from .pages import ROUTES, Route, build_scenario
from .test_browser_agent import log_in
from .test_browser_loop import run_pipeline

AXE = (Path(__file__).parent / "vendor" / "axe.min.js").read_text()
WIDTHS = {"desktop": (1280, 800), "phone": (390, 844)}
FAILING_IMPACTS = ("serious", "critical")


@pytest.fixture
def scenario(live_app, world, request):
    route = request.node.callspec.params.get("route") if hasattr(request.node, "callspec") else None
    live_app.config["BRAND"] = route.brand if route else "neutral"
    return build_scenario(live_app, world, run_pipeline)


def open_route(page: Page, route: Route, scenario, world, width: str) -> None:
    """The route as its user sees it, at ``width``, with DSFR's scripts started."""
    w, h = WIDTHS[width]
    page.set_viewport_size({"width": w, "height": h})
    if route.agent and not page.context.cookies():
        log_in(page, world)
    page.goto(route.url(scenario))
    if route.setup:
        route.setup(page, scenario, world)
    # A selector, not a JS predicate: polling a predicate evaluates a string, which the
    # pages' CSP (no unsafe-eval) refuses when the DSFR script is not there yet.
    page.locator("html[data-fr-js='true']").wait_for(state="attached")
    assert f"brand-{route.brand}" in (page.locator("html").get_attribute("class") or "")


def axe_violations(page: Page) -> list[dict]:
    """axe-core's serious and critical violations on the page, readable in a failure."""
    page.evaluate(AXE)
    return page.evaluate(
        """async (impacts) => {
          const result = await axe.run(document, {resultTypes: ['violations']});
          return result.violations
            .filter((v) => impacts.includes(v.impact))
            .map((v) => ({
              id: v.id, impact: v.impact, help: v.help,
              nodes: v.nodes.slice(0, 5).map((n) => n.target.join(' ') + ' :: ' + n.failureSummary),
            }));
        }""",
        list(FAILING_IMPACTS),
    )


def test_axe_reports_what_it_must(page: Page, live_server):
    """The harness itself: a page with known serious violations fails."""
    page.goto("/login")
    page.evaluate(
        "document.querySelector('main').insertAdjacentHTML('beforeend', "
        '\'<img src="/static/favicon.svg"><button class="fr-btn"></button>\')'
    )
    assert {v["id"] for v in axe_violations(page)} >= {"image-alt", "button-name"}


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.id)
def test_accessible_at_both_widths_and_no_sideways_scrolling(page: Page, route, scenario, world):
    """axe-core at desktop then phone width; at 390 px, nothing wider than the screen."""
    problems = {}
    for width in WIDTHS:
        open_route(page, route, scenario, world, width)
        violations = axe_violations(page)
        if violations:
            problems[width] = violations
    scroll, client = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    if scroll > client:
        problems["sideways"] = f"{scroll} px of content for a {client} px screen"
    _expected_errors(page, route)
    assert problems == {}, f"{route.id}: {problems}"


def _expected_errors(page: Page, route: Route) -> None:
    """The console's "failed to load" for the page itself when its status is expected."""
    if route.status != 200:
        mark = f"status of {route.status} "
        page.console_errors[:] = [e for e in page.console_errors if mark not in e]
