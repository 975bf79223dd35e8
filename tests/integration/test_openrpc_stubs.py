"""The typed Python client of ``examples/rpc.py``, generated as a user would
(``python -m gobstopper stubs``): mypy --strict accepts it and code that uses it well,
refuses code that misuses it, and it talks to the example under a real granian.

mypy comes with the ``lint`` extra: without it the type checks are skipped, except in
CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gobstopper.codegen import python_stub
from gobstopper.messages.openrpc import openrpc_document

from ..unit.test_codegen import RICH
from .servers import ROOT, start

APP = "examples.rpc:app"
IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")

USE = """
from __future__ import annotations

from rpc_client import GobstopperExampleClient, Room


async def use(client: GobstopperExampleClient) -> None:
    total: float = await client.add(2, 3.5)
    items: list[int] = [i async for i in client.count(3, delay=0.0)]
    room: Room = {"room": "lobby"}
    members: list[str] = await client.emit_join(room)
    delivered: bool = await client.emit_whisper({"to": members[0], "text": "hi"})
    await client.emit_say({"room": "lobby", "text": "hello"}, ack=True)
    print(total, items, delivered, await client.whoami())
"""

MISUSE = """
from __future__ import annotations

from rpc_client import GobstopperExampleClient


async def misuse(client: GobstopperExampleClient) -> None:
    await client.add("2", 3)
    text: str = await client.divide(1, 2)
    client.count(n="3")
    await client.emit_join({"rooms": "lobby"})
    await client.whoami(1)
"""


AWKWARD = "tests.apps.awkward_rpc"

USE_AWKWARD = """
from __future__ import annotations

from awkward_client import AwkwardClient


async def use(client: AwkwardClient) -> None:
    a: list[int] = await client.kwmix(b=2)
    b: list[int] = await client.kwmix(3, b=2)
    c: str = await client.implicit()
    d: list[int] = await client.mixed(1, 2)
    e: tuple[int, str] = await client.pair((1, "x"), tail_=True)
    f: str = await client.far(1.0)
    print(a, b, c, d, e, f)
"""


@pytest.fixture(scope="module")
def stub_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with the typed clients of the example and of the awkward
    signatures, made by the command line."""
    where = tmp_path_factory.mktemp("stubs")
    for target, name in ((APP, "rpc_client.py"), (f"{AWKWARD}:rpc", "awkward_client.py")):
        command = [sys.executable, "-m", "gobstopper", "stubs", target, "--lang", "python"]
        run = subprocess.run(
            [*command, "-o", str(where / name)], cwd=ROOT, capture_output=True, text=True
        )
        assert run.returncode == 0, run.stderr
    return where


def mypy(where: Path, *files: str) -> subprocess.CompletedProcess[str]:
    if importlib.util.find_spec("mypy") is None:
        if IN_CI:
            pytest.fail("mypy is not installed: the stub cannot be type-checked in CI")
        pytest.skip("mypy is not installed (pip install -e '.[lint]')")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's gobstopper.client
    command = [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(where / ".mypy")]
    return subprocess.run(
        [*command, *files], cwd=where, env=env, capture_output=True, text=True, timeout=300
    )


def test_the_stub_and_code_using_it_pass_mypy_strict(stub_dir: Path) -> None:
    (stub_dir / "use.py").write_text(textwrap.dedent(USE))
    run = mypy(stub_dir, "rpc_client.py", "use.py")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Success: no issues found in 2 source files" in run.stdout


def test_a_stub_of_odd_names_and_every_kind_of_schema_passes_mypy_strict(
    stub_dir: Path,
) -> None:
    (stub_dir / "odd_client.py").write_text(python_stub(RICH))
    run = mypy(stub_dir, "odd_client.py")
    assert run.returncode == 0, run.stdout + run.stderr


def test_mypy_refuses_code_that_misuses_the_stub(stub_dir: Path) -> None:
    (stub_dir / "misuse.py").write_text(textwrap.dedent(MISUSE))
    run = mypy(stub_dir, "misuse.py")
    assert run.returncode == 1, run.stdout + run.stderr
    lines = [line for line in run.stdout.splitlines() if line.startswith("misuse.py:")]
    wrong = sorted({int(line.split(":")[1]) for line in lines})
    assert wrong == [8, 9, 10, 11, 12], run.stdout  # each misuse, and nothing else


async def test_the_stub_talks_to_the_example_server(stub_dir: Path) -> None:
    spec = importlib.util.spec_from_file_location("rpc_client", stub_dir / "rpc_client.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    server = start(APP, "rsgi")
    try:
        async with module.GobstopperExampleClient(f"{server.ws}/rpc", timeout=10) as client:
            assert await client.add(2, 3.5) == 5.5
            assert [i async for i in client.count(4)] == [0, 1, 2, 3]
            members = await client.emit_join({"room": "lobby"})
            assert members == [client.id]
            assert await client.whoami() == "127.0.0.1"
            from examples.rpc import rpc

            expected = json.loads(json.dumps(openrpc_document(rpc)))
            assert await client.call("rpc.discover") == expected
    finally:
        server.stop()


def test_a_stub_of_awkward_signatures_and_code_using_it_pass_mypy_strict(
    stub_dir: Path,
) -> None:
    (stub_dir / "use_awkward.py").write_text(textwrap.dedent(USE_AWKWARD))
    run = mypy(stub_dir, "awkward_client.py", "use_awkward.py")
    assert run.returncode == 0, run.stdout + run.stderr


async def test_the_awkward_stub_is_answered_by_a_real_server(stub_dir: Path) -> None:
    spec = importlib.util.spec_from_file_location("awkward_client", stub_dir / "awkward_client.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    server = start(f"{AWKWARD}:app", "rsgi")
    try:
        async with module.AwkwardClient(f"{server.ws}/rpc", timeout=10) as client:
            assert await client.kwmix(b=2) == [1, 2]
            assert await client.implicit() == "None"
            assert await client.mixed(1) == [1, 1, 2]
            assert await client.pair((2, "b"), tail_=True) == [3, "b!"]
            assert await client.far() == "inf"
    finally:
        server.stop()
