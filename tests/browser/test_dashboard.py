"""The dashboard in a real browser (Debian's chromium, headless, driven by Playwright).

A playground cluster started with ``broker-agents up``, a finished Vickrey auction and a
vote through the CLI, then ``broker-agents dashboard``: every page shows what happened,
and a node killed with SIGKILL turns ``down`` on the overview within seconds. Screenshots
of every page go to ``$BA_TEST_ARTIFACTS`` (default: a tmp dir, printed) and the overview
to ``docs/img/dashboard.png`` for the README.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

try:
    from playwright.sync_api import Page, expect, sync_playwright
except ImportError:  # the dev extra has it; say why rather than fail to collect
    pytest.skip("playwright is not installed (pip install -e '.[dev]')",
                allow_module_level=True)

from node.auth.roles import Role
from tests.browser.stack import ROOT, Stack, start_playground

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no system chromium at /usr/bin/chromium "
                       "(apt-get install chromium); nothing downloads a browser"),
    pytest.mark.timeout(240),
]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage"]
WAIT_MS = 30_000
PAGES = ("overview", "agents", "consensus", "auctions", "money", "coordination", "variables")



@pytest.fixture(scope="module")
def artifacts() -> Path:
    where = Path(os.environ.get("BA_TEST_ARTIFACTS") or tempfile.mkdtemp(prefix="ba-dash-"))
    where.mkdir(parents=True, exist_ok=True)
    print(f"\ndashboard screenshots: {where}")
    return where


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_playground(tmp_path_factory.mktemp("xdg"))
    try:
        running.start_dashboard()  # first: votes are events, seen only while it listens
        for bidder in ("bidder-1", "bidder-2", "bidder-3"):
            running.cli(Role.ADMIN, "auction", "deposit", bidder, "100", "--op-id",
                        f"fund-{bidder}")
        running.cli(Role.CLIENT, "auction", "run", "--type", "vickrey", "--item", "gpu-hour",
                    "--capability", "bidder", "--reserve", "5")
        running.cli(Role.CLIENT, "request", "vote", json.dumps(
            {"capability": "voter", "proposal": "ship?", "options": ["ship", "wait"]}))
        running.cli(Role.CLIENT, "var", "define", "examples/space.json")
        for temperature in ("0.7", "0.9"):
            running.cli(Role.CLIENT, "var", "set", "serving", f"temperature={temperature}")
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def page(stack: Stack) -> Iterator[Page]:
    with sync_playwright() as pw:  # launch() gives chromium a fresh, temporary profile
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                     args=FLAGS)
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        tab = context.new_page()
        errors: list[str] = []
        tab.on("pageerror", lambda exc: errors.append(str(exc)))
        tab.goto(f"{stack.base}/#/overview")
        expect(tab.get_by_test_id("live-status")).to_have_attribute("data-state", "open",
                                                                    timeout=WAIT_MS)
        yield tab
        assert not errors, errors
        context.close()
        browser.close()


def show(page: Page, name: str) -> None:
    page.goto(page.url.split("#")[0] + f"#/{name}")
    expect(page.locator("#page")).to_have_attribute("data-page", name)


def test_overview_shows_every_node_up_with_its_agents(page: Page, artifacts: Path) -> None:
    show(page, "overview")
    rows = page.get_by_test_id("node-row")
    expect(rows.and_(page.locator("[data-state=up]"))).to_have_count(
        3, timeout=WAIT_MS)
    expect(page.locator("[data-node-id=node-1]")).to_contain_text("coordinator")
    expect(page.get_by_test_id("nats-row").first).to_contain_text("true")
    page.screenshot(path=str(artifacts / "overview.png"), full_page=True)
    docs = ROOT / "docs" / "img"
    docs.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(artifacts / "overview.png", docs / "dashboard.png")


def test_agents_filter_and_an_agents_page(page: Page, artifacts: Path) -> None:
    show(page, "agents")
    rows = page.get_by_test_id("agent-row")
    expect(page.locator("[data-testid=agent-row][data-agent-id=voter-1]")).to_have_count(
        1, timeout=WAIT_MS)
    page.get_by_test_id("filter-capability").select_option("bidder")
    expect(rows).to_have_count(3)
    page.screenshot(path=str(artifacts / "agents.png"), full_page=True)
    page.get_by_test_id("filter-capability").select_option("")
    page.locator("[data-agent-id=voter-1] a").click()
    detail = page.get_by_test_id("agent-detail")
    expect(detail).to_have_attribute("data-agent-id", "voter-1", timeout=WAIT_MS)
    expect(detail).to_contain_text("node-1")
    expect(page.locator("#chart-latency canvas")).to_have_count(1, timeout=WAIT_MS)
    page.screenshot(path=str(artifacts / "agent.png"), full_page=True)


def test_consensus_shows_a_leader_for_each_group(page: Page, artifacts: Path) -> None:
    show(page, "consensus")
    cards = page.get_by_test_id("group-card")
    expect(cards).to_have_count(2, timeout=WAIT_MS)
    expect(page.locator("[data-testid=group-card][data-leader^=node-]")).to_have_count(
        2, timeout=WAIT_MS)
    expect(page.locator("[data-testid=member-row][data-role=leader]")).to_have_count(2)
    page.screenshot(path=str(artifacts / "consensus.png"), full_page=True)


def test_auctions_show_the_finished_auction(page: Page, artifacts: Path) -> None:
    show(page, "auctions")
    done = page.locator("[data-testid=auction-row][data-state=settled]")
    expect(done).to_have_count(1, timeout=WAIT_MS)
    expect(done).to_have_attribute("data-winner", "bidder-2")
    expect(done).to_contain_text("vickrey")
    done.locator("summary").click()
    expect(done.get_by_test_id("bid-row")).to_have_count(3)
    page.screenshot(path=str(artifacts / "auctions.png"), full_page=True)


def test_money_is_conserved_and_shows_the_transfer(page: Page, artifacts: Path) -> None:
    show(page, "money")
    expect(page.get_by_test_id("conservation")).to_have_attribute(
        "data-conserved", "true", timeout=WAIT_MS)
    expect(page.get_by_test_id("transfer-row").first).to_contain_text("bidder-2")
    expect(page.locator("[data-testid=account-row][data-account=bidder-2]")).to_contain_text(
        "88")
    page.screenshot(path=str(artifacts / "money.png"), full_page=True)


def test_coordination_shows_the_vote_with_every_answer(page: Page, artifacts: Path) -> None:
    show(page, "coordination")
    vote = page.locator("#votes [data-testid=coord-run]").first
    expect(vote).to_contain_text("ship?", timeout=WAIT_MS)
    expect(vote).to_have_attribute("data-outcome", re.compile(r"^(ok|decided)$"))
    expect(vote.get_by_test_id("answer")).to_have_count(3)
    expect(vote.locator("[data-participant=voter-3]")).to_contain_text("wait")
    page.screenshot(path=str(artifacts / "coordination.png"), full_page=True)


def test_variables_page_draws(page: Page, artifacts: Path) -> None:
    show(page, "variables")
    space = page.locator("[data-testid=space-card][data-space=serving]")
    expect(space.locator("[data-variable=temperature]")).to_contain_text("0.9",
                                                                         timeout=WAIT_MS)
    expect(space.locator("canvas").first).to_be_visible()
    page.screenshot(path=str(artifacts / "variables.png"), full_page=True)


def test_a_node_serves_the_same_pages_at_ui(page: Page, stack: Stack,
                                            artifacts: Path) -> None:
    page.goto(f"{stack.http['node-1']}/ui#/overview")  # redirects to /ui/
    expect(page.get_by_test_id("live-status")).to_have_attribute("data-state", "open",
                                                                 timeout=WAIT_MS)
    # the pages and their static files resolve under /ui/ (relative paths, vendored uPlot),
    # and the node's own dashboard is live: `up` gives its nodes the observer context
    expect(page.locator("#page")).to_have_attribute("data-page", "overview")
    expect(page.get_by_test_id("total-nodes-up")).to_contain_text("3", timeout=WAIT_MS)
    assert page.evaluate("typeof uPlot") == "function"
    page.screenshot(path=str(artifacts / "in-node-ui.png"), full_page=True)
    page.goto(f"{stack.base}/#/overview")


def test_a_killed_node_turns_down_on_the_overview(page: Page, stack: Stack,
                                                  artifacts: Path) -> None:
    show(page, "overview")
    node3 = page.locator("[data-testid=node-row][data-node-id=node-3]")
    expect(node3).to_have_attribute("data-state", "up", timeout=WAIT_MS)
    page.evaluate("window.sameDocument = true")  # gone if the page reloaded
    os.kill(stack.pids["node-3"], signal.SIGKILL)
    expect(node3).to_have_attribute("data-state", "down", timeout=10_000)
    assert page.evaluate("window.sameDocument") is True, "the page reloaded"
    expect(page.locator("[data-testid=node-row][data-state=up]")).to_have_count(2)
    page.screenshot(path=str(artifacts / "overview-node-down.png"), full_page=True)
