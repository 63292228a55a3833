"""Writing fired triggers against a real Redis: the next-best message and channel under the
contact policy, the contact recorded, each trigger appended once."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
import redis

from config.catalog import load_catalog
from dataflows.trigger_io import TriggerWriter
from models.consent import ConsentPolicy
from models.customer import ProfileParams, new_state, step
from models.events import Event
from models.keys import Keys
from models.policy import in_holdout
from models.profile import encode_profile
from models.triggers import CART, Trigger
from tests.api.test_decide import zone_at
from tests.conftest import ON_BOTH

pytestmark = pytest.mark.integration

H = 3_600_000
CATALOG = load_catalog()


def customer(prefix: str) -> str:
    salt = CATALOG.policy.holdout_salt
    return next(c for i in range(1000) if not in_holdout(c := f"{prefix}{i}", 0.05, salt))


def put(rclient: redis.Redis, keys: Keys, cid: str, now: int, *channels: str) -> None:
    s = new_state(cid, now - 5 * H)
    ident = Event("identify", f"{cid}-i", now - 4 * H, now, "web", user_id=cid)
    ident.traits = {"consent": dict.fromkeys(channels, True), "timezone": zone_at(12)}
    add = Event("track", f"{cid}-a", now - 2 * H, now, "web", user_id=cid, event="Product Added",
                properties={"product_id": "p1", "price": 30.0, "quantity": 1})  # fmt: skip
    for e in (ident, add):
        step(s, e, ProfileParams())
    rclient.set(keys.profile(cid), encode_profile(s, ProfileParams()))


def trigger(cid: str, now: int, tid: str = "t1") -> Trigger:
    return Trigger(tid, CART, cid, 0, now - H, now - 2 * H, {"items": [], "ids": ["a1"]})


def docs(rclient: redis.Redis, keys: Keys) -> list[dict[str, Any]]:
    return [orjson.loads(f[b"data"]) for _, f in rclient.xrange(keys.triggers())]


@ON_BOTH
def test_a_trigger_carries_the_next_best_message_once(rclient: redis.Redis, prefix: str) -> None:
    keys = Keys(prefix)
    now = time.time_ns() // 1_000_000
    cid = customer("tw")
    put(rclient, keys, cid, now, "email")
    w = TriggerWriter(rclient, keys, CATALOG, ConsentPolicy(frozenset({"email", "sms"})), 1000)
    assert w.write([(trigger(cid, now), now)]) == 1
    (d,) = docs(rclient, keys)
    assert d["message"]["id"] == "cart_reminder" and d["message"]["channel"] == "email"
    assert d["message"]["content"] and d["suppressed_by"] is None and d["ids"] == ["a1"]
    # the contact is recorded under the trigger id: caps and cooldowns count it
    assert rclient.zrange(keys.contacts(cid), 0, -1) == [b"email|cart_reminder|t1"]
    # fired again (a restart): neither appended nor counted twice
    assert w.write([(trigger(cid, now), now)]) == 0
    assert len(docs(rclient, keys)) == 1 and rclient.zcard(keys.contacts(cid)) == 1
    # a second cart trigger an hour later: email's cap (1 a day) is spent and the reminder
    # cools down: something else, elsewhere (push needs no opt-in here), or nothing and why
    assert w.write([(trigger(cid, now + H, "t2"), now + H)]) == 1
    second = docs(rclient, keys)[1]["message"]
    assert second is None or (second["id"] != "cart_reminder" and second["channel"] != "email")


@ON_BOTH
def test_no_consent_anywhere_means_no_message(rclient: redis.Redis, prefix: str) -> None:
    keys = Keys(prefix)
    now = time.time_ns() // 1_000_000
    cid = customer("nc")
    put(rclient, keys, cid, now)  # no consent: email and sms are opt-in
    strict = ConsentPolicy(frozenset({"email", "sms", "push"}))
    w = TriggerWriter(rclient, keys, CATALOG, strict, 1000)
    assert w.write([(trigger(cid, now), now)]) == 1
    (d,) = docs(rclient, keys)
    assert d["message"] is None and d["suppressed_by"] == "consent"
    assert not rclient.exists(keys.contacts(cid))


def test_a_trigger_waits_for_an_api_decision_holding_the_customer(
    rclient: redis.Redis, prefix: str
) -> None:
    """While an API decision holds the customer (its history read, its contact not recorded
    yet), the trigger's contact waits, then is checked against what that decision recorded."""
    import threading

    keys = Keys(prefix)
    now = time.time_ns() // 1_000_000
    cid = customer("hold")
    put(rclient, keys, cid, now, "email")
    rclient.set(keys.hold(cid), "api-decision", px=5000)

    def api_decision_ends() -> None:  # as `decision_done.lua`: its email contact, then release
        time.sleep(0.1)
        rclient.zadd(keys.contacts(cid), {"email|checkout_help|api-decision": now})
        rclient.delete(keys.hold(cid))

    ending = threading.Thread(target=api_decision_ends)
    ending.start()
    w = TriggerWriter(rclient, keys, CATALOG, ConsentPolicy(frozenset({"email", "sms"})), 1000)
    started = time.monotonic()
    assert w.write([(trigger(cid, now), now)]) == 1
    ending.join()
    assert 0.09 <= time.monotonic() - started < 5
    (d,) = docs(rclient, keys)
    # email's cap (1 a day) was spent by the API's decision: not a second email
    assert d["message"] is None or d["message"]["channel"] != "email"
    assert rclient.zrange(keys.contacts(cid), 0, -1)[0] == b"email|checkout_help|api-decision"
