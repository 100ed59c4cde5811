"""The `browser` fixture, and what a failed browser test leaves behind: a screenshot."""

import re
from collections.abc import Generator, Iterator

import pytest

from tests.e2e.browser import Browser, headless_chromium
from tests.e2e.server import REPO_ROOT

ARTIFACTS = REPO_ROOT / "test-artifacts"


@pytest.fixture
def browser() -> Iterator[Browser]:
    with headless_chromium() as browser:
        yield browser


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test that used the browser gets its page saved while the browser is open."""
    report = yield
    browser = getattr(item, "funcargs", {}).get("browser")
    if report.when == "call" and report.failed and isinstance(browser, Browser):
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", item.name)
        try:
            screenshot = browser.save_artifacts(ARTIFACTS, name)
        except Exception as error:  # The browser itself may be what failed.
            report.sections.append(("browser artifacts", f"could not be saved: {error!r}"))
        else:
            report.sections.append(
                ("browser artifacts", f"screenshot: {screenshot} (and its .console.log)")
            )
    return report
