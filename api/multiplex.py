"""Multiplexed Redis connections for the decision's hot path.

redis-py's asyncio client leases a pooled connection for every command and runs ~100 µs of
Python around it (measured here: an HGETALL costs ~95 µs of the API's CPU one at a time, ~45
with eight in flight). A decision is one or two script calls, so that was half of its cost.
This sends each command at once on one long-lived connection per Redis node, shared by every
request of the process, and matches the answers in order (Redis answers a connection's
commands in the order they were sent): packing and parsing are hiredis's (C), and the
commands of concurrent requests leave in the same writes and come back in the same reads,
so the cost per command falls as load rises (~37 µs one at a time, ~10 with eight in flight).

Only what the hot path needs: scripts (EVALSHA, loading them on NOSCRIPT) and plain commands
on one slot. Everything else — and anything unusual on this path: TLS, a cluster redirection
(MOVED, ASK, TRYAGAIN, CLUSTERDOWN), a slot not yet known, a cluster node that cannot be
reached — is redis-py's: the caller gets `Unsupported` and makes the call through redis-py,
which also refreshes its cluster map.

A connection that breaks or leaves a command unanswered for `timeout_s` is closed: its
pending commands fail with redis-py's `ConnectionError` / `TimeoutError` (a 503 for the
client, as with redis-py), and the next command connects again.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Sequence
from typing import Any, Final, cast

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError, SlotNotCoveredError
from redis.exceptions import TimeoutError as RedisTimeoutError

from config.connect import is_cluster

_REDIRECTIONS: Final = ("MOVED ", "ASK ", "TRYAGAIN", "CLUSTERDOWN")
_CONNECT_ATTEMPTS: Final = 3
CLIENT_NAME: Final = "nudge-api-multiplexed"


class Unsupported(Exception):
    """This call is redis-py's to make (TLS, a cluster redirection, an unknown slot, an
    unreachable cluster node)."""


class NotSent(RedisConnectionError):
    """The connection was lost before this deferred command (`send_later`) was written:
    Redis never saw it, so it may be sent again."""


class _Connection(asyncio.Protocol):
    """One socket to one Redis node; commands are answered first in, first out."""

    def __init__(self, timeout_s: float) -> None:
        self.reader = hiredis.Reader(replyError=ResponseError)
        self.pending: deque[tuple[asyncio.Future[Any], float]] = deque()
        self.transport: asyncio.Transport | None = None
        self.timeout_s = timeout_s
        self._watch: asyncio.TimerHandle | None = None
        self._why: Exception | None = None
        # deferred commands (`send_later`), packed; their futures are the last of `pending`
        self._outbox: list[bytes] = []
        self._flushing: asyncio.Handle | None = None

    @property
    def usable(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio's, but have their methods
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        why = self._why or RedisConnectionError(f"connection to Redis lost ({exc or 'closed'})")
        unsent = NotSent(f"connection to Redis lost before the command was sent ({why})")
        first_unsent = len(self.pending) - len(self._outbox)
        for i, (fut, _) in enumerate(self.pending):
            if not fut.done():
                fut.set_exception(unsent if i >= first_unsent else why)
        self.pending.clear()
        if self._watch is not None:
            self._watch.cancel()
        if self._flushing is not None:
            self._flushing.cancel()
        self._outbox.clear()

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        gets, pending = self.reader.gets, self.pending
        while (reply := gets()) is not False:
            fut, _ = pending.popleft()
            if fut.done():  # its caller was cancelled
                continue
            if isinstance(reply, ResponseError):
                fut.set_exception(reply)
            else:
                fut.set_result(reply)

    def send(self, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        return self.send_all([args])[0]

    def send_all(self, commands: Sequence[tuple[Any, ...]]) -> list[asyncio.Future[Any]]:
        """Send `commands` in one write, with the deferred ones before them; their replies'
        futures, in order."""
        assert self.transport is not None
        pack = hiredis.pack_command
        # packed before any future is queued: a command that cannot be packed must not
        # leave a future that would take another command's reply
        data = pack(commands[0]) if len(commands) == 1 else b"".join([pack(c) for c in commands])
        futs = self._expect(len(commands))
        if self._outbox:
            out, self._outbox = self._outbox, []
            data = b"".join([*out, data])
        self.transport.write(data)
        return futs

    def send_later(self, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        """Send a command with this connection's next write in the current step of the
        event loop, or at the end of that step if none comes: under load, commands nobody
        waits for (the end of a decision) then leave with other requests' commands instead
        of costing a write each, and are never held back past the step that made them.
        Its reply's future (`NotSent` if the connection was lost before it was written).
        Redis runs it before anything sent after it on this connection, as with `send`."""
        data = hiredis.pack_command(args)
        (fut,) = self._expect(1)
        self._outbox.append(data)
        if self._flushing is None:
            self._flushing = asyncio.get_running_loop().call_soon(self._flush)
        return fut

    def _flush(self) -> None:
        self._flushing = None
        if self._outbox and self.usable:
            assert self.transport is not None
            out, self._outbox = self._outbox, []
            self.transport.write(b"".join(out))

    def _expect(self, n: int) -> list[asyncio.Future[Any]]:
        """Futures for the replies of `n` commands about to be sent, in `pending`."""
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        futs: list[asyncio.Future[Any]] = []
        for _ in range(n):
            fut: asyncio.Future[Any] = loop.create_future()
            self.pending.append((fut, now))
            futs.append(fut)
        if self._watch is None:
            self._arm(self.timeout_s)
        return futs

    def _arm(self, delay: float) -> None:
        self._watch = asyncio.get_running_loop().call_later(delay, self._check)

    def _check(self) -> None:
        """The watchdog: one timer per connection, not one per command."""
        self._watch = None
        if not self.pending:
            return
        waited = time.monotonic() - self.pending[0][1]
        if waited < self.timeout_s:
            self._arm(self.timeout_s - waited)
        elif self.transport is not None:
            self._why = RedisTimeoutError(f"Redis did not answer within {self.timeout_s:g} s")
            self.transport.abort()


class Multiplexed:
    """Commands of the whole process to each Redis node of `client`, one connection each."""

    def __init__(self, client: aioredis.Redis, timeout_s: float = 5.0) -> None:
        self._client = client
        self._cluster = is_cluster(client)
        self._timeout_s = timeout_s
        self._conns: dict[tuple[str, int | str], _Connection] = {}
        self._connecting: dict[tuple[str, int | str], asyncio.Future[_Connection]] = {}
        if self._cluster:
            self._options: dict[str, Any] = dict(getattr(client, "connection_kwargs", {}))
            cls = self._options.get("connection_class")
        else:
            self._options = dict(client.connection_pool.connection_kwargs)
            cls = client.connection_pool.connection_class
        tls = "ssl" in getattr(cls, "__name__", "").lower() or self._options.get("ssl")
        self.supported = not tls and not self._options.get("ssl_context")

    async def script(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        """EVALSHA `script` on the node of `keys` (one slot), loading it there if needed."""
        conn = await self._connection(keys[0])
        command = ("EVALSHA", script.sha, len(keys), *keys, *args)
        try:
            return await self._reply(conn.send(command))
        except ResponseError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        await self._reply(conn.send(("SCRIPT", "LOAD", script.script)))
        return await self._reply(conn.send(command))

    async def execute(self, key: str, *args: Any) -> Any:
        """A command on the node of `key`."""
        conn = await self._connection(key)
        return await self._reply(conn.send(args))

    def script_later(
        self, script: AsyncScript, keys: list[str], args: list[Any]
    ) -> asyncio.Future[Any] | None:
        """EVALSHA `script` without a task, with the next write to the node of `keys` in this
        step of the event loop (`_Connection.send_later`), if that node has a connection open
        (else None: make the call with `script`). Its reply's future may end with NOSCRIPT
        (the script flushed since it was loaded) or a cluster redirection: the caller then
        makes the call again with `script`."""
        if not self.supported:
            return None
        try:
            conn = self._conns.get(self._address(keys[0]))
        except Unsupported:
            return None
        if conn is None or not conn.usable:
            return None
        return conn.send_later(("EVALSHA", script.sha, len(keys), *keys, *args))

    async def execute_all(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Several commands, each on the node of its key (its second element, as in
        ``("XADD", key, ...)``), sent in one write per node. The replies in order: each the
        command's result, or the exception it ended with (`Unsupported`: redis-py's to make;
        nothing else of it was done)."""
        by_conn: dict[int, tuple[_Connection, list[int]]] = {}
        out: list[Any] = [None] * len(commands)
        for i, command in enumerate(commands):
            try:
                conn = await self._connection(command[1])
            except (Unsupported, RedisConnectionError, RedisTimeoutError) as exc:
                out[i] = exc
                continue
            by_conn.setdefault(id(conn), (conn, []))[1].append(i)
        waits: list[tuple[int, asyncio.Future[Any]]] = []
        for conn, idx in by_conn.values():
            waits += zip(idx, conn.send_all([commands[i] for i in idx]), strict=True)
        for i, fut in waits:
            try:
                out[i] = await self._reply(fut)
            except (Unsupported, ResponseError, RedisConnectionError, RedisTimeoutError) as exc:
                out[i] = exc
        return out

    async def aclose(self) -> None:
        for conn in self._conns.values():
            if conn.transport is not None:
                conn.transport.close()
        self._conns.clear()

    @staticmethod
    async def _reply(fut: asyncio.Future[Any]) -> Any:
        try:
            return await fut
        except ResponseError as exc:
            if str(exc).startswith(_REDIRECTIONS):
                raise Unsupported(str(exc)) from exc
            raise

    async def _connection(self, key: str) -> _Connection:
        if not self.supported:
            raise Unsupported("TLS connections are redis-py's")
        address = self._address(key)
        conn = self._conns.get(address)
        if conn is not None and conn.usable:
            return conn
        # one connection attempt per node, whoever asks while it is under way
        connecting = self._connecting.get(address)
        if connecting is None:
            connecting = asyncio.ensure_future(self._connect(address))
            self._connecting[address] = connecting
            connecting.add_done_callback(lambda _: self._connecting.pop(address, None))
        try:
            return await asyncio.shield(connecting)
        except RedisConnectionError as exc:
            if self._cluster:  # a node gone (fail-over): redis-py finds the slot's new owner
                raise Unsupported(str(exc)) from exc
            raise

    def _address(self, key: str) -> tuple[str, int | str]:
        if self._cluster:
            try:  # redis-py's own map of the cluster's slots
                node = cast(AsyncRedisCluster, self._client).get_node_from_key(key)
            except SlotNotCoveredError as exc:
                raise Unsupported("slot not known yet") from exc
            assert node is not None
            return node.host, node.port
        if "path" in self._options:
            return "unix", self._options["path"]
        return self._options.get("host", "localhost"), int(self._options.get("port", 6379))

    async def _connect(self, address: tuple[str, int | str]) -> _Connection:
        loop = asyncio.get_running_loop()
        host, port = address
        delay = 0.01
        for attempt in range(1, _CONNECT_ATTEMPTS + 1):
            try:
                async with asyncio.timeout(self._timeout_s):
                    if host == "unix":
                        _, conn = await loop.create_unix_connection(
                            lambda: _Connection(self._timeout_s), str(port)
                        )
                    else:
                        _, conn = await loop.create_connection(
                            lambda: _Connection(self._timeout_s), host, int(port)
                        )
                break
            except (OSError, TimeoutError) as exc:
                if attempt == _CONNECT_ATTEMPTS:
                    raise RedisConnectionError(
                        f"cannot connect to Redis at {host}:{port}: {exc}"
                    ) from exc
                await asyncio.sleep(delay)
                delay *= 4
        await self._handshake(conn)
        self._conns[address] = conn
        return conn

    async def _handshake(self, conn: _Connection) -> None:
        """AUTH and SELECT as the redis-py client's own connections do, and a name that
        CLIENT LIST shows."""
        opts = self._options
        password, username = opts.get("password"), opts.get("username")
        replies = []
        if password:
            auth = ("AUTH", username, password) if username else ("AUTH", password)
            replies.append(conn.send(auth))
        if not self._cluster and int(opts.get("db") or 0):
            replies.append(conn.send(("SELECT", int(opts["db"]))))
        replies.append(conn.send(("CLIENT", "SETNAME", CLIENT_NAME)))
        try:
            for reply in replies:
                await reply
        except ResponseError:
            assert conn.transport is not None
            conn.transport.close()
            raise
