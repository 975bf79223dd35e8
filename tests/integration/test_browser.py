"""The chat example and the browser client (/gobstopper.js) in a real headless Chromium
(Debian's chromium and chromedriver, driven by Selenium): two pages in one room,
messages, typing, presence, both pages reconnecting by themselves after the server
restarts (room and channel subscription restored), and the client's calls, errors and
wildcard subscriptions driven from the page.

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


def run_js(page: Any, script: str) -> Any:
    """Run ``script`` in the page, where ``client`` is the chat's Gobstopper.Client; it
    ends by calling ``done(value)``. Errors come back as their name, code, message, data."""
    page.set_script_timeout(WAIT)
    return page.execute_async_script(
        "const done = arguments[arguments.length - 1];\n"
        "const failed = (e) => done({name: e.name, code: e.code, message: e.message, "
        "data: e.data === undefined ? null : e.data});\n" + script
    )


def wait_js(page: Any, expression: str, what: str) -> Any:
    """Wait (WAIT seconds at most) until the JavaScript ``expression`` is truthy."""
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(page, WAIT, poll_frequency=0.05).until(
            lambda driver: driver.execute_script(f"return {expression};")
        )
    except Exception as exc:
        raise AssertionError(f"{what}: {expression} stayed false") from exc


def check_the_client(page: Any, server: Server) -> None:
    """The page's client: errors from call(), a wildcard subscription, publish refused,
    a timeout."""
    from websockets.sync.client import connect

    error = run_js(page, 'client.call("say", {text: ""}).then(done, failed);')
    assert error["name"] == "CallError" and error["code"] == -32602, error
    assert "text" in error["data"], error  # the reason names the field
    error = run_js(page, 'client.call("nope", [1]).then(done, failed);')
    assert error == {
        "name": "CallError",
        "code": -32601,
        "message": "Method not found",
        "data": "nope",
    }
    error = run_js(page, 'client.publish("rooms.x", 1).then(done, failed);')
    assert error["code"] == -32001, error  # the chat does not let clients publish
    error = run_js(
        page,
        'new Gobstopper.Client("/ws/chat?name=late", {timeout: 200})'
        '.call("join", {room: "x"}).then(done, failed);',  # never connected
    )
    assert error["name"] == "TimeoutError", error

    # A pattern with "**" beside the page's own "rooms.*": both get each message once.
    answer = run_js(
        page,
        "window.deep = []; window.shallow = [];\n"
        'const off = client.subscribe("rooms.**", (data, channel) => deep.push([channel, data]));\n'
        'client.subscribe("rooms.*", (data, channel) => shallow.push(channel));\n'
        "off.ready.then(done, failed);",
    )
    assert answer["channel"] == "rooms.**", answer
    # Someone else joins another room: its count reaches the page on rooms.side.
    with connect(f"{server.ws}/ws/chat?name=cat") as cat:
        cat.send('{"jsonrpc": "2.0", "method": "join", "params": {"room": "side"}, "id": 1}')
        wait_js(page, "deep.some(([c]) => c === 'rooms.side')", "no message on rooms.**")
    wait_js(page, "deep.filter(([c]) => c === 'rooms.side').length === 2", "no leave count")
    got = page.execute_script("return [deep, shallow];")
    side = [{"room": "side", "count": 1}, {"room": "side", "count": 0}]
    assert [d for c, d in got[0] if c == "rooms.side"] == side, got
    assert got[1].count("rooms.side") == 2, got

    # Subscribed and unsubscribed before the connection is open: nothing left on the server.
    left = run_js(
        page,
        'const fresh = new Gobstopper.Client("/ws/chat?name=fresh");\n'
        "fresh.connect();\n"
        'fresh.subscribe("rooms.*", () => {})();\n'
        'fresh.connect().then(() => fresh.call("rpc.info"))'
        ".then((info) => { fresh.close(); done(info.subscriptions); }, failed);",
    )
    assert left == [], left


def test_chat_in_two_browser_pages_survives_a_server_restart(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    server = start("examples.chat:app", "rsgi")
    try:
        ann, ben = browser(), browser()
        join(ann, server, "e2e", "ann")
        join(ben, server, "e2e", "ben")
        wait_text(ann, "members", lambda t: t.endswith("ann, ben"), "ann does not see ben")
        wait_text(ann, "rooms", lambda t: "e2e (2)" in t, "no room count on rooms.*")

        say(ann, "hello from ann")
        wait_text(ben, "log", lambda t: "ann: hello from ann" in t, "ben never got it")
        ben.find_element(By.ID, "text").send_keys("typ")
        wait_text(ann, "typing", lambda t: "ben typing" in t, "no typing notice")
        ben.find_element(By.ID, "text").clear()
        ann.save_screenshot(str(tmp_path / "chat-ann.png"))
        ben.save_screenshot(str(tmp_path / "chat-ben.png"))

        # An empty message: the server's error answer shows on the page.
        run_js(ann, 'client.call("say", {text: ""}).catch(showError).then(() => done());')
        wait_text(ann, "log", lambda t: "! Invalid params" in t, "no error shown")

        check_the_client(ann, server)
        first_ids = [page.execute_script("return client.id;") for page in (ann, ben)]
        assert all(first_ids), first_ids

        # The server restarts on the same port: both pages notice, back off, reconnect,
        # subscribe to rooms.* again and rejoin their room by themselves.
        port = server.port
        server.stop()
        for page in (ann, ben):
            wait_text(page, "status", lambda t: not t.startswith("online"), "no disconnect")
            wait_text(page, "rooms", lambda t: t == "rooms: none", "stale room counts")
        # A call made while disconnected waits for the next connection.
        run_js(ann, 'window.queued = client.call("rpc.info").then((r) => r.id); done();')
        server = start("examples.chat:app", "rsgi", port=port)
        for page in (ann, ben):
            wait_text(page, "status", lambda t: t.startswith("online"), "no reconnection")
            wait_text(page, "rooms", lambda t: "e2e (2)" in t, "rooms.* not resubscribed")
        wait_text(ann, "members", lambda t: t.endswith("(2): ann, ben"), "ben not back")
        ids = [
            page.execute_script("return [client.id, client.connections];") for page in (ann, ben)
        ]
        assert [i[1] for i in ids] == [2, 2] and ids[0][0] not in first_ids, (ids, first_ids)
        assert run_js(ann, "queued.then(done, failed);") == ids[0][0]
        say(ben, "back again")
        wait_text(ann, "log", lambda t: "ben: back again" in t, "no message after restart")

        # Ben leaves: ann's member list shows it.
        ben.quit()
        wait_text(ann, "members", lambda t: t.endswith("(1): ann"), "ben still listed")
        wait_text(ann, "log", lambda t: "* ben left" in t, "no leave notice")
        wait_text(ann, "rooms", lambda t: "e2e (1)" in t, "no count after ben left")
        ann.save_screenshot(str(tmp_path / "chat-after.png"))
    finally:
        server.stop()
    assert (tmp_path / "chat-ann.png").stat().st_size > 0
    print(f"\nscreenshots in {tmp_path}")
