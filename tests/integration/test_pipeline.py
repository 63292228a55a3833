"""End to end on a real Redis with the real dataflow process: ingest API → streams → Bytewax
→ profiles, checked against a direct computation over the same CSV rows; and a SIGKILL of
the dataflow in the middle of a replay."""

from __future__ import annotations

import csv
import gzip
import itertools
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from api.main import create_app
from cli.datasets import read_calls
from config.settings import Settings
from models.keys import Keys
from models.products import decode_catalogue, for_profile
from models.profile import decode_profile
from tests.conftest import API_KEY, ON_BOTH, WRITE_KEY, rees46_path

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROWS = 6000
ROOT = Path(__file__).resolve().parents[2]


def expected_from_csv(path: Path, rows: int) -> dict[str, dict[str, Any]]:
    """Per user, computed straight from the CSV: counts by type, cart, orders, revenue."""
    names = {"view": "Product Viewed", "cart": "Product Added", "purchase": "Order Completed"}
    with gzip.open(path, "rt", newline="") as f:
        lines = list(itertools.islice(f, 1, rows + 1))
    seen: set[str] = set()
    per_user: dict[str, list[list[str]]] = {}
    for line in lines:
        if line in seen:  # exact duplicate rows are one event (same messageId)
            continue
        seen.add(line)
        row = next(csv.reader([line]))
        per_user.setdefault(row[7], []).append(row)
    out: dict[str, dict[str, Any]] = {}
    kind = {"view": 0, "cart": 0, "purchase": 2}
    for user, urows in per_user.items():
        counts: dict[str, int] = {}
        cart: dict[str, list[float]] = {}
        orders: set[str] = set()
        revenue = 0.0
        for r in sorted(urows, key=lambda r: (r[0], kind[r[1]])):
            counts[names[r[1]]] = counts.get(names[r[1]], 0) + 1
            if r[1] == "cart":
                item = cart.setdefault(r[2], [0.0, 0.0])
                item[0] += 1
                item[1] = float(r[6])
            elif r[1] == "purchase":
                cart.clear()
                orders.add(r[8])
                revenue += float(r[6])
        out[user] = {"counts": counts, "cart": cart, "orders": len(orders), "revenue": revenue}
    return out


def profiles(client: redis.Redis, keys: Keys, users: list[str]) -> dict[str, bytes | None]:
    pipe = client.pipeline(transaction=False)  # not MGET: the keys span a cluster's slots
    for u in users:
        pipe.get(keys.profile(u))
    return dict(zip(users, pipe.execute(), strict=True))


def mismatches(blobs: dict[str, bytes | None], expected: dict[str, dict[str, Any]]) -> list[str]:
    bad = []
    for user, exp in expected.items():
        blob = blobs[user]
        if blob is None:
            bad.append(f"{user}: no profile")
            continue
        p = decode_profile(blob)
        got = {"counts": p.counts, "cart": p.cart, "orders": p.orders,
               "revenue": pytest.approx(exp["revenue"])}  # fmt: skip
        if got != exp:
            bad.append(f"{user}: {got} != {exp}")
    return bad


def wait_for(rclient: redis.Redis, keys: Keys, expected: dict[str, Any], timeout: float) -> None:
    users = list(expected)
    deadline = time.monotonic() + timeout
    while True:
        bad = mismatches(profiles(rclient, keys, users), expected)
        if not bad:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"{len(bad)} profiles differ from the CSV, e.g. {bad[:3]}")
        time.sleep(0.25)


def env_for(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "NUDGE_REDIS_URL": str(settings.redis_url),
        "NUDGE_REDIS_CLUSTER": str(settings.redis_cluster).lower(),
        "NUDGE_KEY_PREFIX": settings.key_prefix,
        "NUDGE_PARTITIONS": str(settings.partitions),
        "NUDGE_CACHE_CUSTOMERS": str(settings.cache_customers),
        "NUDGE_RECOVERY_DIR": str(settings.recovery_dir),
        "NUDGE_EPOCH_S": str(settings.epoch_s),
        "NUDGE_IDENTITY": str(settings.identity).lower(),
        "NUDGE_IDENTITY_MAX_IDS": str(settings.identity_max_ids),
        "NUDGE_IDLE_BACKOFF_MS": "20",
        "NUDGE_READ_EVENTS": "200",  # small reads: many batches, so a kill lands mid-replay
        "NUDGE_TRIGGER_CART_S": ",".join(map(str, settings.trigger_cart_s)),
        "NUDGE_TRIGGER_CHECKOUT_S": ",".join(map(str, settings.trigger_checkout_s)),
        "NUDGE_TRIGGER_BROWSE_S": ",".join(map(str, settings.trigger_browse_s)),
        "PYTHONPATH": str(ROOT),
        "NUDGE_METRICS_PORT": "0",  # tests that read the dataflow's metrics give a port
        **({"NUDGE_CATALOG": str(settings.catalog)} if settings.catalog else {}),
    }


class Dataflow:
    """`nudge dataflow` as a child process."""

    def __init__(
        self,
        settings: Settings,
        workers: int = 1,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        self.settings = settings
        self.workers = workers
        self.env = env or {}
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Dataflow:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "dataflow", "-w", str(self.workers), *self.args],
            env={**env_for(self.settings), **self.env},
            cwd=ROOT,
        )
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def dataflow(settings: Settings) -> Iterator[Dataflow]:
    df = Dataflow(settings)
    yield df
    df.stop()


def batches(rows: int, size: int = 300) -> list[dict[str, Any]]:
    calls = [call for _, call in itertools.islice(read_calls(rees46_path()), rows)]
    return [{"batch": calls[i : i + size]} for i in range(0, len(calls), size)]


def ingest(settings: Settings, bodies: list[dict[str, Any]], pause: float = 0.0) -> int:
    accepted = 0
    with TestClient(create_app(settings)) as api:
        for body in bodies:
            r = api.post("/v1/batch", json=body, auth=(WRITE_KEY, ""))
            assert r.status_code == 200, r.text
            accepted += r.json()["accepted"]
            time.sleep(pause)
    return accepted


def run_alone(
    settings: Settings,
    rclient: redis.Redis,
    tmp_path: Path,
    name: str,
    bodies: list[dict[str, Any]],
    expected: dict[str, Any],
) -> Keys:
    """An uninterrupted one-process run of `bodies` in a key space of its own: its keys."""
    own = settings.model_copy(
        update={"key_prefix": settings.key_prefix + name, "recovery_dir": tmp_path / name}
    )
    df = Dataflow(own).start()
    try:
        ingest(own, bodies)
        wait_for(rclient, Keys(own.key_prefix), expected, timeout=90)
    finally:
        df.stop()
    return Keys(own.key_prefix)


@ON_BOTH
def test_replay_gives_the_csv_figures(
    settings: Settings, dataflow: Dataflow, rclient: redis.Redis
) -> None:
    expected = expected_from_csv(rees46_path(), ROWS)
    dataflow.start()
    assert ingest(settings, batches(ROWS)) == ROWS
    wait_for(rclient, Keys(settings.key_prefix), expected, timeout=90)
    if settings.redis_cluster:  # the customers and the streams spread over all the masters
        keys = Keys(settings.key_prefix)
        node_of: Any = rclient.get_node_from_key  # type: ignore[attr-defined]
        assert len({node_of(keys.profile(u)).name for u in expected}) == 3
        # (streams {p0} {p1} {p2} hash to slots 15882, 11819 and 7752: two of the 3 masters)
        assert len({node_of(s).name for s in keys.all_events(settings.partitions)}) == 2
    # a few with carts and orders, so the comparison is not only about views
    assert sum(1 for e in expected.values() if e["cart"]) > 10
    assert sum(1 for e in expected.values() if e["orders"]) > 10
    # and the product index for suggestions is published (within NUDGE_PRODUCTS_PUBLISH_S)
    keys = Keys(settings.key_prefix)
    with gzip.open(rees46_path(), "rt", newline="") as f:
        products = {row[2] for row in itertools.islice(csv.reader(f), 1, ROWS + 1)}
    deadline = time.monotonic() + 30
    while True:  # a version every few seconds while it changes: until it has every product
        blob = rclient.get(keys.products())
        index = decode_catalogue(blob) if isinstance(blob, bytes) else None
        if index is not None and set(index.trend) == products:
            break
        assert time.monotonic() < deadline, "the product index misses products"
        time.sleep(0.2)
    assert len(index.co) > 100
    viewer = next(c for c, e in expected.items() if e["counts"].get("Product Viewed", 0) >= 3)
    profile = decode_profile(rclient.get(keys.profile(viewer)))  # type: ignore[arg-type]
    picks = for_profile(index, profile)
    assert len(picks) == 10 and profile.recent[0] not in picks


def snapshots(settings: Settings) -> int:
    """Rows in the recovery stores (0 before the first epoch's snapshots are committed)."""
    total = 0
    for db in settings.recovery_dir.glob("*.sqlite3"):
        con = sqlite3.connect(db, timeout=5)
        try:
            total += con.execute("SELECT count(*) FROM snaps").fetchone()[0]
        except sqlite3.OperationalError:  # not initialised yet
            pass
        finally:
            con.close()
    return total


def test_sigkill_mid_replay_then_restart_gives_identical_profiles(
    settings: Settings, rclient: redis.Redis, tmp_path: Path
) -> None:
    # a cache of 2 or 3 states per partition: customers go out of memory and are read back
    # from Redis all the time, around the kills too
    settings = settings.model_copy(update={"cache_customers": 8})
    expected = expected_from_csv(rees46_path(), ROWS)
    users = list(expected)
    bodies = batches(ROWS, size=100)

    calm_blobs = profiles(rclient, run_alone(settings, rclient, tmp_path, "calm", bodies,
                                             expected), users)  # fmt: skip

    # the interrupted run, killed twice: once as soon as it starts writing profiles (mid-batch,
    # perhaps before any snapshot), once right after the second half arrives (mid-replay, with
    # snapshots behind it); each time restarted
    keys = Keys(settings.key_prefix)
    half = len(bodies) // 2
    df = Dataflow(settings).start()
    ingest(settings, bodies[:half])
    deadline = time.monotonic() + 60
    while not any(profiles(rclient, keys, users).values()):
        assert time.monotonic() < deadline, "the dataflow made no progress"
        time.sleep(0.01)
    df.kill()
    partial = sum(b is not None for b in profiles(rclient, keys, users).values())
    assert partial < len(users), "the kill landed after the replay; nothing was tested"

    df = Dataflow(settings).start()
    deadline = time.monotonic() + 60  # recover, catch up and snapshot (slow machines: poll)
    while snapshots(settings) == 0:
        assert time.monotonic() < deadline, "no recovery snapshot was written after a restart"
        time.sleep(0.05)
    ingest(settings, bodies[half:])
    df.kill()

    df = Dataflow(settings).start()
    try:
        wait_for(rclient, keys, expected, timeout=90)
    finally:
        df.stop()
    assert profiles(rclient, keys, users) == calm_blobs


def test_segment_batches_become_the_expected_profile(
    settings: Settings, dataflow: Dataflow
) -> None:
    """Segment's wire format, each auth style and gzip, through the real flow to the profile."""
    import gzip as gz

    import orjson

    t = "2024-05-01T12:00:0{}Z"
    calls = [
        {"type": "identify", "userId": "c1", "timestamp": t.format(0),
         "traits": {"name": "Peter", "consent": {"email": True}, "consent_source": "signup"},
         "messageId": "m0", "context": {"library": {"name": "analytics-node"}}},
        {"type": "track", "userId": "c1", "event": "Product Viewed", "messageId": "m1",
         "properties": {"product_id": "G-32", "category": "Games", "brand": "Hasbro"},
         "timestamp": t.format(1)},
        {"type": "track", "userId": "c1", "event": "Product Added", "messageId": "m2",
         "properties": {"product_id": "G-32", "price": 18.99, "quantity": 2},
         "timestamp": t.format(2)},
        {"type": "screen", "userId": "c1", "name": "Cart", "messageId": "m3",
         "timestamp": t.format(3)},
    ]  # fmt: skip
    dataflow.start()
    with TestClient(create_app(settings)) as api:
        # Basic auth, plain JSON
        r = api.post("/v1/batch", json={"batch": calls[:2]}, auth=(WRITE_KEY, ""))
        assert r.status_code == 200, r.text
        # writeKey in the body, gzip; the first call again (a retry) counts once
        body = gz.compress(orjson.dumps({"batch": calls[:4], "writeKey": WRITE_KEY}))
        r = api.post(
            "/v1/batch",
            content=body,
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )
        assert r.status_code == 200, r.text
        deadline = time.monotonic() + 60
        while True:
            r = api.get("/v1/customers/c1", headers={"Authorization": f"Bearer {API_KEY}"})
            if r.status_code == 200 and r.json()["events"]["total"] == 4:
                break
            assert time.monotonic() < deadline, r.text
            time.sleep(0.1)
    prof = r.json()
    assert prof["events"]["by_type"] == {
        "Product Added": 1, "Product Viewed": 1, "identify": 1, "screen": 1,
    }  # fmt: skip
    assert prof["traits"] == {"name": "Peter"}
    assert prof["consent"] == {
        "email": {"marketing": {"granted": True, "at": "2024-05-01T12:00:00Z", "source": "signup"}}
    }
    assert prof["contactable"]["email"] is True and prof["contactable"]["sms"] is False
    assert prof["cart"]["items"] == [{"product_id": "G-32", "quantity": 2.0, "price": 18.99}]
    assert prof["cart"]["value"] == 37.98
    assert prof["recent_products"] == ["G-32"]
    assert list(prof["affinity"]["categories"]) == ["Games"]
    assert prof["channels"] == {"app": "2024-05-01T12:00:03Z", "web": "2024-05-01T12:00:02Z"}
    assert prof["sessions"]["count"] == 1
    assert prof["first_seen"] == "2024-05-01T12:00:00Z"


def test_erasure_then_a_late_event_starts_a_fresh_profile(
    settings: Settings, dataflow: Dataflow
) -> None:
    from tests.conftest import ADMIN_KEY

    def track(i: int, ts: str) -> dict[str, Any]:
        return {"type": "track", "userId": "gdpr", "event": "Product Viewed", "messageId": f"g{i}",
                "timestamp": ts, "properties": {"product_id": f"p{i}"}}  # fmt: skip

    auth = {"Authorization": f"Bearer {API_KEY}"}
    dataflow.start()
    with TestClient(create_app(settings)) as api:

        def profile_total() -> int | None:
            r = api.get("/v1/customers/gdpr", headers=auth)
            return r.json()["events"]["total"] if r.status_code == 200 else None

        def wait(pred: Any) -> None:
            deadline = time.monotonic() + 60
            while not pred(profile_total()):
                assert time.monotonic() < deadline
                time.sleep(0.1)

        body = {"batch": [track(i, f"2024-05-01T12:00:0{i}Z") for i in range(3)]}
        assert api.post("/v1/batch", json=body, auth=(WRITE_KEY, "")).status_code == 200
        wait(lambda n: n == 3)
        r = api.delete("/v1/customers/gdpr", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        assert r.json()["removed"] == ["profile"]
        assert profile_total() is None
        time.sleep(4 * settings.epoch_s)  # the dataflow reads the marker; nothing comes back
        assert profile_total() is None
        # a late event (dated before the erasure) starts a new profile, never the old one
        late = {"batch": [track(9, "2024-05-01T12:00:01Z")]}
        assert api.post("/v1/batch", json=late, auth=(WRITE_KEY, "")).status_code == 200
        wait(lambda n: n == 1)
        assert api.get("/v1/customers/gdpr", headers=auth).json()["recent_products"] == ["p9"]
