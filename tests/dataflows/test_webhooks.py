"""`nudge webhooks` against a real Redis and a local HTTP receiver: signatures verify, retries on
5xx and timeouts, nothing lost while the receiver is down, dead letters after the limit, and
a restart resumes what was read but never settled."""

from __future__ import annotations

import asyncio
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import orjson
import pytest
import redis

from config.connect import async_client
from dataflows.webhooks import Deliverer, WebhookParams, group_for
from models.keys import Keys
from models.webhooks import SignatureError, backoff_s, headers, verify
from tests.conftest import ON_BOTH

pytestmark = pytest.mark.integration

SECRET = b"whsec-test"


class Receiver:
    """A local HTTP endpoint answering from a script: an int status, or "slow" (sleeps past
    the client's timeout, then 200); once the script is used up, 200."""

    def __init__(self, script: list[int | str] | None = None, port: int = 0) -> None:
        self.script = list(script or [])
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                with outer.lock:
                    outer.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    step = outer.script.pop(0) if outer.script else 200
                if step == "slow":
                    time.sleep(0.6)
                    step = 200
                self.send_response(int(step))
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread: threading.Thread | None = None

    def start(self) -> Receiver:
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def ids(self) -> list[str]:
        with self.lock:
            return [h["webhook-id"] for h, _ in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


PARAMS = WebhookParams(SECRET, max_attempts=4, timeout_s=0.3, backoff_s=0.05, backoff_cap_s=0.2)


def fire(rclient: redis.Redis, keys: Keys, n: int, start: int = 0) -> list[str]:
    ids = []
    for i in range(start, start + n):
        tid = f"t{i}"
        doc = {"id": tid, "type": "abandoned_cart", "customer_id": f"c{i}", "value": i}
        fields = {"id": tid, "type": doc["type"], "customer_id": doc["customer_id"],
                  "data": orjson.dumps(doc)}  # fmt: skip
        rclient.xadd(keys.triggers(), fields)  # type: ignore[arg-type]
        ids.append(tid)
    return ids


def deliver(
    redis_url: str,
    keys: Keys,
    url: str,
    until: Callable[[Deliverer], bool],
    params: WebhookParams = PARAMS,
    timeout: float = 10.0,
    consumer: str = "test",
    during: Callable[[float], None] | None = None,
    cluster: bool = False,
) -> Deliverer:
    """Run a deliverer until `until(deliverer)` (or fail after `timeout` s); `during(elapsed)`
    is called between rounds (to bring a receiver up, say)."""

    async def go() -> Deliverer:
        client = async_client(redis_url, cluster=cluster)
        async with httpx.AsyncClient(timeout=params.timeout_s) as http:
            d = Deliverer(client, http, keys, url, params, consumer=consumer,
                          rng=random.Random(7))  # fmt: skip
            await d.setup()
            t0 = time.monotonic()
            while not until(d):
                assert time.monotonic() - t0 < timeout, "the deliverer did not get there"
                await d.run_once(block_ms=20)
                if during is not None:
                    during(time.monotonic() - t0)
        await client.aclose()
        return d

    return asyncio.run(go())


def pending(rclient: redis.Redis, keys: Keys, url: str) -> int:
    info: Any = rclient.xpending(keys.triggers(), group_for(url))
    return int(info["pending"])


@ON_BOTH
def test_each_trigger_is_delivered_signed(
    redis_url: str, rclient: redis.Redis, prefix: str, receiver: Receiver, cluster: bool
) -> None:
    keys = Keys(prefix)
    ids = fire(rclient, keys, 3)
    deliver(redis_url, keys, receiver.url, lambda d: d.delivered == 3, cluster=cluster)
    assert sorted(receiver.ids()) == ids
    for got, body in receiver.received:
        assert verify(SECRET, got, body, time.time()) == got["webhook-id"]
        assert orjson.loads(body)["id"] == got["webhook-id"]
    assert pending(rclient, keys, receiver.url) == 0


def test_retries_on_5xx_and_timeouts(
    redis_url: str, rclient: redis.Redis, prefix: str, receiver: Receiver
) -> None:
    keys = Keys(prefix)
    receiver.script = [500, "slow", 503]
    (tid,) = fire(rclient, keys, 1)
    d = deliver(redis_url, keys, receiver.url, lambda d: d.delivered == 1)
    assert receiver.ids() == [tid] * 4  # 500, timeout, 503, then accepted: the same id
    assert (d.failed, d.dead) == (3, 0)
    assert pending(rclient, keys, receiver.url) == 0
    assert not rclient.exists(keys.webhook_due(group_for(receiver.url)))


def test_nothing_is_lost_while_the_receiver_is_down(
    redis_url: str, rclient: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    with socket.socket() as probe:  # a free port where nothing listens yet: refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/hook"
    ids = fire(rclient, keys, 5)
    up: list[Receiver] = []

    def bring_up(elapsed: float) -> None:
        if elapsed > 0.5 and not up:  # down for half a second, several failed attempts
            up.append(Receiver(port=port).start())

    params = WebhookParams(SECRET, max_attempts=50, timeout_s=0.3, backoff_s=0.05,
                           backoff_cap_s=0.2)  # fmt: skip
    d = deliver(redis_url, keys, url, lambda d: d.delivered == 5, params, during=bring_up)
    try:
        assert sorted(set(up[0].ids())) == ids and d.failed >= 5 and d.dead == 0
        assert pending(rclient, keys, url) == 0
    finally:
        up[0].stop()


@ON_BOTH
def test_dead_letter_after_the_limit(
    redis_url: str, rclient: redis.Redis, prefix: str, receiver: Receiver, cluster: bool
) -> None:
    keys = Keys(prefix)
    receiver.script = [500] * 10
    (tid,) = fire(rclient, keys, 1)
    d = deliver(redis_url, keys, receiver.url, lambda d: d.dead == 1, cluster=cluster)
    assert receiver.ids() == [tid] * PARAMS.max_attempts
    ((_, dead),) = rclient.xrange(keys.webhook_deadletter())
    assert dead[b"id"] == tid.encode() and dead[b"attempts"] == b"4"
    assert dead[b"error"] == b"HTTP 500" and dead[b"url"] == receiver.url.encode()
    assert pending(rclient, keys, receiver.url) == 0 and d.delivered == 0


@ON_BOTH
def test_a_restart_delivers_what_was_read_but_never_settled(
    redis_url: str, rclient: redis.Redis, prefix: str, receiver: Receiver, cluster: bool
) -> None:
    keys = Keys(prefix)
    ids = fire(rclient, keys, 2)
    group = group_for(receiver.url)
    rclient.xgroup_create(keys.triggers(), group, id="0")
    rclient.xreadgroup(group, "crashed", {keys.triggers(): ">"}, count=2)  # then it died
    deliver(
        redis_url, keys, receiver.url, lambda d: d.delivered == 2, consumer="new", cluster=cluster
    )
    assert sorted(receiver.ids()) == ids and pending(rclient, keys, receiver.url) == 0


def test_signatures_refuse_tampering_replay_and_wrong_keys() -> None:
    body = b'{"id": "t1"}'
    h = headers(SECRET, "t1", 1_000_000, body)
    assert verify(SECRET, h, body, 1_000_010) == "t1"
    with pytest.raises(SignatureError, match="does not match"):
        verify(SECRET, h, body + b" ", 1_000_010)
    with pytest.raises(SignatureError, match="does not match"):
        verify(b"other", h, body, 1_000_010)
    with pytest.raises(SignatureError, match="replayed"):
        verify(SECRET, h, body, 1_000_000 + 301)
    with pytest.raises(SignatureError, match="missing"):
        verify(SECRET, {}, body, 0)
    rng = random.Random(1)
    delays = [backoff_s(a, 1.0, 60.0, rng) for a in range(1, 10)]
    assert 0.5 <= delays[0] <= 1.0 and 4 <= delays[3] <= 8 and all(x <= 60 for x in delays)
