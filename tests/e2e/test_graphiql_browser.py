"""GraphiQL in a real browser (SPEC §9): the link `usage-events demo` prints, opened in
headless Chromium that can reach the server and nothing else, runs its first query.

A failed test leaves a screenshot and the console log under test-artifacts/.
"""

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions

from db.demo import DEMO_BUSINESS_NAME
from graph.graphiql import WELCOME_QUERY
from tests.e2e.browser import Browser
from tests.e2e.server import RunningServer, describe, run_cli, running_server

# Loading 4 MB of scripts on a busy two-core machine takes a few seconds; a broken page never.
PAGE_TIMEOUT_SECONDS = 30.0
RUN_BUTTON = (By.CSS_SELECTOR, ".graphiql-execute-button")
DOCS_BUTTON = (By.CSS_SELECTOR, "[aria-label='Show Documentation Explorer']")
EXPLORER_BUTTON = (By.CSS_SELECTOR, "[aria-label='Show GraphiQL Explorer']")
PLUGIN_PANE = (By.CSS_SELECTOR, ".graphiql-plugin")


def demo_link(server: RunningServer) -> str:
    """The GraphiQL link `usage-events demo --host … --port …` prints for this server."""
    result = run_cli(
        "demo",
        "--host",
        "127.0.0.1",
        "--port",
        str(server.port),
        database_url=server.database_url,
        cwd=server.log_path.parent,
    )
    assert result.returncode == 0, describe(result)
    (link,) = [
        word
        for word in result.stdout.split()
        if word.startswith(f"{server.base_url}/graphql?headers=")
    ]
    return link


def editor_text(driver: WebDriver, editor: str) -> str:
    """What a GraphiQL editor (CodeMirror) holds: `query`, `tool` (the open one of
    variables and headers) or `response`."""
    selector = {
        "query": ".graphiql-query-editor .CodeMirror",
        "tool": ".graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror",
        "response": ".graphiql-response .CodeMirror",
    }[editor]
    script = "const e = document.querySelector(arguments[0]); return e && e.CodeMirror.getValue();"
    text: str | None = driver.execute_script(script, selector)
    return text or ""


def response_json(driver: WebDriver) -> dict[str, Any] | None:
    text = editor_text(driver, "response")
    if not text:
        return None
    value: dict[str, Any] = json.loads(text)
    return value


def plugin_pane_text(driver: WebDriver) -> str:
    panes = driver.find_elements(*PLUGIN_PANE)
    return panes[0].text if panes else ""


def test_demo_link_opens_graphiql_which_runs_the_first_query_offline(
    database_url: str, tmp_path: Path, browser: Browser
) -> None:
    with running_server(database_url, tmp_path, workers=1) as server:
        link = demo_link(server)
        (headers,) = parse_qs(urlsplit(link).query)["headers"]

        browser.open(link)
        browser.wait(
            expected_conditions.element_to_be_clickable(RUN_BUTTON),
            PAGE_TIMEOUT_SECONDS,
            "GraphiQL's run button appearing",
        )
        assert editor_text(browser.driver, "query") == WELCOME_QUERY
        assert editor_text(browser.driver, "tool") == headers  # The Headers tab is open.
        browser.driver.find_element(*RUN_BUTTON).click()
        answer = browser.wait(response_json, PAGE_TIMEOUT_SECONDS, "an answer in the result pane")

        assert answer is not None
        assert "errors" not in answer, answer
        assert answer["data"]["viewer"]["name"] == DEMO_BUSINESS_NAME
        assert answer["data"]["customers"]["totalCount"] == 3

        # The docs and the explorer read the schema that GraphiQL fetched with the key.
        browser.driver.find_element(*DOCS_BUTTON).click()
        browser.wait(
            lambda driver: "mutation: Mutation" in plugin_pane_text(driver),
            PAGE_TIMEOUT_SECONDS,
            "the docs panel listing the schema's root types",
        )
        browser.driver.find_element(*EXPLORER_BUTTON).click()
        browser.wait(
            lambda driver: "viewer" in plugin_pane_text(driver).split(),
            PAGE_TIMEOUT_SECONDS,
            "the explorer listing the query's fields",
        )

        # GraphiQL remembers the tab (the key with it) in sessionStorage, none in localStorage.
        api_key = json.loads(headers)["Authorization"].removeprefix("Bearer ")
        stored = browser.driver.execute_script(
            "const entries = (storage) => Object.keys(storage).map("
            "  (key) => key + '=' + storage.getItem(key));"
            "return [entries(localStorage), entries(sessionStorage)];"
        )
        kept_for_good, kept_for_the_tab = stored
        assert kept_for_good == []
        assert any(api_key in entry for entry in kept_for_the_tab), kept_for_the_tab

        assert browser.console_errors() == []
        requested = browser.requested_urls()
        elsewhere = [
            url for url in requested if not url.startswith((server.base_url + "/", "data:"))
        ]
        assert elsewhere == []
        assert f"{server.base_url}/graphql/assets/graphiql-3.8.3/graphiql.min.js" in requested
