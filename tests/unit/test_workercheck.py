"""The start-up warning for several granian workers without --respawn-failed-workers:
granian's command line and GRANIAN_* variables read as granian reads them."""

from __future__ import annotations

import logging
import sys

import pytest

from gobstopper import Gobstopper, workercheck
from gobstopper.workercheck import unguarded_workers, warn_without_respawn

GRANIAN = "/srv/app/.venv/bin/granian"
MODULE = "/srv/app/.venv/lib/python3.12/site-packages/granian/__main__.py"


@pytest.fixture(autouse=True)
def no_granian_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRANIAN_WORKERS", raising=False)
    monkeypatch.delenv("GRANIAN_RESPAWN_FAILED_WORKERS", raising=False)


@pytest.mark.parametrize("program", [GRANIAN, MODULE])
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--interface", "rsgi", "--workers", "2", "app:app"], 2),
        (["--workers=4", "app:app"], 4),
        (["--workers", "2", "--respawn-failed-workers", "app:app"], 0),
        (["--workers", "2", "--no-respawn-failed-workers", "app:app"], 2),
        (["--interface", "rsgi", "app:app"], 0),  # one worker: nothing to keep serving
        (["--workers", "1", "app:app"], 0),
    ],
)
def test_the_command_line_decides(program: str, args: list[str], expected: int) -> None:
    assert unguarded_workers([program, *args]) == expected


def test_granian_variables_count_as_granian_reads_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRANIAN_WORKERS", "3")
    assert unguarded_workers([GRANIAN, "app:app"]) == 3
    monkeypatch.setenv("GRANIAN_RESPAWN_FAILED_WORKERS", "true")
    assert unguarded_workers([GRANIAN, "app:app"]) == 0
    # The command line wins over the variable, as in granian.
    assert unguarded_workers([GRANIAN, "--no-respawn-failed-workers", "app:app"]) == 3


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["/usr/bin/uvicorn", "--workers", "2", "app:app"],
        ["pytest", "--workers", "2"],
        [GRANIAN, "--workers", "many", "app:app"],  # does not parse: granian would refuse
    ],
)
def test_other_command_lines_are_left_alone(argv: list[str]) -> None:
    assert unguarded_workers(argv) == 0


def test_the_warning_names_the_flag(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="gobstopper"):
        assert warn_without_respawn([GRANIAN, "--workers", "2", "app:app"])
        assert not warn_without_respawn(
            [GRANIAN, "--workers", "2", "app:app", "--respawn-failed-workers"]
        )
    assert len(caplog.records) == 1
    assert "2 workers without --respawn-failed-workers" in caplog.records[0].getMessage()


def test_a_worker_warns_once_however_many_apps(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sys, "argv", [GRANIAN, "--interface", "rsgi", "--workers", "2", "m:app"])
    monkeypatch.setattr(workercheck, "_warned", False)
    with caplog.at_level(logging.WARNING, logger="gobstopper"):
        Gobstopper(environ={})
        Gobstopper(environ={})
    warned = [r for r in caplog.records if "--respawn-failed-workers" in r.getMessage()]
    assert len(warned) == 1
