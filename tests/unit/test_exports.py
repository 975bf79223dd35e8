from __future__ import annotations

import gobstopper


def test_public_names_are_exported_and_exist() -> None:
    assert sorted(gobstopper.__all__) == sorted(set(gobstopper.__all__))
    for name in gobstopper.__all__:
        assert getattr(gobstopper, name) is not None, name
    expected = {
        "Gobstopper",
        "WebSocket",
        "CloseCode",
        "ConnectionClosed",
        "MessageTooBig",
        "Config",
    }
    assert expected <= set(gobstopper.__all__)
