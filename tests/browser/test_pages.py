"""The pages against canned API documents (no cluster): what the live scenario cannot
easily produce — a sealed auction still open, a hierarchical run with a timeout, money
that does not add up, an unknown agent, and hostile names rendered as text.

The static files are served exactly as the dashboard serves them (``/``, ``/static/``,
``/api/...``) by a small threaded HTTP server; ``/api/stream`` sends each document once
and holds the connection open, as the real stream does between changes.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

try:
    from playwright.sync_api import Page, expect, sync_playwright
except ImportError:
    pytest.skip("playwright is not installed (pip install -e '.[dev]')",
                allow_module_level=True)

from tests.browser.test_dashboard import CHROMIUM, FLAGS

STATIC = Path(__file__).parents[2] / "node" / "dashboard" / "static"
HOSTILE = '<img src=x onerror="window.pwned=1">'
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="no system chromium at "
                                "/usr/bin/chromium (apt-get install chromium)")

ANSWERS = [
    {"participant": "v1", "answer": "yes", "status": "ok", "error": None, "level": 0,
     "cluster": "c0"},
    {"participant": "v2", "answer": None, "status": "timeout", "error": "timeout",
     "level": 0, "cluster": "c0"},
    {"participant": "v3", "answer": "no", "status": "ok", "error": None, "level": 0,
     "cluster": "c1"},
    {"participant": "c0", "answer": "yes", "status": "ok", "error": None, "level": 1,
     "cluster": "root"}]
DOCS: dict[str, Any] = {
    "cluster": {"generated_at": 1.0, "nodes": [
        {"id": "n1", "state": "up", "healthy": True, "ready": True, "version": "0.1.0",
         "started_at": 1.0, "uptime_s": 75.0, "last_seen": 2.0, "agents": [HOSTILE],
         "problems": {}}], "nats": [], "alerts": [],
        "totals": {"nodes_up": 1, "nodes_down": 0, "agents": 1, "groups": 0,
                   "auctions_open": 2}},
    "agents": {"agents": [{"id": HOSTILE, "node": "n1", "class": "X", "capabilities": [HOSTILE],
                           "health": "healthy", "registered_at": 1.0, "last_heartbeat": 2.0,
                           "messages_in": 1, "messages_out": 1, "errors": 0, "restarts": 0,
                           "latency_ms_p50": None}]},
    "groups": {"groups": []},
    "auctions": {"auctions": [
        {"id": "sealed-1", "kind": "vickrey", "item": "gpu", "seller": "s", "state": "open",
         "opened_at": 1.0, "closed_at": None, "rounds": None, "sealed": True, "bids": [],
         "winner": None, "price": None, "settlement": None},
        {"id": "open-1", "kind": "english", "item": "cpu", "seller": "s", "state": "open",
         "opened_at": 1.0, "closed_at": None, "rounds": 2, "sealed": False,
         "bids": [{"bidder": "b1", "amount": 3.0, "at": 1.5}], "winner": None,
         "price": None, "settlement": None}]},
    "accounts": {"accounts": [{"id": "a", "balance": 5.0, "held": 1.0}],
                 "total_balance": 5.0, "total_held": 1.0, "issued": 7.0, "conserved": False,
                 "transfers": []},
    "coordination": {"votes": [], "pbft": [], "hierarchical": [
        {"id": "h1", "protocol": "hierarchical", "proposal": "go?", "at": 1.0,
         "outcome": "decided", "duration_ms": 12.5, "answers": ANSWERS}]},
    "variables": {"spaces": [{"space": "s", "variables": [
        {"name": "t", "value": 0.5, "frozen": True, "history": [[1.0, 0.4], [2.0, 0.5]]}],
        "trials": [{"at": 1.0, "variable": "t", "value": 0.4, "score": 0.7},
                   {"at": 2.0, "variable": "t", "value": 0.5, "score": 0.9}]}]},
}


class Handler(BaseHTTPRequestHandler):
    stop = threading.Event()

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path == "/api/stream":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for kind, doc in DOCS.items():
                self.wfile.write(f"event: {kind}\ndata: {json.dumps(doc)}\n\n".encode())
            self.wfile.flush()
            self.stop.wait(60)
        elif path.startswith("/api/agents/"):
            self._send(404, json.dumps({"error": {"code": "not_found", "message":
                                                  "agent 'ghost' is not known"}}).encode(),
                       "application/json")
        elif path == "/":
            self._send(200, (STATIC / "index.html").read_bytes(), "text/html")
        elif path.startswith("/static/") and ".." not in path:
            file = STATIC / path.removeprefix("/static/")
            kind = {".js": "text/javascript", ".css": "text/css"}.get(file.suffix,
                                                                      "text/plain")
            self._send(200, file.read_bytes(), kind) if file.is_file() else \
                self._send(404, b"", "text/plain")
        else:
            self._send(404, b"{}", "application/json")


@pytest.fixture(scope="module")
def page() -> Iterator[Page]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
            tab = browser.new_page()
            errors: list[str] = []
            tab.on("pageerror", lambda exc: errors.append(str(exc)))
            tab.goto(f"http://127.0.0.1:{server.server_address[1]}/#/overview")
            expect(tab.get_by_test_id("live-status")).to_have_attribute("data-state", "open")
            yield tab
            assert not errors, errors
            browser.close()
    finally:
        Handler.stop.set()
        server.shutdown()


def go(page: Page, route: str) -> None:
    page.goto(page.url.split("#")[0] + f"#/{route}")


def test_sealed_bids_stay_hidden_while_the_auction_is_open(page: Page) -> None:
    go(page, "auctions")
    sealed = page.locator("[data-auction-id=sealed-1]")
    expect(sealed).to_contain_text("sealed until close")
    expect(sealed.get_by_test_id("bid-row")).to_have_count(0)
    english = page.locator("[data-auction-id=open-1]")
    english.locator("summary").click()
    expect(english.get_by_test_id("bid-row")).to_have_count(1)


def test_a_hierarchical_run_is_a_tree_with_its_timeout(page: Page) -> None:
    go(page, "coordination")
    tree = page.locator("#hierarchical").get_by_test_id("hierarchy")
    expect(tree).to_contain_text("level 0")
    expect(tree).to_contain_text("cluster c1")
    expect(tree.locator("[data-participant=v2][data-status=timeout] .err")).to_have_text(
        "timeout")


def test_money_that_does_not_add_up_says_so(page: Page) -> None:
    go(page, "money")
    expect(page.get_by_test_id("conservation")).to_have_attribute("data-conserved", "false")
    expect(page.get_by_test_id("conservation")).to_contain_text("MISMATCH")


def test_variables_draw_history_and_trials(page: Page) -> None:
    go(page, "variables")
    expect(page.locator("[data-variable=t]")).to_contain_text("frozen")
    expect(page.locator("#chart-history-0 canvas")).to_have_count(1)
    expect(page.locator("#chart-trials-0 canvas")).to_have_count(1)


def test_an_unknown_agent_shows_the_apis_error(page: Page) -> None:
    go(page, "agents/ghost")
    expect(page.get_by_test_id("agent-error")).to_contain_text("is not known")


def test_names_from_the_cluster_are_text_never_markup(page: Page) -> None:
    for route in ("overview", "agents"):
        go(page, route)
        expect(page.locator("#page")).to_contain_text(HOSTILE)
        expect(page.locator("#page img")).to_have_count(0)
    assert page.evaluate("window.pwned") is None
