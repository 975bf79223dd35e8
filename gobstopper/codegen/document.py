"""What the code generators read of an OpenRPC document, checked before they read it:
a malformed document is a ``ValueError`` saying where, not a ``KeyError`` from deep in
a generator."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["check_document"]


def check_document(doc: Any) -> None:
    """Check the parts of an OpenRPC document a generator reads: ``methods`` and
    ``x-gobstopper-events`` lists of objects with a string ``name`` and a list of
    ``params`` (objects with a string ``name``); ``components.schemas`` an object.

    Raises:
        ValueError: what is wrong, and where (``methods[2]: no 'name'``).
    """
    if not isinstance(doc, Mapping) or not isinstance(doc.get("methods"), list):
        raise ValueError("not an OpenRPC document: it has no 'methods' list")
    for key in ("info", "components"):
        if not isinstance(doc.get(key, {}), Mapping):
            raise ValueError(f"{key!r} is not an object")
    if not isinstance((doc.get("components") or {}).get("schemas", {}), Mapping):
        raise ValueError("'components.schemas' is not an object")
    events = doc.get("x-gobstopper-events", [])
    if not isinstance(events, list):
        raise ValueError("'x-gobstopper-events' is not a list")
    for part, entries in (("methods", doc["methods"]), ("x-gobstopper-events", events)):
        for i, entry in enumerate(entries):
            where = f"{part}[{i}]"
            if not isinstance(entry, Mapping):
                raise ValueError(f"{where} is not an object")
            if not isinstance(entry.get("name"), str):
                raise ValueError(f"{where}: no 'name' (a string)")
            params = entry.get("params", [])
            if not isinstance(params, list):
                raise ValueError(f"{where} ({entry['name']!r}): 'params' is not a list")
            for j, param in enumerate(params):
                if not isinstance(param, Mapping) or not isinstance(param.get("name"), str):
                    raise ValueError(
                        f"{where} ({entry['name']!r}): params[{j}] is not an object with a "
                        "'name' (a string)"
                    )
            if not isinstance(entry.get("result", {}), Mapping):
                raise ValueError(f"{where} ({entry['name']!r}): 'result' is not an object")
