"""Loads pytest's ``pytester`` (the test kit's plugin is tested in a pytest run of its
own), and gobstopper's pytest plugin (``gobstopper.testing.plugin``) when the installed
package does not register it yet: an install made before its ``pytest11`` entry point
existed. Installed afresh, the entry point loads it and this does nothing."""

from __future__ import annotations

from importlib.metadata import entry_points

pytest_plugins = ["pytester"]
if not any(ep.value == "gobstopper.testing.plugin" for ep in entry_points(group="pytest11")):
    pytest_plugins.append("gobstopper.testing.plugin")
