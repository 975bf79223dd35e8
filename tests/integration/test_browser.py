"""The chat and feed examples and the browser client (/gobstopper.js) in a real headless
Chromium (Debian's chromium and chromedriver, driven by Selenium): two pages in one room
(one speaking JSON, the other MessagePack), messages, typing, presence, both pages
reconnecting by themselves after the server restarts (room restored), and the client's
calls and errors driven from the page (in both encodings); a user's three tabs and
another user on two hosts sharing a Redis, each user shown once with their number of
devices, and one leave notice when the user's last tab goes; a page whose credentials
expire every two seconds staying connected by refreshing them; the feed page, through a
proxy that cuts its connection, missing nothing published meanwhile, resuming after a
reload, saying so when it cannot recover, and overlapping wildcard subscriptions.

Without chromium, chromedriver or selenium the test is skipped with the reason, except in
CI (``CI`` set), where it fails: ``.ci/run`` installs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import pytest

from .proxy import Proxy
from .servers import Server, start

T = TypeVar("T")

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


def join(
    page: Any, server: Server, room: str, name: str, device: str = "", encoding: str = ""
) -> None:
    """Open the chat page (as ``device``, speaking ``encoding``), enter ``room`` as
    ``name``."""
    from selenium.webdriver.common.by import By

    query = urlencode({k: v for k, v in (("device", device), ("encoding", encoding)) if v})
    page.get(f"{server.http}/" + (f"?{query}" if query else ""))
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


def check_the_client(page: Any) -> None:
    """The page's client: errors from call(), subscriptions refused, publish refused, a
    timeout, presence views only of channel names."""
    error = run_js(page, 'client.call("say", {room: "e2e", text: ""}).then(done, failed);')
    assert error["name"] == "CallError" and error["code"] == -32602, error
    assert "text" in error["data"], error  # the reason names the field
    error = run_js(page, 'client.call("nope", [1]).then(done, failed);')
    assert error == {
        "name": "CallError",
        "code": -32601,
        "message": "Method not found",
        "data": "nope",
    }
    error = run_js(page, 'client.publish("room.e2e", 1).then(done, failed);')
    assert error["code"] == -32001, error  # the chat does not let clients publish
    error = run_js(
        page,
        'new Gobstopper.Client("/ws/chat?name=late", {timeout: 200})'
        '.call("say", {room: "x", text: "x"}).then(done, failed);',  # never connected
    )
    assert error["name"] == "TimeoutError", error
    # A pattern would read every room: refused, and dropped by the client.
    error = run_js(page, 'client.subscribe("room.*", () => {}).ready.then(done, failed);')
    assert error["code"] == -32001, error
    error = run_js(page, 'try { client.presence("room.*"); } catch (e) { failed(e); }')
    assert error["name"] == "TypeError", error
    state = run_js(page, 'client.presenceState("room.e2e").then(done, failed);')
    assert sorted(state["users"]) == ["ann", "ben"] and state["connections"] == 2, state

    # Subscribed and unsubscribed before the connection is open: nothing left on the server.
    left = run_js(
        page,
        'const fresh = new Gobstopper.Client("/ws/chat?name=fresh");\n'
        "fresh.connect();\n"
        'fresh.subscribe("room.x", () => {})();\n'
        'fresh.connect().then(() => fresh.call("rpc.info"))'
        ".then((info) => { fresh.close(); done(info.subscriptions); }, failed);",
    )
    assert left == [], left

    # The same in MessagePack: binary frames both ways, a call, its error, a subscription.
    got = run_js(
        page,
        'const mp = new Gobstopper.Client("/ws/chat?name=mp", {encoding: "msgpack"});\n'
        "mp.connect().then(async (info) => {\n"
        "  let heard;\n"
        "  const message = new Promise((resolve) => { heard = resolve; });\n"
        '  await mp.subscribe("room.e2e", (data, channel) => heard([data, channel])).ready;\n'
        '  const said = await mp.call("say", {room: "e2e", text: "packed \u00e9"});\n'
        '  const error = await mp.call("nope", [1]).catch((e) => [e.name, e.code, e.data]);\n'
        "  const result = {encoding: info.encoding, said, error, message: await message};\n"
        "  mp.close();\n"
        "  done(result);\n"
        "}).catch(failed);",
    )
    assert got == {
        "encoding": "msgpack",
        "said": None,
        "error": ["CallError", -32601, "nope"],
        "message": [{"kind": "said", "name": "mp", "text": "packed \u00e9"}, "room.e2e"],
    }, got


def test_chat_in_two_browser_pages_survives_a_server_restart(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    server = start("examples.chat:app", "rsgi")
    try:
        ann, ben = browser(), browser()
        join(ann, server, "e2e", "ann")
        join(ben, server, "e2e", "ben", encoding="msgpack")  # ann speaks JSON, ben msgpack
        assert [p.execute_script("return client.info.encoding;") for p in (ann, ben)] == [
            "json",
            "msgpack",
        ]
        wait_text(ann, "members", lambda t: t == "online (2): ann, ben", "ann does not see ben")
        wait_text(ann, "log", lambda t: "* ben joined" in t, "no join notice")

        say(ann, "hello from ann")
        wait_text(ben, "log", lambda t: "ann: hello from ann" in t, "ben never got it")
        ben.find_element(By.ID, "text").send_keys("typ")
        wait_text(ann, "typing", lambda t: "ben typing" in t, "no typing notice")
        ben.find_element(By.ID, "text").clear()
        ann.save_screenshot(str(tmp_path / "chat-ann.png"))
        ben.save_screenshot(str(tmp_path / "chat-ben.png"))

        # An empty message: the server's error answer shows on the page.
        run_js(
            ann,
            'client.call("say", {room, text: ""}).catch(showError).then(() => done());',
        )
        wait_text(ann, "log", lambda t: "! Invalid params" in t, "no error shown")

        check_the_client(ann)
        first_ids = [page.execute_script("return client.id;") for page in (ann, ben)]
        assert all(first_ids), first_ids

        # The server restarts on the same port: both pages notice, back off, reconnect,
        # and subscribe to their room again by themselves.
        port = server.port
        server.stop()
        for page in (ann, ben):
            wait_text(page, "status", lambda t: not t.startswith("online"), "no disconnect")
        # A call made while disconnected waits for the next connection.
        run_js(ann, 'window.queued = client.call("rpc.info").then((r) => r.id); done();')
        server = start("examples.chat:app", "rsgi", port=port)
        for page in (ann, ben):
            wait_text(page, "status", lambda t: t.startswith("online"), "no reconnection")
        wait_text(ann, "members", lambda t: t == "online (2): ann, ben", "ben not back")
        ids = [
            page.execute_script("return [client.id, client.connections];") for page in (ann, ben)
        ]
        assert [i[1] for i in ids] == [2, 2] and ids[0][0] not in first_ids, (ids, first_ids)
        assert run_js(ann, "queued.then(done, failed);") == ids[0][0]
        say(ben, "back again")
        wait_text(ann, "log", lambda t: "ben: back again" in t, "no message after restart")

        # Ben leaves: ann's member list shows it.
        ben.quit()
        wait_text(ann, "members", lambda t: t == "online (1): ann", "ben still listed")
        wait_text(ann, "log", lambda t: t.endswith("* ben left"), "no leave notice")
        ann.save_screenshot(str(tmp_path / "chat-after.png"))
    finally:
        server.stop()
    assert (tmp_path / "chat-ann.png").stat().st_size > 0
    print(f"\nscreenshots in {tmp_path}")


def test_chat_page_with_an_unknown_encoding_speaks_json(browser: Any) -> None:
    server = start("examples.chat:app", "rsgi")
    try:
        page = browser()
        join(page, server, "odd", "cy", encoding="cbor")
        assert page.execute_script("return client.info.encoding;") == "json"
        wait_text(page, "log", lambda t: 'unknown encoding "cbor"' in t, "no note in the log")
        say(page, "still here")
        wait_text(page, "log", lambda t: "cy: still here" in t, "the page does not work")
    finally:
        server.stop()


class Tabs:
    """The tabs of one browser, each with the chat page of one host, and the one shown."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        self.handles: list[str] = []

    def open(self, server: Server, room: str, name: str, device: str) -> str:
        if self.handles:
            self.driver.switch_to.new_window("tab")
        self.handles.append(self.driver.current_window_handle)
        join(self.driver, server, room, name, device)
        return str(self.driver.current_window_handle)

    def show(self, handle: str) -> Any:
        self.driver.switch_to.window(handle)
        return self.driver

    def close(self, handle: str) -> None:
        self.show(handle).close()
        self.handles.remove(handle)
        if self.handles:
            self.show(self.handles[0])


def test_a_user_in_three_tabs_on_two_hosts_is_one_user(browser: Any) -> None:
    """ann in three tabs (two on host A, one on host B), bob on host B, one Redis: every
    page shows two users, ann on three devices; closing two of ann's tabs is no leave on
    bob's page, closing the third is one."""
    from selenium.webdriver.common.by import By

    from .hosts import two_hosts
    from .redis_server import RedisServer, require_redis

    redis = RedisServer(require_redis())
    redis.start()
    env = {"GOBSTOPPER_BROKER_URL": redis.url}
    try:
        with two_hosts(env, env, app="examples.chat:app") as (a, b):
            bob = browser()
            join(bob, b, "team", "bob", "desk")
            ann = Tabs(browser())
            first = ann.open(a, "team", "ann", "tab1")
            wait_text(bob, "log", lambda t: "* ann joined" in t, "bob never saw ann come")
            second = ann.open(b, "team", "ann", "tab2")
            third = ann.open(a, "team", "ann", "tab3")
            everyone = "online (2): ann (3 devices), bob"
            wait_text(bob, "members", lambda t: t == everyone, "bob's page")
            for handle in (first, second, third):
                wait_text(ann.show(handle), "members", lambda t: t == everyone, "ann's page")
            assert bob.find_element(By.ID, "log").text.count("* ann joined") == 1

            # Two of ann's tabs go, one on each host: ann is still there, on one device.
            ann.close(second)
            ann.close(third)
            wait_text(bob, "members", lambda t: t == "online (2): ann, bob", "bob's page")
            wait_text(ann.show(first), "members", lambda t: t == "online (2): ann, bob", "ann's")
            assert "ann left" not in bob.find_element(By.ID, "log").text

            # The last one goes: one leave notice (what bob says next shows after it).
            ann.close(first)
            wait_text(bob, "members", lambda t: t == "online (1): bob", "ann still listed")
            say(bob, "alone now")
            wait_text(bob, "log", lambda t: "bob: alone now" in t, "bob's own message")
            assert bob.find_element(By.ID, "log").text.count("* ann left") == 1
    finally:
        redis.cleanup()


def test_a_page_stays_connected_across_expiring_credentials(browser: Any) -> None:
    """Tokens valid two seconds: the page fetches a new one before each expires and
    presents it (rpc.refresh) on the same connection; a refused refresh closes the
    connection with 4001, which the page is told of, and it comes back with a fresh
    token; a connection that never refreshes is closed when its token expires."""
    server = start("tests.apps.tokens:app", "rsgi", {"TOKEN_TTL": "2"})
    try:
        page = browser()
        page.get(f"{server.http}/")
        wait_js(page, "client.status === 'open'", "the page never connected")
        # Three refreshes (each a token fetched on the same connection): past the first
        # token's expiry, and the connection still answers as ann.
        wait_js(page, "fetched - client.connections >= 3", "no refreshes")
        assert page.execute_script("return [client.connections, errors, closes];") == [1, [], []]
        assert run_js(page, 'client.call("whoami").then(done, failed);') == "ann"

        # A token the server does not know: refused, closed with 4001, back again.
        error = run_js(page, "bad = true; client.refresh().then(done, failed);")
        assert (error["name"], error["code"]) == ("CallError", -32005), error
        wait_js(page, "client.connections === 2 && client.status === 'open'", "not back")
        refused = {"code": 4001, "reason": "refresh refused"}
        assert page.execute_script("return [client.closeReason, closes];") == [refused, [refused]]
        assert run_js(page, 'client.call("whoami").then(done, failed);') == "ann"

        # Without the credentials option: no refresh, closed when the token expires.
        reason = run_js(
            page,
            'fetch("/token?user=bob").then((r) => r.text()).then((token) => {\n'
            '  const late = new Gobstopper.Client("/rpc?token=" + token);\n'
            "  late.onclose = ({closeReason}) => { late.close(); done(closeReason); };\n"
            "  late.connect();\n"
            "}, failed);",
        )
        assert reason == {"code": 4001, "reason": "credential expired"}
    finally:
        server.stop()


class Background:
    """An event loop in a thread, for the asyncio side of a browser test (the proxy, the
    Python client) while Selenium drives the page from the test's own thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(WAIT)

    def call(self, fn: Callable[[], T]) -> T:
        """``fn()`` in the loop's thread (what touches its transports must run there)."""

        async def call() -> T:
            return fn()

        return self.run(call())

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(WAIT)
        self.loop.close()


def feed_items(page: Any) -> list[tuple[int, int]]:
    """The feed page's list: (offset, item number) of each line, top to bottom."""
    from selenium.webdriver.common.by import By

    items = []
    for li in page.find_elements(By.CSS_SELECTOR, "#items li"):
        found = re.fullmatch(r"#(\d+) item (-?\d+)", li.text)
        assert found, li.text
        items.append((int(found[1]), int(found[2])))
    return items


def wait_items(page: Any, predicate: Callable[[list[tuple[int, int]]], bool], what: str) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(page, WAIT, poll_frequency=0.05).until(
            lambda driver: predicate(feed_items(driver))
        )
    except Exception as exc:
        raise AssertionError(f"{what}: the page shows {feed_items(page)}") from exc


def test_feed_page_misses_nothing_across_a_cut_connection(browser: Any) -> None:
    """The feed example's page, through a proxy that cuts its connection: what was
    published while it was away shows after it reconnects, in order, none twice; after
    a reload it resumes from the position it saved; after a server restart (a new epoch)
    it says it could not recover and shows the latest items."""
    from selenium.webdriver.common.by import By

    from gobstopper.client import Client

    server = start("examples.feed:app", "rsgi", {"FEED_TICK": "0"})  # the test publishes
    background = Background()
    p = background.run(_start_proxy(server.port))
    client = Client(f"{server.ws}/rpc", backoff=0.05, max_backoff=0.5, timeout=WAIT)
    published: list[int] = []

    def publish(numbers: range) -> None:
        async def send() -> None:
            for n in numbers:  # in order: one connection's calls are handled in order
                await client.publish("feed", {"n": n})

        background.run(send())
        published.extend(numbers)

    try:
        background.run(client.connect())
        page = browser()
        url = f"http://127.0.0.1:{p.port}/"  # the page and its WebSocket: through the proxy
        page.get(url)
        wait_js(page, "feed.position !== null", "the page never subscribed")
        wait_text(page, "status", lambda t: t == "live", "the page is not live")
        assert page.execute_script("return client.url;") == f"ws://127.0.0.1:{p.port}/rpc"
        publish(range(1, 6))
        wait_items(page, lambda items: len(items) == 5, "the first items never showed")

        # The network goes down: the page notices; items go by meanwhile.
        background.call(p.go_down)
        wait_text(page, "status", lambda t: t != "live", "the page never noticed the cut")
        publish(range(6, 31))
        background.call(p.come_back)
        wait_items(page, lambda items: len(items) >= 30, "the missed items never came")
        wait_text(page, "status", lambda t: t == "live", "the page did not come back")
        items = feed_items(page)
        first = items[0][0]
        assert [n for _, n in items] == published  # all of them, in order, none twice
        assert [o for o, _ in items] == list(range(first, first + 30)), items
        assert page.execute_script("return client.connections;") >= 2
        assert not page.find_element(By.ID, "notice").is_displayed()

        # Away from the page while items go by; back, it resumes from its saved position.
        page.get("about:blank")
        publish(range(31, 36))
        page.get(url)
        wait_text(page, "resumed", lambda t: f"after #{first + 29}" in t, "no saved position")
        wait_items(page, lambda items: len(items) >= 5, "the items missed while away")
        assert feed_items(page) == [(first + 29 + i, 30 + i) for i in range(1, 6)]

        # The server restarts: its in-memory history is gone (a new epoch). The page
        # says it could not recover, and shows the new server's items.
        port = server.port
        server.stop()
        wait_text(page, "status", lambda t: t != "live", "the page never noticed the restart")
        server = start("examples.feed:app", "rsgi", {"FEED_TICK": "0"}, port=port)
        publish(range(100, 103))
        notice = wait_text(page, "notice", bool, "no notice that recovery failed")
        assert "could not be recovered" in notice
        wait_items(page, lambda items: len(items) >= 3, "the new server's items")
        assert feed_items(page) == [(1, 100), (2, 101), (3, 102)]
        publish(range(103, 105))
        wait_items(page, lambda items: len(items) >= 5, "live items after the reload")
        assert feed_items(page) == [(1 + i, 100 + i) for i in range(5)]

        # Overlapping patterns beside the page's own "feed": each gets each message once;
        # one that does not match gets none.
        answer = run_js(
            page,
            "window.deep = []; window.shallow = []; window.under = [];\n"
            'client.subscribe("feed.**", (data) => under.push(data));\n'
            'client.subscribe("*", (data, channel) => shallow.push(channel));\n'
            'const off = client.subscribe("**", (data, channel) => deep.push([channel, data]));\n'
            "off.ready.then(done, failed);",
        )
        assert answer["channel"] == "**", answer
        publish(range(105, 106))
        wait_js(page, "deep.length === 1 && shallow.length === 1", "no message on * and **")
        wait_items(page, lambda items: len(items) >= 6, "the page's own subscription")
        got = page.execute_script("return [deep, shallow, under];")
        assert got == [[["feed", {"n": 105}]], ["feed"], []], got
    finally:
        with contextlib.suppress(Exception):
            background.run(client.close())
        with contextlib.suppress(Exception):
            background.run(p.stop())
        background.close()
        server.stop()


async def _start_proxy(target: int) -> Proxy:
    p = Proxy(target)
    await p.start()
    return p
