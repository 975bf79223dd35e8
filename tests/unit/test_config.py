from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Iterable

import pytest

from gobstopper import Config, ConfigError, Gobstopper
from gobstopper.config import SlowConsumerPolicy
from gobstopper.settings import SETTINGS, SettingsArgs


def test_defaults() -> None:
    config = Config.load({})
    assert config == Config(
        max_message_bytes=1024 * 1024, send_chunk_bytes=64 * 1024, receive_queue_messages=16
    )


def test_environment_is_read_and_arguments_win() -> None:
    env = {"MAX_WS_MESSAGE_BYTES": "2048", "WS_SEND_CHUNK_BYTES": " 512 "}
    assert Config.load(env).max_message_bytes == 2048
    assert Config.load(env).send_chunk_bytes == 512
    assert Config.load(env, max_message_bytes=4096).max_message_bytes == 4096
    app = Gobstopper(environ=env, send_chunk_bytes=1024)
    assert (app.config.max_message_bytes, app.config.send_chunk_bytes) == (2048, 1024)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MAX_WS_MESSAGE_BYTES": "abc"}, "MAX_WS_MESSAGE_BYTES='abc' is not an integer"),
        ({"MAX_WS_MESSAGE_BYTES": "1.5"}, "MAX_WS_MESSAGE_BYTES='1.5' is not an integer"),
        ({"MAX_WS_MESSAGE_BYTES": ""}, "MAX_WS_MESSAGE_BYTES='' is not an integer"),
        ({"MAX_WS_MESSAGE_BYTES": "0"}, "MAX_WS_MESSAGE_BYTES='0' must be a positive integer"),
        ({"WS_SEND_CHUNK_BYTES": "-5"}, "WS_SEND_CHUNK_BYTES='-5' must be a positive integer"),
        ({"WS_RECEIVE_QUEUE_MESSAGES": "many"}, "WS_RECEIVE_QUEUE_MESSAGES='many'"),
        (
            {"MAX_WS_MESSAGE_BYTES": "1000", "WS_SEND_CHUNK_BYTES": "2000"},
            "WS_SEND_CHUNK_BYTES=2000 is larger than MAX_WS_MESSAGE_BYTES=1000",
        ),
    ],
)
def test_bad_environment_values_name_the_variable_and_value(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        Gobstopper(environ=env)


def test_lowering_only_the_message_limit_lowers_the_default_chunk() -> None:
    assert Config.load({"MAX_WS_MESSAGE_BYTES": "1000"}).send_chunk_bytes == 1000
    assert Config.load({}, max_message_bytes=4096).send_chunk_bytes == 4096
    assert (
        Config.load({"MAX_WS_MESSAGE_BYTES": "1000", "WS_SEND_CHUNK_BYTES": "10"}).send_chunk_bytes
        == 10
    )


def test_bad_constructor_values_name_the_argument() -> None:
    with pytest.raises(ConfigError, match="max_message_bytes=0 must be a positive integer"):
        Gobstopper(environ={}, max_message_bytes=0)
    with pytest.raises(
        ConfigError, match="send_chunk_bytes=2048 is larger than MAX_WS_MESSAGE_BYTES=1024"
    ):
        Gobstopper(environ={"MAX_WS_MESSAGE_BYTES": "1024"}, send_chunk_bytes=2048)
    with pytest.raises(ConfigError, match="is not an integer"):
        Config.load({}, max_message_bytes="10")
    with pytest.raises(ConfigError, match="max_message_bytes='10' is not an integer"):
        Gobstopper(environ={}, max_message_bytes="10")  # type: ignore[arg-type]


def test_delivery_settings() -> None:
    config = Config.load(
        {
            "WS_SEND_QUEUE_BYTES": "2097152",
            "WS_SEND_QUEUE_MESSAGES": "64",
            "WS_SLOW_CONSUMER_POLICY": "Drop_Oldest",
            "WS_SEND_TIMEOUT": "2.5",
            "WS_SHUTDOWN_GRACE": "1",
        }
    )
    assert config.send_queue_bytes == 2 * 1024 * 1024 and config.send_queue_messages == 64
    assert config.slow_consumer_policy is SlowConsumerPolicy.DROP_OLDEST
    assert (config.send_timeout, config.shutdown_grace) == (2.5, 1.0)
    # Raising the message limit raises the default queue size with it.
    assert (
        Config.load({"MAX_WS_MESSAGE_BYTES": str(4 * 1024 * 1024)}).send_queue_bytes
        == 4 * 1024 * 1024
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"WS_SLOW_CONSUMER_POLICY": "kick"},
            "WS_SLOW_CONSUMER_POLICY='kick' is not one of: close, drop_oldest, drop_newest",
        ),
        ({"WS_SEND_TIMEOUT": "soon"}, "WS_SEND_TIMEOUT='soon' is not a number of seconds"),
        ({"WS_SEND_TIMEOUT": "0"}, "WS_SEND_TIMEOUT='0' must be a positive number of seconds"),
        (
            {"WS_SHUTDOWN_GRACE": "nan"},
            "WS_SHUTDOWN_GRACE='nan' must be a positive number of seconds",
        ),
        ({"WS_SEND_QUEUE_MESSAGES": "0"}, "WS_SEND_QUEUE_MESSAGES='0' must be a positive integer"),
        (
            {"WS_SEND_QUEUE_BYTES": "1000"},
            "WS_SEND_QUEUE_BYTES=1000 is smaller than MAX_WS_MESSAGE_BYTES=1048576",
        ),
    ],
)
def test_bad_delivery_settings(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        Config.load(env)


def test_every_field_is_a_declared_setting() -> None:
    assert list(SETTINGS) == [f.name for f in dataclasses.fields(Config)]
    envs = [s.env for s in SETTINGS.values()]
    assert len(set(envs)) == len(envs)
    assert all(s.doc and "\n" not in s.doc for s in SETTINGS.values())
    assert Config() == Config.load({})


@pytest.mark.parametrize("name", list(SETTINGS))
def test_each_default_is_a_value_its_parser_accepts(name: str) -> None:
    setting = SETTINGS[name]
    assert setting.parse(setting.env, setting.default) == setting.default
    assert getattr(Config(), name) == setting.default


def _accepted(declared: object) -> set[object]:
    """What ``Gobstopper()`` takes for a setting of type ``declared``: that type or None;
    a policy also by name; a tuple as any iterable, or as a comma-separated string."""
    is_union = typing.get_origin(declared) in (typing.Union, types.UnionType)
    accepted: set[object] = {type(None)}
    for kind in typing.get_args(declared) if is_union else (declared,):
        if typing.get_origin(kind) is tuple:
            accepted |= {Iterable[typing.get_args(kind)[0]], str}  # type: ignore[misc]
        elif isinstance(kind, type) and issubclass(kind, enum.Enum):
            accepted |= {kind, str}
        else:
            accepted.add(kind)
    return accepted


def test_the_keyword_arguments_are_the_declared_settings() -> None:
    """``SettingsArgs`` is written by hand for editors: it must not drift from Config."""
    declared = typing.get_type_hints(Config)
    arguments = typing.get_type_hints(SettingsArgs)
    assert list(arguments) == list(SETTINGS)
    assert SettingsArgs.__required_keys__ == frozenset()
    for name, kind in arguments.items():
        assert set(typing.get_args(kind)) == _accepted(declared[name]), name


def test_unknown_settings_are_refused() -> None:
    with pytest.raises(TypeError, match="unknown setting"):
        Gobstopper(environ={}, max_mesage_bytes=10)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unknown setting"):
        Config.load({}, nope=1)


def test_allowed_origins_take_any_iterable_of_strings() -> None:
    for origins in (
        ["https://a.example"],
        {"https://a.example"},
        (o for o in ["https://a.example"]),
    ):
        app = Gobstopper(environ={}, allowed_origins=origins)
        assert app.config.allowed_origins == ("https://a.example",)
    assert Gobstopper(
        environ={}, allowed_origins="https://a.example, https://b.example"
    ).config.allowed_origins == (
        "https://a.example",
        "https://b.example",
    )


def test_the_old_module_names_the_same_objects() -> None:
    from gobstopper import config, settings

    assert (config.Config, config.SlowConsumerPolicy, config.RateLimitPolicy) == (
        settings.Config,
        settings.SlowConsumerPolicy,
        settings.RateLimitPolicy,
    )
