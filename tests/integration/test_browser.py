"""The chat example in a real headless Chromium (Debian's chromium and chromedriver,
driven by Selenium): two pages in one room, messages, typing, presence, and both pages
reconnecting by themselves after the server restarts.

Without chromium, chromedriver or selenium the test is skipped with the reason, except in
CI (``CI`` set), where it fails: ``.ci/run`` installs them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .servers import Server, start

IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")
WAIT = 15.0


def _require_browser() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        driver = None
    if chromium is None or driver is None:
        reason = (
            "chromium, chromedriver or selenium is missing "
            "(apt-get install chromium chromium-driver; pip install selenium)"
        )
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    return chromium, driver


@pytest.fixture
def browser() -> Iterator[Any]:
    """A factory of headless Chromium pages, all closed at the end."""
    chromium, driver_path = _require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    drivers: list[Any] = []
    profiles: list[str] = []

    def open_page() -> Any:
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        profile = tempfile.mkdtemp(prefix="gobstopper-chromium-")
        profiles.append(profile)
        for flag in (
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=900,700",
            f"--user-data-dir={profile}",
        ):
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
        drivers.append(driver)
        return driver

    try:
        yield open_page
    finally:
        for driver in drivers:
            with contextlib.suppress(Exception):  # already gone: the test closed it
                driver.quit()
        for profile in profiles:
            shutil.rmtree(profile, ignore_errors=True)


def wait_text(page: Any, element: str, predicate: Any, what: str) -> str:
    """Wait (WAIT seconds at most) until the element's text satisfies ``predicate``."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def check(driver: Any) -> str | bool:
        text = str(driver.find_element(By.ID, element).text)
        return text if predicate(text) else False

    try:
        return str(WebDriverWait(page, WAIT, poll_frequency=0.05).until(check))
    except Exception as exc:
        from selenium.webdriver.common.by import By as _By

        now = page.find_element(_By.ID, element).text
        raise AssertionError(f"{what}: #{element} is {now!r}") from exc


def join(page: Any, server: Server, room: str, name: str) -> None:
    from selenium.webdriver.common.by import By

    page.get(f"{server.http}/")
    page.find_element(By.ID, "room").clear()
    page.find_element(By.ID, "room").send_keys(room)
    page.find_element(By.ID, "name").send_keys(name)
    page.find_element(By.ID, "join").click()
    wait_text(page, "status", lambda t: t.startswith("online"), f"{name} never came online")


def say(page: Any, text: str) -> None:
    from selenium.webdriver.common.by import By

    page.find_element(By.ID, "text").send_keys(text)
    page.find_element(By.ID, "send").click()


def test_chat_in_two_browser_pages_survives_a_server_restart(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    server = start("examples.chat:app", "rsgi")
    try:
        ann, ben = browser(), browser()
        join(ann, server, "e2e", "ann")
        join(ben, server, "e2e", "ben")
        wait_text(ann, "members", lambda t: t.endswith("ann, ben"), "ann does not see ben")

        say(ann, "hello from ann")
        wait_text(ben, "log", lambda t: "ann: hello from ann" in t, "ben never got it")
        ben.find_element(By.ID, "text").send_keys("typ")
        wait_text(ann, "typing", lambda t: "ben typing" in t, "no typing notice")
        ben.find_element(By.ID, "text").clear()
        ann.save_screenshot(str(tmp_path / "chat-ann.png"))
        ben.save_screenshot(str(tmp_path / "chat-ben.png"))

        # The server restarts on the same port: both pages notice, back off, reconnect
        # and rejoin their room by themselves.
        port = server.port
        server.stop()
        for page in (ann, ben):
            wait_text(page, "status", lambda t: not t.startswith("online"), "no disconnect")
        server = start("examples.chat:app", "rsgi", port=port)
        for page in (ann, ben):
            wait_text(page, "status", lambda t: t.startswith("online"), "no reconnection")
        say(ben, "back again")
        wait_text(ann, "log", lambda t: "ben: back again" in t, "no message after restart")

        # Ben leaves: ann's member list shows it.
        ben.quit()
        wait_text(ann, "members", lambda t: t.endswith("(1): ann"), "ben still listed")
        wait_text(ann, "log", lambda t: "* ben left" in t, "no leave notice")
        ann.save_screenshot(str(tmp_path / "chat-after.png"))
    finally:
        server.stop()
    assert (tmp_path / "chat-ann.png").stat().st_size > 0
    print(f"\nscreenshots in {tmp_path}")
