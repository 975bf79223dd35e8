"""``python -m gobstopper``: publish into a running cluster from a shell, for operators and
scripts, through the servers' broker (``gobstopper.emitter``).

    python -m gobstopper publish orders.42 '{"status": "shipped"}'
    python -m gobstopper broadcast 'maintenance at 22:00' --room lobby
    python -m gobstopper emit deploy '{"version": "1.4"}'
    python -m gobstopper presence lobby
    python -m gobstopper disconnect ann#1 --code 4003 --reason banned
    python -m gobstopper disconnect ann --user
    python -m gobstopper openrpc examples.rpc:rpc -o openrpc.json
    python -m gobstopper stubs examples.rpc:rpc --lang python -o rpc_client.py

The broker is ``--broker URL``, else ``GOBSTOPPER_BROKER_URL``. DATA is read as JSON when
it is JSON, else as text. The outcome is printed as one JSON line; the exit status is 0
when done, 1 when the broker could not be reached or the target was not found, 2 for a
command line or configuration error. ``openrpc`` and ``stubs`` (``gobstopper.codegen``)
write an endpoint's OpenRPC document and typed clients, without a broker.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from typing import Any

from . import codegen
from .emitter import Emitter
from .errors import BrokerUnavailable, ConfigError


def _data(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gobstopper",
        description="Publish into a running gobstopper cluster; describe an endpoint.",
    )
    parser.add_argument("--broker", help="the servers' broker URL (GOBSTOPPER_BROKER_URL)")
    parser.add_argument("--endpoint", default="rpc", help="the message layer endpoint")
    commands = parser.add_subparsers(dest="command", required=True)
    publish = commands.add_parser("publish", help="publish DATA to a channel")
    publish.add_argument("channel")
    publish.add_argument("data")
    broadcast = commands.add_parser("broadcast", help="a WebSocket message to all, or a room")
    broadcast.add_argument("data")
    broadcast.add_argument("--room")
    emit = commands.add_parser("emit", help="a named event to all, a room or one connection")
    emit.add_argument("event")
    emit.add_argument("data", nargs="?", default="null")
    emit.add_argument("--room")
    emit.add_argument("--to", help="a connection id")
    presence = commands.add_parser(
        "presence", help="the ids in a room (all when no room), and its users with their metas"
    )
    presence.add_argument("room", nargs="?")
    disconnect = commands.add_parser("disconnect", help="close a connection (or a user's)")
    disconnect.add_argument("id", help="a connection id, or with --user a user")
    disconnect.add_argument("--user", action="store_true", help="ID is a user")
    disconnect.add_argument("--code", type=int, default=1000)
    disconnect.add_argument("--reason", default="")
    codegen.add_commands(commands)
    return parser


async def _run(args: argparse.Namespace) -> tuple[int, dict[str, Any]]:
    async with Emitter(args.broker, endpoint=args.endpoint) as emitter:
        if args.command == "publish":
            position = await emitter.publish(args.channel, _data(args.data))
            answer: dict[str, Any] = {"published": True}
            if position is not None:
                answer.update(offset=position.offset, epoch=position.epoch)
            return 0, answer
        if args.command == "broadcast":
            await emitter.broadcast(args.data, room=args.room)
            return 0, {"published": True}
        if args.command == "emit":
            sent = await emitter.emit(args.event, _data(args.data), room=args.room, to=args.to)
            return (0 if sent else 1), {"published": sent}
        if args.command == "presence":
            members = await emitter.presence(args.room)
            answer = {"members": members, "count": len(members)}
            if args.room is not None:
                users = (await emitter.users(args.room)).as_dict()["users"]
                answer.update(users=users, unique_users=len(users))
            return 0, answer
        if args.user:
            count = await emitter.disconnect_user(args.id, args.code, args.reason)
            return (0 if count else 1), {"found": count}
        found = await emitter.disconnect(args.id, args.code, args.reason)
        return (0 if found else 1), {"found": found}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command in ("openrpc", "stubs"):
        try:
            return codegen.run_command(args)
        except ValueError as exc:
            print(f"python -m gobstopper {args.command}: {exc}", file=sys.stderr)
            return 2
    try:
        status, answer = asyncio.run(_run(args))
    except (ConfigError, ValueError, TypeError) as exc:
        print(f"python -m gobstopper: {exc}", file=sys.stderr)
        return 2
    except BrokerUnavailable as exc:
        print(json.dumps({"error": str(exc)}))
        return 1
    print(json.dumps(answer))
    return status


if __name__ == "__main__":
    sys.exit(main())
