"""Identity stitching end to end: ingest API → streams → the real dataflow process (its control
records looping through Redis) → profiles and links → `GET /v1/customers/{any id}`."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from fastapi.testclient import TestClient

from api.main import create_app
from cli.datasets import read_calls, with_late_logins
from config.settings import Settings
from models.keys import Keys
from models.profile import Profile, decode_profile
from tests.conftest import ADMIN_KEY, API_KEY, ON_BOTH, rees46_path
from tests.integration.test_pipeline import Dataflow, ingest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def call(typ: str, mid: str, sec: int, **fields: Any) -> dict[str, Any]:
    return {"type": typ, "messageId": mid, "timestamp": f"2024-05-01T12:{sec // 60:02d}:"
            f"{sec % 60:02d}Z", **fields}  # fmt: skip


def add(mid: str, sec: int, pid: str, price: float, **ids: Any) -> dict[str, Any]:
    props = {"product_id": pid, "price": price, "quantity": 1}
    return call("track", mid, sec, event="Product Added", properties=props, **ids)


SCENARIO = [
    # anonymous browsing and a cart on the phone, then a login
    call("track", "s1", 0, anonymousId="phone", event="Product Viewed",
         properties={"product_id": "p1"}),
    add("s2", 1, "p1", 10.0, anonymousId="phone"),
    call("identify", "s3", 2, anonymousId="phone", userId="ann", traits={"name": "Ann"}),
    # a second device with its own cart, then the same login
    add("s4", 3, "p2", 4.0, anonymousId="laptop"),
    call("identify", "s5", 4, anonymousId="laptop", userId="ann"),
    # an old account id aliased to the new one
    {**call("track", "s6", 5, userId="ann-2019", event="Order Completed",
            properties={"order_id": "o1", "revenue": 25.0}),
     "timestamp": "2019-03-01T10:00:00Z"},
    call("alias", "s7", 6, previousId="ann-2019", userId="ann"),
    # events that carry only the user id, from email and a store
    call("track", "s8", 7, userId="ann", event="Email Opened", context={"channel": "email"}),
    call("track", "s9", 8, userId="ann", event="Store Visited", context={"channel": "store"}),
    # the phone's cookie alone, later
    call("track", "s10", 9, anonymousId="phone", event="Product Viewed",
         properties={"product_id": "p3"}),
    # a shared kiosk signs in eight different people (the limit is 5 ids per customer)
    *[call("identify", f"k{i}", 20 + i, anonymousId="kiosk", userId=f"visitor{i}")
      for i in range(8)],
]  # fmt: skip


def wait_until(pred: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "the dataflow did not get there in time"
        time.sleep(0.1)


@ON_BOTH
def test_any_id_reaches_one_customer(settings: Settings, rclient: redis.Redis) -> None:
    settings = settings.model_copy(update={"identity_max_ids": 5})
    df = Dataflow(settings).start()
    try:
        assert ingest(settings, [{"batch": SCENARIO}]) == len(SCENARIO)
        with TestClient(create_app(settings)) as api:

            def get(any_id: str) -> dict[str, Any]:
                r = api.get(f"/v1/customers/{any_id}", headers=AUTH)
                return r.json() if r.status_code == 200 else {}

            wait_until(lambda: get("ann").get("events", {}).get("total") == 10)
            ann = get("ann")
            assert sorted(ann["ids"]) == ["ann-2019", "laptop", "phone"]
            for any_id in ("phone", "laptop", "ann-2019"):
                doc = get(any_id)
                assert doc["customer_id"] == "ann" and doc["requested_id"] == any_id
                assert doc["events"] == ann["events"]
            cart = {i["product_id"]: i["quantity"] for i in ann["cart"]["items"]}
            assert cart == {"p1": 1.0, "p2": 1.0}  # two carts, combined
            assert ann["orders"]["count"] == 1 and ann["orders"]["revenue"] == 25.0
            assert set(ann["channels"]) == {"web", "email", "store"}
            assert ann["recent_products"] == ["p3", "p1"]
            assert ann["traits"] == {"name": "Ann"}

            # the kiosk: merges stop at 5 ids per customer, the refusals are counted
            keys = Keys(settings.key_prefix)

            def refused() -> int:
                return int(rclient.hget(keys.stats(), "identity_merges_refused") or 0)

            wait_until(lambda: refused() == 4 and len(get("kiosk").get("ids", [])) == 4)
            time.sleep(1.0)  # and nothing more comes
            kiosk = get("kiosk")
            assert len(kiosk["ids"]) + 1 == 5
            visitors = {get(f"visitor{i}")["customer_id"] for i in range(8)}
            assert len(visitors) == 5  # the kiosk with 4 visitors; 4 visitors on their own
            assert refused() == 4

            # her combined cart was left (events of long ago): its trigger fired for "ann",
            # with the phone's and the laptop's ids
            def ann_trigger() -> dict[str, Any] | None:
                docs = [orjson.loads(f[b"data"]) for _, f in rclient.xrange(keys.triggers())]
                return next((d for d in docs if d["customer_id"] == "ann"), None)

            wait_until(lambda: ann_trigger() is not None)
            trig = ann_trigger()
            assert trig is not None and trig["type"] == "abandoned_cart"
            assert sorted(trig["ids"]) == ["ann-2019", "laptop", "phone"]
            assert {i["product_id"] for i in trig["items"]} == {"p1", "p2"}

            # erasure by any id removes the customer, every link, and the contacts recorded
            # (the trigger's message, if it had one)
            r = api.delete("/v1/customers/phone", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
            out = r.json()
            assert out["customer_id"] == "ann"
            contacted = ["decisions"] if trig["message"] is not None else []
            assert sorted(out["removed"]) == [
                *contacted, "link:ann-2019", "link:laptop", "link:phone", "profile",
            ]  # fmt: skip
            assert get("phone") == {} and get("ann") == {}
            # a late event for the cookie, dated before the erasure: a fresh, unlinked profile
            late = call("track", "late", 1, anonymousId="phone", event="Product Viewed")
            assert ingest(settings, [{"batch": [late]}]) == 1
            wait_until(lambda: get("phone").get("events", {}).get("total") == 1)
            assert get("phone")["customer_id"] == "phone" and get("ann") == {}
    finally:
        df.stop()


ROWS = 6000


def login_workload() -> tuple[list[dict[str, Any]], dict[str, int]]:
    """REES46 rows with late logins, and each customer's event count (sessions that signed in
    belong to their user; the others stay anonymous customers)."""
    calls = [c for _, c in with_late_logins(itertools.islice(read_calls(rees46_path()), ROWS))]
    owner = {c["anonymousId"]: c["userId"] for c in calls if c["type"] == "identify"}
    seen: set[str] = set()  # the sample repeats a few rows: the same messageId counts once
    totals: dict[str, int] = {}
    for c in calls:
        cid = c.get("userId") or owner.get(c["anonymousId"], c["anonymousId"])
        if c["messageId"] not in seen:
            seen.add(c["messageId"])
            totals[cid] = totals.get(cid, 0) + 1
    return calls, totals


def customers(rclient: redis.Redis, keys: Keys, ids: list[str]) -> dict[str, Profile | None]:
    blobs = rclient.mget([keys.profile(i) for i in ids])
    return {i: decode_profile(b) if b else None for i, b in zip(ids, blobs, strict=True)}


def links(rclient: redis.Redis, keys: Keys, ids: list[str]) -> dict[str, bytes | None]:
    return dict(zip(ids, rclient.mget([keys.link(i) for i in ids]), strict=True))


def comparable(p: Profile | None) -> Any:
    # decayed sums are added in a different order with 2 workers: equal up to rounding
    if p is None:
        return None
    rounded = {k: round(v, 6) for k, v in p.decayed.items()}
    return (p.counts, rounded, p.cart, p.orders, p.first_seen, p.last_seen, sorted(p.ids),
            p.sessions, p.recent)  # fmt: skip


def test_two_workers_and_a_sigkill_give_the_customers_of_one(
    settings: Settings, rclient: redis.Redis, tmp_path: Path
) -> None:
    calls, totals = login_workload()
    assert sum(1 for c in calls if c["type"] == "identify") > 50
    ids = sorted({c.get("userId") or c["anonymousId"] for c in calls}
                 | {c["anonymousId"] for c in calls if "anonymousId" in c})  # fmt: skip
    bodies = [{"batch": calls[i : i + 100]} for i in range(0, len(calls), 100)]

    def done(keys: Keys) -> bool:
        got = customers(rclient, keys, list(totals))
        return all(p is not None and sum(p.counts.values()) == n
                   for (cid, n), p in zip(totals.items(), got.values(), strict=True))  # fmt: skip

    results = []
    for name, workers, kill in (("one", 1, False), ("two", 2, True)):
        run = settings.model_copy(
            update={"key_prefix": settings.key_prefix + name, "recovery_dir": tmp_path / name}
        )
        keys = Keys(run.key_prefix)
        df = Dataflow(run, workers=workers).start()
        try:
            if kill:  # SIGKILL mid-replay, restart: control records are re-sent and re-read
                ingest(run, bodies[: len(bodies) // 2])
                wait_until(lambda k=keys: rclient.exists(k.stats()) or bool(rclient.keys(
                    f"{k.base}:c:*:link")))  # fmt: skip
                df.kill()
                df = Dataflow(run, workers=workers).start()
                ingest(run, bodies[len(bodies) // 2 :])
            else:
                ingest(run, bodies)
            wait_until(lambda k=keys: done(k), timeout=120)
        finally:
            df.stop()
        results.append(
            (
                {i: comparable(p) for i, p in customers(rclient, keys, ids).items()},
                links(rclient, keys, ids),
            )
        )
    (one_profiles, one_links), (two_profiles, two_links) = results
    assert one_links == two_links
    assert sum(v is not None for v in one_links.values()) > 50
    assert one_profiles == two_profiles


def learning_settings(settings: Settings, tmp_path: Path) -> Settings:
    """The default catalog without exploration or holdout (every answer is the best one),
    models reloaded every 0.1 s, and no cart trigger (the 2-hour-old cart's trigger would
    contact the customer first, cooling the reminder)."""
    text = (Path(__file__).parents[2] / "config" / "catalog.toml").read_text()
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(text.replace("exploration = 0.05", "exploration = 0.0").replace(
        "holdout_share = 0.05", "holdout_share = 0.0"))  # fmt: skip
    return settings.model_copy(update={"catalog": catalog, "model_refresh_s": 0.1,
                                       "trigger_cart_s": ()})  # fmt: skip


def old_cart(mid: str, **ids: str) -> dict[str, Any]:
    """A product added two hours ago (the cart reminder's rule wants 30 minutes)."""
    ago = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 7200))
    return {"type": "track", "event": "Product Added", "messageId": mid, "timestamp": ago,
            "properties": {"product_id": "p1", "price": 30.0, "quantity": 1}, **ids}  # fmt: skip


def published_arm(rclient: redis.Redis, keys: Keys, arm: str) -> Any:
    """The arm's model as the dataflow publishes it, once it has."""
    from models.learning import decode_learner

    wait_until(lambda: rclient.get(keys.model(arm)) is not None)
    blob = rclient.get(keys.model(arm))
    assert isinstance(blob, bytes)
    return decode_learner(blob).arms[arm]


def test_decisions_and_clicks_train_the_models_the_api_uses(
    settings: Settings, rclient: redis.Redis, tmp_path: Path
) -> None:
    """The learning loop end to end: decide → the decision is logged to the stream → the
    customer clicks → the dataflow labels and trains → the API reloads the arm's model."""
    settings = learning_settings(settings, tmp_path)
    keys = Keys(settings.key_prefix)
    df = Dataflow(settings).start()
    try:
        assert ingest(settings, [{"batch": [old_cart("la1", userId="learner-1")]}]) == 1
        with TestClient(create_app(settings)) as api:
            wait_until(lambda: api.get("/v1/customers/learner-1", headers=AUTH).status_code == 200)
            d = api.get("/v1/decide", params={"customer_id": "learner-1", "channel": "web"},
                        headers=AUTH).json()  # fmt: skip
            assert d["message"]["id"] == "cart_reminder"
            click = {"type": "track", "userId": "learner-1", "event": "Message Clicked",
                     "messageId": "lc1",
                     "properties": {"decision_id": d["decision_id"]}}  # fmt: skip
            assert ingest(settings, [{"batch": [click]}]) == 1
            arm = "cart_reminder|web"
            model = published_arm(rclient, keys, arm)
            assert (model.n, model.positives) == (1, 1)
            wait_until(lambda: arm in api.app.state.learner.arms)  # type: ignore[attr-defined]
    finally:
        df.stop()


def test_a_decision_served_to_a_visitor_is_credited_by_the_order_after_the_login(
    settings: Settings, rclient: redis.Redis, tmp_path: Path
) -> None:
    """The conversion that matters most: a visitor is shown the cart reminder, signs in, and
    orders as the known customer. The order credits the decision though it was served to the
    visitor's id (it moved to the account with the visitor's data)."""
    from models.identity import decode_node

    settings = learning_settings(settings, tmp_path)
    keys = Keys(settings.key_prefix)
    df = Dataflow(settings).start()
    try:
        assert ingest(settings, [{"batch": [old_cart("va1", anonymousId="visitor-7")]}]) == 1
        with TestClient(create_app(settings)) as api:
            wait_until(lambda: api.get("/v1/customers/visitor-7", headers=AUTH).status_code == 200)
            d = api.get("/v1/decide", params={"customer_id": "visitor-7", "channel": "web"},
                        headers=AUTH).json()  # fmt: skip
            assert (d["customer_id"], d["message"]["id"]) == ("visitor-7", "cart_reminder")

            def waiting() -> list[Any]:
                blob = rclient.get(keys.state("visitor-7"))
                node = decode_node(blob) if isinstance(blob, bytes) else None
                return node.waiting.decisions if node and node.waiting else []

            wait_until(lambda: [w[0] for w in waiting()] == [d["decision_id"]])
            login = {"type": "identify", "anonymousId": "visitor-7", "userId": "vera",
                     "messageId": "vl1"}  # fmt: skip
            order = {
                "type": "track",
                "userId": "vera",
                "event": "Order Completed",
                "messageId": "vo1",
                "properties": {"order_id": "o7", "revenue": 30.0},
            }
            assert ingest(settings, [{"batch": [login, order]}]) == 2
            model = published_arm(rclient, keys, "cart_reminder|web")
            assert (model.n, model.positives) == (1, 1)  # credited, not a timeout later
            assert waiting() == []  # nothing left waiting under the visitor's id
            vera = api.get("/v1/customers/visitor-7", headers=AUTH).json()
            assert vera["customer_id"] == "vera" and vera["orders"]["count"] == 1
    finally:
        df.stop()
