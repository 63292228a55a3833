"""The decision path's multiplexed Redis connections (`api.multiplex`) against a real Redis
and a real Redis Cluster: answers matched to their commands under concurrency, scripts loaded
on NOSCRIPT, a broken or silent connection failing its commands and the next one reconnecting,
AUTH and SELECT from the URL, routing by slot, and redirections left to redis-py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
import redis
import redis.asyncio as aioredis
import uvloop
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from api.multiplex import CLIENT_NAME, Multiplexed, NotSent, Unsupported
from cli.embedded import LocalCluster, RedisServer
from config.connect import async_client
from models import scripts
from tests.conftest import ON_BOTH

pytestmark = pytest.mark.integration
T = TypeVar("T")


def run(make: Callable[[aioredis.Redis, Multiplexed], Awaitable[T]], url: str,
        cluster: bool = False, timeout_s: float = 5.0, uv: bool = False) -> T:  # fmt: skip
    async def main() -> T:
        client = async_client(url, cluster=cluster)
        if cluster:
            await client.ping()  # the cluster client learns the slots on first use
        mux = Multiplexed(client, timeout_s=timeout_s)
        try:
            return await make(client, mux)
        finally:
            await mux.aclose()
            await client.aclose()

    return uvloop.run(main()) if uv else asyncio.run(main())


def mux_ids(rclient: redis.Redis) -> list[int]:
    """The ids of the multiplexed connections (their name) on a single Redis."""
    listed: Any = rclient.client_list()
    return [int(c["id"]) for c in listed if c.get("name") == CLIENT_NAME]


@ON_BOTH
@pytest.mark.parametrize("uv", [False, True], ids=["asyncio", "uvloop"])
def test_concurrent_commands_get_their_own_answers(
    redis_url: str, cluster: bool, prefix: str, uv: bool
) -> None:
    keys = [f"{prefix}:{{c{i}}}:n" for i in range(300)]

    async def go(client: aioredis.Redis, mux: Multiplexed) -> list[Any]:
        await asyncio.gather(*(mux.execute(k, "SET", k, i) for i, k in enumerate(keys)))
        return list(await asyncio.gather(*(mux.execute(k, "GET", k) for k in keys)))

    assert run(go, redis_url, cluster, uv=uv) == [str(i).encode() for i in range(300)]


@ON_BOTH
def test_scripts_answer_as_through_redis_py_and_load_on_noscript(
    redis_url: str, cluster: bool, prefix: str, rclient: redis.Redis
) -> None:
    keys = [f"{prefix}:p:{{c}}", f"{prefix}:l:{{c}}", f"{prefix}:h:{{c}}"]
    rclient.set(keys[0], b"\x00profile")
    rclient.zadd(keys[2], {"web|m1|d1": 1000, "email|m2|d2": 2000})

    async def go(client: aioredis.Redis, mux: Multiplexed) -> tuple[Any, Any, Any]:
        script = client.register_script(scripts.DECISION_READ)
        through_redis_py = await script(keys=keys, args=[1500])
        for node in rclient.get_primaries() if cluster else [rclient]:  # type: ignore[attr-defined]
            (rclient.get_redis_connection(node) if cluster else rclient).script_flush()  # type: ignore[attr-defined]
        first = await mux.script(script, keys, [1500])  # NOSCRIPT: loaded, then run
        return through_redis_py, first, await mux.script(script, keys, [1500])

    expected, first, again = run(go, redis_url, cluster)
    assert expected == [b"\x00profile", None, [b"email|m2|d2", b"2000"], 0]
    assert first == expected and again == expected


@ON_BOTH
def test_commands_sent_together_each_go_to_their_node(
    redis_url: str, cluster: bool, prefix: str, rclient: redis.Redis
) -> None:
    """`execute_all`: one write per node, the replies in order; a command that fails keeps
    its error in its place and the others are done."""
    keys = [f"{prefix}:{{c{i}}}:s" for i in range(20)]
    rclient.set(keys[3], "not a stream")

    async def go(client: aioredis.Redis, mux: Multiplexed) -> list[Any]:
        return await mux.execute_all([("XADD", k, "*", "f", i) for i, k in enumerate(keys)])

    replies = run(go, redis_url, cluster)
    assert isinstance(replies[3], ResponseError) and "WRONGTYPE" in str(replies[3])
    for i, k in enumerate(keys):
        if i != 3:
            ((entry_id, fields),) = rclient.xrange(k)
            assert replies[i] == entry_id and fields == {b"f": str(i).encode()}


@ON_BOTH
def test_a_script_sent_at_once_needs_an_open_connection(
    redis_url: str, cluster: bool, prefix: str, rclient: redis.Redis
) -> None:
    """`script_later`: None until the node has a connection; then the reply's future, which
    ends with NOSCRIPT once the scripts were flushed (the caller goes the full way)."""
    keys = [f"{prefix}:p:{{n}}", f"{prefix}:l:{{n}}", f"{prefix}:h:{{n}}"]

    async def go(client: aioredis.Redis, mux: Multiplexed) -> tuple[Any, Any, Any]:
        script = client.register_script(scripts.DECISION_READ)
        before = mux.script_later(script, keys, [0])
        await mux.script(script, keys, [0])  # connects (and loads the script)
        sent = mux.script_later(script, keys, [0])
        assert sent is not None
        answer = await sent
        for node in rclient.get_primaries() if cluster else [rclient]:  # type: ignore[attr-defined]
            (rclient.get_redis_connection(node) if cluster else rclient).script_flush()  # type: ignore[attr-defined]
        flushed = mux.script_later(script, keys, [0])
        assert flushed is not None
        with pytest.raises(ResponseError, match="NOSCRIPT"):
            await flushed
        return before, answer, await mux.script(script, keys, [0])

    before, answer, again = run(go, redis_url, cluster)
    assert before is None and answer == [None, None, [], 0] and again == answer


class Counting:
    """A transport that records its writes (uvloop's cannot be patched)."""

    def __init__(self, transport: asyncio.Transport, writes: list[bytes]) -> None:
        self._transport, self._writes = transport, writes

    def write(self, data: bytes) -> None:
        self._writes.append(data)
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


@pytest.mark.parametrize("uv", [False, True], ids=["asyncio", "uvloop"])
def test_a_deferred_script_rides_with_the_next_write_or_goes_alone(
    redis_url: str, prefix: str, uv: bool
) -> None:
    """`script_later`: the command waits for the connection's next write in the same step of
    the event loop and is run before what that write carries (one write for both); with no
    write to ride with, it goes alone at the end of the step."""
    key = f"{prefix}:{{d}}:v"
    setter = "redis.call('SET', KEYS[1], ARGV[1]); return ARGV[1]"

    async def go(client: aioredis.Redis, mux: Multiplexed) -> tuple[Any, ...]:
        script = client.register_script(setter)
        await mux.script(script, [key], ["0"])  # connects (and loads the script)
        conn = next(iter(mux._conns.values()))
        assert conn.transport is not None
        writes: list[bytes] = []
        conn.transport = Counting(conn.transport, writes)  # type: ignore[assignment]
        first = mux.script_later(script, [key], ["1"])
        assert first is not None and not writes  # not sent yet
        got = await mux.execute(key, "GET", key)  # one write: the SET, then the GET
        riding = len(writes)
        alone = mux.script_later(script, [key], ["2"])
        assert alone is not None
        await asyncio.sleep(0)  # the end of this step: written
        alone_written = len(writes)
        reply = await asyncio.wait_for(alone, 1.0)
        return got, riding, await first, reply, alone_written

    got, riding, first, reply, written = run(go, redis_url, uv=uv)
    assert got == b"1" and riding == 1 and first == b"1"
    assert reply == b"2" and written == 2


def test_a_deferred_command_lost_with_its_connection_says_it_was_never_sent(
    redis_url: str, prefix: str
) -> None:
    """A command still waiting for its write when the connection breaks fails with `NotSent`
    (safe to send again); one already written fails with a plain connection error."""
    key = f"{prefix}:{{n}}:v"

    async def go(client: aioredis.Redis, mux: Multiplexed) -> tuple[Any, Any]:
        await mux.execute(key, "PING")  # connects
        conn = next(iter(mux._conns.values()))
        written = conn.send(("BLPOP", key, 10))  # on its way, answered only in 10 s
        deferred = conn.send_later(("SET", key, "x"))
        assert conn.transport is not None
        conn.transport.abort()  # before the end of this step
        results = await asyncio.gather(written, deferred, return_exceptions=True)
        return results[0], results[1]

    written, deferred = run(go, redis_url)
    assert isinstance(written, RedisConnectionError) and not isinstance(written, NotSent)
    assert isinstance(deferred, NotSent)
    assert redis.Redis.from_url(redis_url).get(key) is None


def test_a_broken_connection_fails_its_commands_and_the_next_reconnects(
    redis_url: str, rclient: redis.Redis, prefix: str
) -> None:
    key = f"{prefix}:q"

    async def go(client: aioredis.Redis, mux: Multiplexed) -> Any:
        await mux.execute(key, "PING")
        waiting = asyncio.ensure_future(mux.execute(key, "BLPOP", key, 10))
        await asyncio.sleep(0.1)
        (conn_id,) = mux_ids(rclient)
        rclient.client_kill_filter(_id=conn_id)
        with pytest.raises(RedisConnectionError):
            await waiting
        await mux.execute(key, "SET", key, "back")
        assert mux_ids(rclient) != [conn_id]
        return await mux.execute(key, "GET", key)

    assert run(go, redis_url) == b"back"


def test_a_command_left_unanswered_times_out_and_the_next_reconnects(
    redis_url: str, prefix: str
) -> None:
    key = f"{prefix}:q"

    async def go(client: aioredis.Redis, mux: Multiplexed) -> tuple[float, Any]:
        started = time.monotonic()
        with pytest.raises(RedisTimeoutError):
            await mux.execute(key, "BLPOP", key, 5)  # blocks past the 0.3 s timeout
        waited = time.monotonic() - started
        return waited, await mux.execute(key, "PING")

    waited, pong = run(go, redis_url, timeout_s=0.3)
    assert 0.3 <= waited < 4 and pong == b"PONG"


def test_errors_are_redis_py_errors(redis_url: str, prefix: str) -> None:
    key = f"{prefix}:s"

    async def go(client: aioredis.Redis, mux: Multiplexed) -> None:
        await mux.execute(key, "SET", key, "text")
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await mux.execute(key, "HGETALL", key)
        assert await mux.execute(key, "GET", key) == b"text"  # the connection is still fine

    run(go, redis_url)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis that asks for a password (set once it is up)."""
    server = RedisServer(tmp_path_factory.mktemp("secured"), aof=False).start()
    redis.Redis(port=server.port).config_set("requirepass", "s3cret")
    yield server
    server.stop()


def test_auth_and_database_come_from_the_url(secured: RedisServer) -> None:
    url = f"redis://:s3cret@127.0.0.1:{secured.port}/2"

    async def go(client: aioredis.Redis, mux: Multiplexed) -> Any:
        return await mux.execute("k", "SET", "k", "in db 2")

    run(go, url)
    assert redis.Redis(port=secured.port, password="s3cret", db=2).get("k") == b"in db 2"
    assert redis.Redis(port=secured.port, password="s3cret", db=0).get("k") is None

    async def wrong(client: aioredis.Redis, mux: Multiplexed) -> Any:
        return await mux.execute("k", "GET", "k")

    with pytest.raises(ResponseError):
        run(wrong, f"redis://:nope@127.0.0.1:{secured.port}/2")


def test_cluster_routes_by_slot_and_leaves_redirections_to_redis_py(
    redis_cluster: LocalCluster, prefix: str
) -> None:
    url = redis_cluster.url
    a, b = f"{prefix}:{{a}}", f"{prefix}:{{b}}"

    async def go(client: aioredis.Redis, mux: Multiplexed) -> tuple[Any, Any]:
        await asyncio.gather(mux.execute(a, "SET", a, "A"), mux.execute(b, "SET", b, "B"))
        # a key routed as `a` but of another node's slot: MOVED, redis-py's to follow
        other = next(f"{prefix}:{{x{i}}}" for i in range(1000)
                     if client.get_node_from_key(f"{prefix}:{{x{i}}}").name  # type: ignore[attr-defined]
                     != client.get_node_from_key(a).name)  # type: ignore[attr-defined]  # fmt: skip
        with pytest.raises(Unsupported, match="MOVED"):
            await mux.execute(a, "GET", other)
        return await mux.execute(a, "GET", a), await mux.execute(b, "GET", b)

    assert run(go, url, cluster=True) == (b"A", b"B")


def test_tls_is_left_to_redis_py() -> None:
    async def go() -> None:
        client = aioredis.Redis.from_url("rediss://127.0.0.1:1/0")
        mux = Multiplexed(client)
        assert not mux.supported
        with pytest.raises(Unsupported):
            await mux.execute("k", "GET", "k")
        await client.aclose()
        assert not Multiplexed(async_client("rediss://127.0.0.1:1", cluster=True)).supported

    asyncio.run(go())


def test_a_unix_socket_url(tmp_path_factory: pytest.TempPathFactory) -> None:
    where = tmp_path_factory.mktemp("unix")
    sock = where / "redis.sock"
    server = RedisServer(where, aof=False, extra_args=["--unixsocket", str(sock)]).start()
    try:

        async def go(client: aioredis.Redis, mux: Multiplexed) -> Any:
            await mux.execute("k", "SET", "k", "over the socket")
            return await mux.execute("k", "GET", "k")

        assert run(go, f"unix://{sock}?db=0") == b"over the socket"
        assert redis.Redis(port=server.port).get("k") == b"over the socket"
    finally:
        server.stop()
