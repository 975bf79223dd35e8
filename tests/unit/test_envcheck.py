"""Environment variables that look like settings but match none are reported."""

from __future__ import annotations

import logging

import pytest

from gobstopper import Gobstopper
from gobstopper.envcheck import PREFIXES, unknown_variables, warn_unknown_variables
from gobstopper.settings import SETTINGS


def test_the_prefixes_come_from_the_settings_names() -> None:
    assert {"GOBSTOPPER_", "WS_", "MAX_WS_", "HTTP_"} <= set(PREFIXES)
    assert "MAX_" not in PREFIXES  # too common a start to call ours
    for s in SETTINGS.values():
        assert s.env.startswith(PREFIXES)


def test_a_misspelt_setting_is_warned_about_naming_the_closest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="gobstopper"):
        app = Gobstopper(environ={"MAX_WS_MESSAGE_BYTE": "10"})
    assert app.config.max_message_bytes == SETTINGS["max_message_bytes"].default
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "MAX_WS_MESSAGE_BYTE (did you mean MAX_WS_MESSAGE_BYTES?)" in message


@pytest.mark.parametrize(
    ("name", "closest"),
    [
        ("MAX_WS_MESSAGE_BYTE", "MAX_WS_MESSAGE_BYTES"),
        ("WS_MAX_CONNECTION", "WS_MAX_CONNECTIONS"),
        ("GOBSTOPPER_REDIS_URL", "GOBSTOPPER_BROKER_URL"),
        ("GOBSTOPPER_MAX_CONNECTIONS", "WS_MAX_CONNECTIONS"),
        ("gobstopper_broker_url", "GOBSTOPPER_BROKER_URL"),  # the wrong case
        ("GOBSTOPPER_NOTHING_LIKE_IT", None),  # ours by its prefix, however far
    ],
)
def test_what_is_reported(name: str, closest: str | None) -> None:
    assert unknown_variables({name: "1"}) == [(name, closest)]


@pytest.mark.parametrize(
    "name",
    [
        "MAX_WS_MESSAGE_BYTES",  # a setting
        "WS_URL",  # a shared prefix, close to nothing of ours
        "MAX_JOBS",
        "PATH",
        "HOME",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "HTTP_PORT",
        "HTTP_HOST",
    ],
)
def test_unrelated_and_known_variables_are_left_alone(name: str) -> None:
    assert unknown_variables({name: "1"}) == []


def test_nothing_is_logged_when_all_is_well(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="gobstopper"):
        Gobstopper(environ={"MAX_WS_MESSAGE_BYTES": "2048", "PATH": "/bin", "HTTP_PROXY": "x"})
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_one_warning_for_several_names(caplog: pytest.LogCaptureFixture) -> None:
    env = {"WS_SEND_TIMOUT": "1", "WS_IDLE_TIMEOT": "2"}
    with caplog.at_level(logging.WARNING, logger="gobstopper"):
        assert warn_unknown_variables(env) == ["WS_IDLE_TIMEOT", "WS_SEND_TIMOUT"]
    (record,) = caplog.records
    assert "WS_IDLE_TIMEOT (did you mean WS_IDLE_TIMEOUT?)" in record.getMessage()
    assert "WS_SEND_TIMOUT (did you mean WS_SEND_TIMEOUT?)" in record.getMessage()


def test_the_process_environment_is_reported_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("WS_SEND_QUEUE_MESSAGE", "5")
    with caplog.at_level(logging.WARNING, logger="gobstopper"):
        Gobstopper()
        Gobstopper()
    reported = [r for r in caplog.records if "WS_SEND_QUEUE_MESSAGE " in r.getMessage()]
    assert len(reported) == 1
