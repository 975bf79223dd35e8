"""Code from an endpoint's OpenRPC document: the document itself, and typed clients.

``python -m gobstopper openrpc module:rpc`` writes the document of an ``RPC`` endpoint;
``python -m gobstopper stubs TARGET --lang python`` a typed Python client
(``codegen.python``), ``--lang typescript`` a TypeScript one
(``codegen.typescript``). A TARGET is ``module:attribute`` (an ``RPC``, or an app
with one endpoint) or the path of a ``.json`` document. See ``docs/openrpc.md``.

A bad target is a ``ValueError`` naming it (the command line's exit status 2).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .document import check_document
from .python import python_stub

__all__ = ["LANGUAGES", "check_document", "load_document", "load_endpoint", "python_stub", "stub"]

#: The languages ``stub`` writes.
LANGUAGES = ("python", "typescript")


def load_endpoint(target: str) -> Any:
    """The ``RPC`` endpoint ``target`` names: ``module:attribute`` (dotted), an ``RPC`` or
    an app (``Gobstopper``) with exactly one endpoint.

    The current directory is searched for the module first, as ``python -m`` does.

    Raises:
        ValueError: no such module or attribute, or it is not an endpoint (each
            message names ``target``).
    """
    from ..messages.rpc import RPC

    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"{target!r} is not module:attribute (e.g. examples.rpc:rpc)")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        value: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"{target!r}: cannot import {module_name!r}: {exc}") from None
    for part in attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise ValueError(f"{target!r}: {module_name!r} has no {attribute!r}") from None
    if isinstance(value, RPC):
        return value
    manager = getattr(value, "manager", None)
    endpoints = getattr(manager, "endpoints", None)
    if isinstance(endpoints, Mapping):
        found = [e for e in endpoints.values() if isinstance(e, RPC)]
        if len(found) == 1:
            return found[0]
        names = sorted(e.name for e in found)
        raise ValueError(
            f"{target!r}: the app has {len(found)} RPC endpoints {names}: name one of them"
        )
    raise ValueError(f"{target!r} is a {type(value).__name__}, not an RPC endpoint")


def load_document(target: str) -> dict[str, Any]:
    """The OpenRPC document of ``target``: read from a ``.json`` file, or made from the
    endpoint ``module:attribute`` names (``load_endpoint``).

    Raises:
        ValueError: the file cannot be read or is not an OpenRPC document, or the
            endpoint cannot be loaded (the message names ``target``).
    """
    if target.endswith(".json"):
        try:
            doc = json.loads(Path(target).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ValueError(f"{target!r}: cannot read it: {exc.strerror}") from None
        except ValueError as exc:
            raise ValueError(f"{target!r}: not JSON: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("methods"), list):
            raise ValueError(f"{target!r}: not an OpenRPC document (no 'methods' list)")
        try:
            check_document(doc)
        except ValueError as exc:
            raise ValueError(f"{target!r}: {exc}") from None
        return doc
    from ..messages.openrpc import openrpc_document

    return openrpc_document(load_endpoint(target))


def stub(doc: Mapping[str, Any], lang: str) -> str:
    """The source of a typed client of ``doc`` in ``lang`` (one of ``LANGUAGES``).

    Raises:
        ValueError: an unknown language, a document the generator cannot read
            (``check_document``), or
            (``typescript``) a gobstopper without its TypeScript generator.
    """
    if lang == "python":
        return python_stub(doc)
    if lang == "typescript":
        generate = _typescript()
        check_document(doc)
        return generate(_tuples_2020(doc))
    raise ValueError(f"unknown language {lang!r}: choose from {', '.join(LANGUAGES)}")


def _tuples_2020(value: Any) -> Any:
    """``value`` with each draft-07 tuple schema (``items`` a list, ``additionalItems``)
    written as 2020-12 says it (``prefixItems``, ``items``): the form the TypeScript
    generator reads. Other values are kept."""
    if isinstance(value, list):
        return [_tuples_2020(v) for v in value]
    if not isinstance(value, Mapping):
        return value
    out = {k: _tuples_2020(v) for k, v in value.items()}
    if isinstance(out.get("items"), list) and "prefixItems" not in out:
        out["prefixItems"] = out.pop("items")
        out["items"] = out.pop("additionalItems", True)
    return out


def _typescript() -> Callable[[Mapping[str, Any]], str]:
    try:
        module = importlib.import_module(".typescript", __name__)
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.typescript":
            raise
        raise ValueError(
            "TypeScript stubs need the module gobstopper.codegen.typescript, which this "
            "installation of gobstopper does not have"
        ) from None
    generate: Callable[[Mapping[str, Any]], str] = module.typescript_stub
    return generate


def add_commands(commands: Any) -> None:
    """Add ``openrpc`` and ``stubs`` to the command line's subcommands."""
    openrpc = commands.add_parser("openrpc", help="write the OpenRPC document of an endpoint")
    openrpc.add_argument("target", help="module:attribute, an RPC (or an app with one)")
    openrpc.add_argument("-o", "--output", metavar="FILE", help="write it there, not to stdout")
    stubs = commands.add_parser("stubs", help="write a typed client of an endpoint")
    stubs.add_argument("target", help="module:attribute, or an OpenRPC .json file")
    stubs.add_argument("--lang", choices=LANGUAGES, required=True, help="the client's language")
    stubs.add_argument("-o", "--output", metavar="FILE", help="write it there, not to stdout")


def run_command(args: argparse.Namespace) -> int:
    """Run ``openrpc`` or ``stubs``: 0 when written.

    Raises:
        ValueError: a bad target or document (the exit status 2).
    """
    if args.command == "openrpc" and args.target.endswith(".json"):
        raise ValueError(f"{args.target!r}: openrpc takes module:attribute, not a file")
    doc = load_document(args.target)
    if args.command == "openrpc":
        # allow_nan=False: what is written is JSON (the document has no inf or nan).
        text = json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    else:
        text = stub(doc, args.lang)
    if args.output is None:
        sys.stdout.write(text)
    else:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"cannot write {args.output!r}: {exc.strerror}") from None
    return 0
