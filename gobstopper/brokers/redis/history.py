"""Channel history in Redis: one stream per channel, appended and published in one step.

Keys, per history stream (``<prefix>`` is the broker's, ``gobstopper:`` by default):

- ``<prefix>history:<stream>``, a Redis stream: one entry per kept publication, with
  the ID ``<offset>-0`` (so that ``XRANGE`` finds "after offset n" by ID) and the
  fields ``d`` (the bytes) and ``x`` (when it expires, in Redis's clock, in ms).
- ``<prefix>history-meta:<stream>``, a hash: ``epoch`` (the sequence's name) and
  ``top`` (the last offset handed out).

Appending is one Lua script (``APPEND``), so that nothing can come between its steps:
take the epoch (or, when the meta hash is missing, start a new sequence with the epoch
the caller drew: after a flush, a deletion or an expiry the epoch therefore changes and
no old position is taken for a new one), drop the expired publications at the stream's
head, ``HINCRBY top``, ``XADD`` with ``MAXLEN size``, and refresh both TTLs. Given a
pub/sub channel and an open envelope (``envelope.encode_open``), the same script
``PUBLISH``es the envelope completed with the position, encoded by Redis's ``cmsgpack``
exactly as ``envelope.position_fields`` does. Redis runs one script at a time, so the
publications of a stream reach every node in offset order, whoever published them, and
no crash can separate a publication from its append.

Trimming is exact (``MAXLEN size``, not ``MAXLEN ~ size``): ``~`` trims whole radix-tree
nodes only, so the stream would keep up to about a hundred publications more than
``size``, and what a reader gets would depend on Redis's node size. Exact trimming
marks one entry deleted per append, which is cheap.

TTLs: each publication expires ``ttl`` after its append (the script drops expired
entries from the head, as the in-memory ring does), and the whole stream key ``ttl``
after the last append, when every entry has expired. The meta hash lives longer
(``meta_ttl``, 30 days by default, refreshed by every append): a channel quiet for
longer than ``ttl`` keeps its epoch and its top offset, so a subscriber that saw the
last publication before the quiet period resumes without being told it missed
something. Only when the meta hash too has expired does the channel start a new epoch.

A read is one script as well (``READ``: the meta, the head trimmed, the entries), so
that the position and the publications it returns belong to one moment. Reading a
channel never published creates its meta hash with a fresh epoch: a position handed out
before the first publication stays valid.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Awaitable, Sequence
from typing import Any

from redis.exceptions import RedisError

from ...errors import BrokerUnavailable
from ...history.base import HistoryStore, Position, Publication, Window

__all__ = ["APPEND", "DEFAULT_META_TTL", "READ", "RedisHistory"]

#: Seconds a stream's meta hash (its epoch and top offset) outlives its last append.
DEFAULT_META_TTL = 30 * 24 * 3600.0

_ERRORS = (RedisError, OSError, asyncio.TimeoutError)
_MAX_ID = 2**64 - 1  # the largest first part of a stream entry ID

# Shared by both scripts. Every entry's fields are {'d', data, 'x', expiry in ms}.
_FUNCTIONS = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The stream's epoch; without a meta hash, a new sequence named by the candidate.
local function epoch_of(stream, meta, candidate, meta_ms)
  local epoch = redis.call('HGET', meta, 'epoch')
  if epoch then
    return epoch
  end
  -- Whatever the stream still holds belongs to the lost sequence, and its IDs would
  -- refuse the new offsets.
  redis.call('DEL', stream, meta)
  redis.call('HSET', meta, 'epoch', candidate)
  redis.call('PEXPIRE', meta, meta_ms)
  return candidate
end

-- Drops the expired publications at the head (appended in order, they expire in order).
local function trim(stream, now)
  while true do
    local head = redis.call('XRANGE', stream, '-', '+', 'COUNT', 32)
    local gone = {}
    for _, entry in ipairs(head) do
      if tonumber(entry[2][4]) > now then
        break
      end
      gone[#gone + 1] = entry[1]
    end
    if #gone > 0 then
      redis.call('XDEL', stream, unpack(gone))
    end
    if #gone < 32 then
      return
    end
  end
end
"""

#: KEYS: stream, meta. ARGV: candidate epoch, data, size, ttl ms, meta ttl ms, and
#: optionally a pub/sub channel and an open envelope to publish with the position.
#: Returns {offset, epoch}.
APPEND = (
    _FUNCTIONS
    + """
local now = now_ms()
local epoch = epoch_of(KEYS[1], KEYS[2], ARGV[1], ARGV[5])
trim(KEYS[1], now)
local offset = redis.call('HINCRBY', KEYS[2], 'top', 1)
redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[3], string.format('%d-0', offset),
  'd', ARGV[2], 'x', string.format('%d', now + tonumber(ARGV[4])))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
if ARGV[6] then
  redis.call('PUBLISH', ARGV[6], ARGV[7] .. cmsgpack.pack('offset') .. cmsgpack.pack(offset)
    .. cmsgpack.pack('epoch') .. cmsgpack.pack(epoch))
end
return {offset, epoch}
"""
)

#: KEYS: stream, meta. ARGV: candidate epoch, meta ttl ms, the first ID wanted ('' for
#: the oldest kept), limit (-1: none; without a first ID, the last ``limit``).
#: Returns {epoch, top, oldest kept ID or '', ID, data, ID, data, ...}, oldest first.
READ = (
    _FUNCTIONS
    + """
local epoch = epoch_of(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
trim(KEYS[1], now_ms())
local top = redis.call('HGET', KEYS[2], 'top') or '0'
local head = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
local reply = {epoch, top, ''}
if #head > 0 then
  reply[3] = head[1][1]
end
local limit = tonumber(ARGV[4])
if limit == 0 then
  return reply
end
local found
if ARGV[3] ~= '' then
  if limit < 0 then
    found = redis.call('XRANGE', KEYS[1], ARGV[3], '+')
  else
    found = redis.call('XRANGE', KEYS[1], ARGV[3], '+', 'COUNT', limit)
  end
elseif limit < 0 then
  found = redis.call('XRANGE', KEYS[1], '-', '+')
else
  local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', limit)
  found = {}
  for i = #last, 1, -1 do
    found[#found + 1] = last[i]
  end
end
for _, entry in ipairs(found) do
  reply[#reply + 1] = entry[1]
  reply[#reply + 1] = entry[2][2]
end
return reply
"""
)


class RedisHistory(HistoryStore):
    """Channel history in Redis streams, shared by every node on that Redis.

    Args:
        client: a ``redis.asyncio.Redis`` (the broker's).
        prefix: the start of every key name.
        url: the server's URL without its password (for errors).
        timeout: seconds an append or a read may take.
        meta_ttl: seconds a stream's epoch and top offset outlive its last append (at
            least the stream's ``ttl``): positions stay valid across quiet periods
            this long.
    """

    def __init__(
        self,
        client: Any,
        *,
        prefix: str = "gobstopper:",
        url: str = "redis",
        timeout: float = 2.0,
        meta_ttl: float = DEFAULT_META_TTL,
    ) -> None:
        self.prefix = prefix
        self._url = url
        self._timeout = timeout
        self._meta_ms = _ms(meta_ttl)
        # Sent by SHA; redis-py loads a script again when Redis answers NOSCRIPT (a
        # restarted or flushed server), and before a pipeline that uses it.
        self._append: Any = client.register_script(APPEND)
        self._read: Any = client.register_script(READ)
        # Direct appends and reads take a connection each from the client's pool, which
        # refuses past its size ("Too many connections"): a burst of subscriptions
        # resuming at once waits here for a slot instead.
        self._slots = asyncio.Semaphore(_CONCURRENT)

    def keys(self, stream: str) -> list[str]:
        """The stream key and the meta key of ``stream``."""
        return [f"{self.prefix}history:{stream}", f"{self.prefix}history-meta:{stream}"]

    async def append(self, channel: str, data: bytes, size: int, ttl: float) -> Position:
        try:
            reply = await asyncio.wait_for(
                self._bounded(self.run_append(None, channel, data, size, ttl)), self._timeout
            )
        except _ERRORS as exc:
            raise BrokerUnavailable(self._url, _reason(exc)) from exc
        return self.position(reply)

    def run_append(
        self,
        client: Any,
        stream: str,
        data: bytes,
        size: int,
        ttl: float,
        publish: tuple[str, bytes] | None = None,
    ) -> Awaitable[Any]:
        """Run the append script on ``client`` (a pipeline; None: this store's client),
        publishing ``publish`` (a full channel name, an open envelope) with the
        position. Its reply goes to ``position``."""
        ttl_ms = _ms(ttl)
        args: list[bytes | str | int] = [
            _new_epoch(),
            data,
            max(0, size),
            ttl_ms,
            max(ttl_ms, self._meta_ms),
        ]
        if publish is not None:
            args += publish
        result: Awaitable[Any] = self._append(keys=self.keys(stream), args=args, client=client)
        return result

    async def _bounded(self, command: Awaitable[Any]) -> Any:
        async with self._slots:
            return await command

    @staticmethod
    def position(reply: Sequence[Any]) -> Position:
        """The position in an append script's reply."""
        offset, epoch = reply
        return Position(int(offset), _text(epoch))

    async def read(
        self, channel: str, since: int | None = None, limit: int | None = None
    ) -> Window:
        start = "" if since is None else f"{min(max(since, 0) + 1, _MAX_ID)}-0"
        # A read of a channel never published makes its meta (so that the position it
        # hands out holds), for an hour only: names a client merely asked about do not
        # pile up for the month a published channel's meta lives.
        meta_ms = min(self._meta_ms, _READ_META_MS)
        args = [_new_epoch(), meta_ms, start, -1 if limit is None else max(0, limit)]
        try:
            reply = await asyncio.wait_for(
                self._bounded(self._read(keys=self.keys(channel), args=args)), self._timeout
            )
        except _ERRORS as exc:
            raise BrokerUnavailable(self._url, _reason(exc)) from exc
        epoch, top, oldest = _text(reply[0]), int(reply[1]), reply[2]
        found = [
            Publication(_offset(reply[i]), bytes(reply[i + 1])) for i in range(3, len(reply), 2)
        ]
        first = _offset(oldest) if oldest else top + 1
        return Window(found, Position(top, epoch), first)


_READ_META_MS = 3_600_000

#: Direct appends and reads in flight at once, at most (the pool holds 100 connections).
_CONCURRENT = 32


def _new_epoch() -> str:
    # Used only when the stream has no meta hash; as the in-memory store's epochs.
    return uuid.uuid4().hex[:16]


def _ms(seconds: float) -> int:
    # Rounded up, never 0: PEXPIRE 0 would delete the key at once.
    return max(1, math.ceil(seconds * 1000))


def _offset(entry_id: bytes | str) -> int:
    return int(_text(entry_id).partition("-")[0])


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
