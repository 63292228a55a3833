"""Ingest API against a real Redis: Segment's wire format, both auth styles, gzip, the native
msgpack endpoint, and every kind of bad input."""

from __future__ import annotations

import base64
import gzip
from collections.abc import Iterator
from typing import Any

import msgpack
import orjson
import pytest
import redis
from fastapi.testclient import TestClient

from api.main import create_app
from config.settings import Settings
from models.codec import ENTRY_FIELD, decode_entry
from models.customer import ProfileParams, new_state
from models.events import Event
from models.keys import Keys, partition_for
from models.profile import encode_profile
from tests.conftest import ADMIN_KEY, API_KEY, WRITE_KEY

pytestmark = pytest.mark.integration


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


def stored(rclient: redis.Redis, settings: Settings) -> list[Event]:
    keys = Keys(settings.key_prefix)
    out: list[Event] = []
    for p, stream in enumerate(keys.all_events(settings.partitions)):
        for _, fields in rclient.xrange(stream):
            evs = decode_entry(fields[ENTRY_FIELD])
            assert all(partition_for(e.customer_key, settings.partitions) == p for e in evs)
            out.extend(evs)
    return out


def dead_letters(rclient: redis.Redis, settings: Settings) -> list[dict[bytes, bytes]]:
    return [f for _, f in rclient.xrange(Keys(settings.key_prefix).deadletter())]


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


# A batch as analytics-node / analytics.js send it (their exact field set).
SEGMENT_BATCH: dict[str, Any] = {
    "batch": [
        {
            "type": "identify",
            "userId": "019mr8mf4r",
            "traits": {"email": "pgibbons@example.com", "name": "Peter Gibbons"},
            "messageId": "ajs-next-1",
            "timestamp": "2024-05-01T11:59:58.000Z",
            "context": {"library": {"name": "analytics-node", "version": "6.0.0"}},
            "integrations": {},
            "_metadata": {"nodeVersion": "20.0.0"},
        },
        {
            "type": "track",
            "event": "Product Added",
            "userId": "019mr8mf4r",
            "properties": {"product_id": "507f1f77bcf86cd799439011", "sku": "G-32",
                           "category": "Games", "name": "Monopoly", "brand": "Hasbro",
                           "price": 18.99, "quantity": 1, "currency": "USD"},
            "messageId": "ajs-next-2",
            "timestamp": "2024-05-01T11:59:59.000Z",
            "context": {"library": {"name": "analytics-node", "version": "6.0.0"}},
            "integrations": {},
        },
        {
            "type": "page",
            "anonymousId": "507f191e810c19729de860ea",
            "name": "Home",
            "properties": {"path": "/", "url": "https://shop.example/"},
            "timestamp": "2024-05-01T12:00:00.000Z",
        },
    ],
    "context": {"ip": "203.0.113.7"},
    "sentAt": "2024-05-01T12:00:01.000Z",
}  # fmt: skip


def test_batch_with_basic_auth(
    client: TestClient, rclient: redis.Redis, settings: Settings
) -> None:
    r = client.post("/v1/batch", json=SEGMENT_BATCH, headers=basic(WRITE_KEY))
    assert r.status_code == 200, r.text
    assert r.json() == {"success": True, "accepted": 3, "rejected": []}
    evs = {e.message_id: e for e in stored(rclient, settings)}
    assert set(evs) >= {"ajs-next-1", "ajs-next-2"}
    added = evs["ajs-next-2"]
    assert added.event == "Product Added" and added.properties["price"] == 18.99
    assert added.context["ip"] == "203.0.113.7"  # batch context merged into items
    assert len(evs) == 3  # the page call got a generated messageId


def test_batch_with_write_key_in_body_and_gzip(
    client: TestClient, rclient: redis.Redis, settings: Settings
) -> None:
    body = gzip.compress(orjson.dumps({**SEGMENT_BATCH, "writeKey": WRITE_KEY}))
    r = client.post(
        "/v1/batch",
        content=body,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 3
    assert len(stored(rclient, settings)) == 3


@pytest.mark.parametrize("call", ["track", "identify", "page", "screen", "alias", "group"])
def test_single_call_endpoints(
    call: str, client: TestClient, rclient: redis.Redis, settings: Settings
) -> None:
    body: dict[str, Any] = {"userId": "u1", "previousId": "anon-1", "groupId": "g1",
                            "event": "Product Viewed", "name": "Home"}  # fmt: skip
    r = client.post(f"/v1/{call}", json=body, headers=basic(WRITE_KEY))
    assert r.status_code == 200, r.text
    (ev,) = stored(rclient, settings)
    assert ev.type == call


def test_native_msgpack(client: TestClient, rclient: redis.Redis, settings: Settings) -> None:
    calls = [{"type": "track", "event": "Product Viewed", "userId": f"u{i}"} for i in range(50)]
    r = client.post(
        "/v1/events",
        content=msgpack.packb(calls),
        headers={"Authorization": f"Bearer {WRITE_KEY}", "Content-Type": "application/msgpack"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 50
    assert len(stored(rclient, settings)) == 50


def test_native_refuses_what_json_cannot_hold(
    client: TestClient, rclient: redis.Redis, settings: Settings
) -> None:
    calls = [
        {"type": "track", "event": "E", "userId": "u1", "properties": {"blob": b"\x00\x01"}},
        {"type": "track", "event": "E", "userId": "u2", "properties": {1: "int key"}},
        {"type": "track", "event": "E", "userId": "u3", "properties": {"price": float("nan")}},
        {"type": "track", "event": "E", "userId": "u4"},
        {"type": "track", "event": "E", "userId": "u5",
         "properties": {"at": msgpack.Timestamp(1700000000, 0)}},
    ]  # fmt: skip
    r = client.post(
        "/v1/events",
        content=msgpack.packb(calls),
        headers={**basic(WRITE_KEY), "Content-Type": "application/msgpack"},
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["accepted"] == 1
    assert [x["field"] for x in out["rejected"]] == [
        "(event)", "(event)", "properties.price", "(event)"
    ]  # fmt: skip
    assert [e.user_id for e in stored(rclient, settings)] == ["u4"]
    r = client.post(
        "/v1/events",
        content=b"\xc1",
        headers={**basic(WRITE_KEY), "Content-Type": "application/msgpack"},
    )
    assert r.status_code == 400 and "not valid msgpack" in r.text
    r = client.post("/v1/events", content=b"[]", headers=basic(WRITE_KEY))
    assert r.status_code == 415


def test_mixed_batch_keeps_every_valid_event(
    client: TestClient, rclient: redis.Redis, settings: Settings
) -> None:
    batch: list[Any] = [{"type": "track", "event": "Ok", "userId": f"u{i}"} for i in range(10)]
    batch.insert(2, {"type": "track", "userId": "u"})  # no event name
    batch.insert(5, {"type": "track", "event": "E"})  # no id
    batch.insert(7, "not an object")
    batch.insert(9, {"type": "track", "event": "E", "userId": "u", "properties": {"price": "x"}})
    batch.append({"type": "track", "event": "Big", "userId": "u",
                  "properties": {"blob": "x" * 40_000}})  # fmt: skip
    r = client.post("/v1/batch", json={"batch": batch}, headers=basic(WRITE_KEY))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["accepted"] == 10
    assert [(x["index"], x["field"]) for x in out["rejected"]] == [
        (2, "event"),
        (5, "userId"),
        (7, "(event)"),
        (9, "properties.price"),
        (14, "(event)"),
    ]
    assert sorted(e.user_id or "" for e in stored(rclient, settings)) == sorted(
        f"u{i}" for i in range(10)
    )
    dlq = dead_letters(rclient, settings)
    assert [d[b"field"] for d in dlq] == [b"event", b"userId", b"(event)", b"properties.price",
                                         b"(event)"]  # fmt: skip
    assert orjson.loads(dlq[0][b"raw"]) == {"type": "track", "userId": "u"}
    assert b"larger than 32768 bytes" in dlq[4][b"reason"]


def test_invalid_single_call_is_400_and_dead_lettered(
    client: TestClient, rclient: redis.Redis, settings: Settings
) -> None:
    r = client.post("/v1/track", json={"userId": "u"}, headers=basic(WRITE_KEY))
    assert r.status_code == 400
    assert r.json()["detail"]["field"] == "event"
    assert len(dead_letters(rclient, settings)) == 1


@pytest.mark.parametrize(
    ("body", "headers", "status", "words"),
    [
        (b"{not json", {}, 400, "not valid JSON"),
        (b"", {}, 400, "empty"),
        (b"[1,2]", {}, 400, "JSON object"),
        (b'{"batch": {}}', {}, 400, "batch: must be an array"),
        (b'{"batch": [], "sentAt": "soon"}', {}, 400, "sentAt"),
        (b"\x1f\x8bnot really gzip", {"Content-Encoding": "gzip"}, 400, "not valid gzip"),
    ],
)
def test_unparseable_bodies_are_400(
    client: TestClient, body: bytes, headers: dict[str, str], status: int, words: str
) -> None:
    r = client.post("/v1/batch", content=body, headers={**basic(WRITE_KEY), **headers})
    assert r.status_code == status, r.text
    assert words in r.text


def test_missing_or_bad_keys_are_401(client: TestClient) -> None:
    body = {"batch": [{"type": "track", "event": "E", "userId": "u"}]}
    r = client.post("/v1/batch", json=body)
    assert r.status_code == 401 and "missing write key" in r.text
    r = client.post("/v1/batch", json=body, headers=basic("wrong"))
    assert r.status_code == 401 and "invalid write key" in r.text
    r = client.post("/v1/batch", json={**body, "writeKey": "wrong"})
    assert r.status_code == 401
    # an API key is not a write key
    r = client.post("/v1/batch", json=body, headers={"Authorization": f"Bearer {API_KEY}"})
    assert r.status_code == 401
    assert client.get("/v1/customers/u").status_code == 401
    r = client.get("/v1/customers/u", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and "invalid API key" in r.text
    r = client.post("/v1/events", content=b"\x90", headers={"Content-Type": "application/msgpack"})
    assert r.status_code == 401


def test_oversize_is_413(client: TestClient, settings: Settings) -> None:
    big = {"batch": [{"type": "track", "event": "E", "userId": "u",
                      "properties": {"pad": "x" * 30_000}}] * 20}  # fmt: skip
    r = client.post("/v1/batch", json=big, headers=basic(WRITE_KEY))
    assert r.status_code == 413 and "larger than 512000 bytes" in r.text
    many = {"batch": [{"type": "track", "event": "E", "userId": "u"}] * 2501}
    r = client.post("/v1/batch", json=many, headers=basic(WRITE_KEY))
    assert r.status_code == 413 and "2501 events" in r.text
    one = {"event": "E", "userId": "u", "properties": {"pad": "x" * 40_000}}
    r = client.post("/v1/track", json=one, headers=basic(WRITE_KEY))
    assert r.status_code == 413
    bomb = gzip.compress(b'{"batch": [' + b" " * 5_000_000 + b"]}")
    r = client.post(
        "/v1/batch", content=bomb, headers={**basic(WRITE_KEY), "Content-Encoding": "gzip"}
    )
    assert r.status_code == 413 and "decompressed" in r.text


def test_content_encodings(client: TestClient, rclient: redis.Redis, settings: Settings) -> None:
    one = orjson.dumps({"batch": [{"type": "track", "event": "E", "userId": "u1"}]})
    two = orjson.dumps({"batch": [{"type": "track", "event": "E", "userId": "u2"}]})
    # several gzip members are one body (RFC 1952), as `cat a.gz b.gz` makes
    r = client.post(
        "/v1/batch",
        content=gzip.compress(one[:20]) + gzip.compress(one[20:]),
        headers={**basic(WRITE_KEY), "Content-Encoding": "gzip"},
    )
    assert r.status_code == 200, r.text
    r = client.post(
        "/v1/batch",
        content=gzip.compress(one) + b"\x00" * 16,  # trailing padding, as some tools leave
        headers={**basic(WRITE_KEY), "Content-Encoding": "gzip"},
    )
    assert r.status_code == 200, r.text
    r = client.post(
        "/v1/batch", content=two, headers={**basic(WRITE_KEY), "Content-Encoding": "br"}
    )
    assert r.status_code == 415 and "not supported" in r.text
    r = client.post(
        "/v1/events",
        content=gzip.compress(msgpack.packb([{"type": "page", "userId": "u3"}])),
        headers={**basic(WRITE_KEY), "Content-Encoding": "gzip",
                 "Content-Type": "application/msgpack"},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    assert sorted(e.user_id or "" for e in stored(rclient, settings)) == ["u1", "u1", "u3"]


def test_batch_context_counts_in_each_events_size(client: TestClient) -> None:
    body = {
        "batch": [{"type": "track", "event": "E", "userId": "u", "properties": {"x": "y" * 100}}],
        "context": {"pad": "z" * 32_700},
    }
    r = client.post("/v1/batch", json=body, headers=basic(WRITE_KEY))
    assert r.status_code == 200
    assert r.json()["rejected"][0]["reason"].endswith("with the batch's context merged in")


def test_odd_authorization_headers_are_401(client: TestClient) -> None:
    body = orjson.dumps({"batch": []})
    for header in (b"Basic \xe9", b"Basic !!!", b"Bearer", b"Basic"):
        r = client.post("/v1/batch", content=body, headers={"Authorization": header})
        assert r.status_code == 401, (header, r.text)


def test_customer_ids_with_slashes_are_readable(client: TestClient) -> None:
    r = client.get("/v1/customers/org/42", headers={"Authorization": f"Bearer {API_KEY}"})
    assert r.status_code == 404
    assert "no profile for customer 'org/42'" in r.text


def test_erasure_needs_an_admin_key_and_sends_a_marker(
    client: TestClient, rclient: redis.Redis, settings: Settings
) -> None:
    keys = Keys(settings.key_prefix)
    blob = encode_profile(new_state("gone", 1_000), ProfileParams(), ["anon-9"])
    rclient.set(keys.profile("gone"), blob)
    rclient.set(keys.link("anon-9"), "gone")
    r = client.delete("/v1/customers/anon-9", headers={"Authorization": f"Bearer {API_KEY}"})
    assert r.status_code == 401 and "admin key" in r.text
    # named by a linked id: the whole customer goes
    r = client.delete("/v1/customers/anon-9", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["requested_id"] == "anon-9" and out["customer_id"] == "gone"
    assert out["removed"] == ["profile", "link:anon-9"]
    assert rclient.get(keys.profile("gone")) is None and rclient.get(keys.link("anon-9")) is None
    # a marker for the customer, one for each linked id, each in its own id's partition
    # (`stored` checks the partitions)
    markers = sorted(
        (e.user_id, e.properties) for e in stored(rclient, settings) if e.type == "erase"
    )
    assert markers == [("anon-9", {"of": "gone", "ids": ["anon-9"]}), ("gone", {})]
    own = keys.all_events(settings.partitions)[partition_for("gone", settings.partitions)]
    assert out["erase_marker"] == rclient.xrange(own)[-1][0].decode()  # the customer's own
    # idempotent: again, nothing left to remove, another marker
    r = client.delete("/v1/customers/gone", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert r.json()["removed"] == [] and r.json()["customer_id"] == "gone"
    # clients cannot send erase markers themselves
    r = client.post("/v1/batch", json={"batch": [{"type": "erase", "userId": "x"}]},
                    headers=basic(WRITE_KEY))  # fmt: skip
    assert r.json()["rejected"][0]["field"] == "type"


def test_health_needs_no_key(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")  # Redis is up, but no dataflow has ever reported (tests/api/test_ops)
    assert r.status_code == 503 and "never reported" in r.json()["detail"]


def test_api_refuses_a_different_partition_count(settings: Settings) -> None:
    from config.settings import ConfigError

    with TestClient(create_app(settings)):
        pass  # records 3 partitions
    other = settings.model_copy(update={"partitions": 5})
    with pytest.raises(ConfigError, match="set NUDGE_PARTITIONS=3"), TestClient(create_app(other)):
        pass


def test_app_refuses_to_start_without_keys(redis_url: str) -> None:
    from config.settings import ConfigError

    with pytest.raises(ConfigError, match="NUDGE_WRITE_KEYS, NUDGE_API_KEYS, NUDGE_ADMIN_KEYS"):
        create_app(Settings(redis_url=redis_url))
    with pytest.raises(ConfigError, match="NUDGE_REDIS_URL is not set"):
        create_app(Settings(write_keys="a", api_keys="b", admin_keys="c"))  # type: ignore[arg-type]
