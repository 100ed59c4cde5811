"""CORS in a real browser (SPEC §10): a page of another origin calls the API with `fetch`.

The page is served from a second port of 127.0.0.1, so it is another origin than the API
(the port is part of an origin). With that origin in USAGE_EVENTS_CORS_ORIGINS the page
reads its data; without it, Chromium itself refuses to hand the answer to the page.
"""

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.browser import Browser
from tests.e2e.server import describe, run_cli, running_server

# The README's frontend example, as a page of its own.
FRONTEND_PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>A frontend</title>
<link rel="icon" href="data:,"></head>
<body><script>
async function viewer(apiUrl, apiKey) {
  const response = await fetch(apiUrl, {
    method: "POST",
    headers: {
      "Authorization": `Bearer ${apiKey}`,
      "Content-Type": "application/json",
    },
    body: JSON.stringify({ query: "{ viewer { name } }" }),
  });
  const { data, errors } = await response.json();
  return errors ? Promise.reject(errors) : data.viewer;
}
</script></body></html>
"""
# Runs `viewer(…)` in the page and hands its outcome back to the test.
CALL_VIEWER = """
const [apiUrl, apiKey, done] = arguments;
viewer(apiUrl, apiKey).then(
  (value) => done({ value: value }),
  (error) => done({ error: error.name + ": " + error.message }),
);
"""
BUSINESS_NAME = "Frontend Co"
FETCH_TIMEOUT_SECONDS = 15.0


class FrontendHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(FRONTEND_PAGE)))
        self.end_headers()
        self.wfile.write(FRONTEND_PAGE)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # Quiet: the test's output is about the API.


@contextmanager
def frontend() -> Iterator[str]:
    """A page on a port of its own; yields its origin."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), FrontendHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def call_from_page(browser: Browser, origin: str, api_url: str, api_key: str) -> dict[str, Any]:
    browser.open(f"{origin}/")
    browser.driver.set_script_timeout(FETCH_TIMEOUT_SECONDS)
    outcome: dict[str, Any] = browser.driver.execute_async_script(CALL_VIEWER, api_url, api_key)
    return outcome


# CORS does not depend on the database: SQLite alone, in a file of the test's own.
@pytest.mark.parametrize("allowed", [True, False], ids=["origin-allowed", "closed-by-default"])
def test_a_page_of_another_origin_reads_the_api_only_when_its_origin_is_allowed(
    tmp_path: Path, browser: Browser, allowed: bool
) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'usage-events.db'}"
    with frontend() as origin:
        settings = {"CORS_ORIGINS": json.dumps([origin])} if allowed else {}
        with running_server(database_url, tmp_path, workers=1, settings=settings) as server:
            created = run_cli(
                "create-business", BUSINESS_NAME, "--json", database_url=database_url, cwd=tmp_path
            )
            assert created.returncode == 0, describe(created)
            api_key = json.loads(created.stdout)["api_key"]

            outcome = call_from_page(browser, origin, f"{server.base_url}/graphql", api_key)

    if allowed:
        assert outcome == {"value": {"name": BUSINESS_NAME}}
        assert browser.console_errors() == []
    else:
        assert outcome == {"error": "TypeError: Failed to fetch"}
        # Refused by the browser for want of CORS headers, not by the network.
        errors = [entry["message"] for entry in browser.console_errors()]
        assert any("has been blocked by CORS policy" in message for message in errors), errors
