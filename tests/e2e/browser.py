"""Headless Chromium for end-to-end tests, driven by Selenium through Debian's chromedriver.

The browser may reach 127.0.0.1 only: every other host name resolves to nothing, and every
other address goes to a proxy that does not exist (Chromium never proxies loopback). The
driver is given explicitly, so Selenium Manager never looks for or downloads anything.
"""

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

Result = TypeVar("Result")
INSTALL_HINT = (
    "The browser tests need Chromium and its driver; on Debian or Ubuntu: "
    "sudo apt-get install chromium chromium-driver"
)
WINDOW_SIZE = "1400,1000"
NOWHERE = "127.0.0.1:9"  # A proxy for every non-loopback address; nothing listens there.


def chromium_paths() -> tuple[str, str]:
    """(browser, driver); a failure in CI, where they must be installed, else a skip."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        if os.environ.get("CI"):
            pytest.fail(f"{INSTALL_HINT} (.ci/run installs them).")
        pytest.skip(INSTALL_HINT)
    return browser, driver


@dataclass
class Browser:
    driver: webdriver.Chrome
    # Every console entry read so far, kept so a failure can show them all.
    console: list[dict[str, Any]] = field(default_factory=list)

    def log(self, kind: str) -> list[dict[str, Any]]:
        """Entries of a log named in goog:loggingPrefs, read once: reading empties it."""
        entries: list[dict[str, Any]] = self.driver.get_log(kind)  # type: ignore[no-untyped-call]
        return entries

    def open(self, url: str) -> None:
        """Load `url`; the request log starts here, without the browser's own start page."""
        self.log("performance")
        self.driver.get(url)

    def requested_urls(self) -> list[str]:
        """Every URL the page asked for since `open`, blocked or not (DevTools' network log).

        Requests of the browser's own start page (chrome://…) may still arrive in the log
        after `open`; they are Chromium's, not the page's, and left out.
        """
        urls = []
        for entry in self.log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] != "Network.requestWillBeSent":
                continue
            if message["params"].get("documentURL", "").startswith("chrome://"):
                continue
            urls.append(message["params"]["request"]["url"])
        return urls

    def wait(self, condition: Callable[[WebDriver], Result], seconds: float, what: str) -> Result:
        """`condition`'s first truthy value; on a time-out, a failure that shows the console."""
        try:
            return WebDriverWait(self.driver, seconds).until(condition)
        except TimeoutException:
            errors = "\n".join(entry["message"] for entry in self.console_errors()) or "none"
            pytest.fail(f"{what} did not happen within {seconds} s; console errors:\n{errors}")

    def console_errors(self) -> list[dict[str, Any]]:
        """The console entries of level SEVERE: uncaught errors, failed loads, CSP refusals."""
        self.console += self.log("browser")
        return [entry for entry in self.console if entry["level"] == "SEVERE"]

    def save_artifacts(self, directory: Path, name: str) -> Path:
        """A screenshot and the console log, for a failed test; returns the screenshot."""
        directory.mkdir(parents=True, exist_ok=True)
        screenshot = directory / f"{name}.png"
        self.driver.save_screenshot(str(screenshot))
        self.console_errors()
        log = "\n".join(json.dumps(entry) for entry in self.console)
        (directory / f"{name}.console.log").write_text(log + "\n", encoding="utf-8")
        return screenshot


@contextmanager
def headless_chromium() -> Iterator[Browser]:
    browser_path, driver_path = chromium_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = browser_path
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        for argument in (
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            f"--window-size={WINDOW_SIZE}",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            f"--proxy-server={NOWHERE}",
        ):
            options.add_argument(argument)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
        driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
        try:
            yield Browser(driver)
        finally:
            driver.quit()
