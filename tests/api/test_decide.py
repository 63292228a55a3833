"""`/v1/decide` against a real Redis: each contact rule, and caps under a concurrent burst."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from fastapi.testclient import TestClient

from api.main import create_app
from api.schemas import DecisionOut
from config.catalog import load_catalog
from config.settings import Settings
from models.customer import ProfileParams, new_state, step
from models.events import Event
from models.keys import Keys
from models.policy import in_holdout
from models.profile import encode_profile
from tests.api.test_ingest import stored
from tests.conftest import API_KEY, ON_BOTH

pytestmark = pytest.mark.integration

AUTH = {"Authorization": f"Bearer {API_KEY}"}
HOUR = 3_600_000
SALT = load_catalog().policy.holdout_salt


CATALOG_TEXT = (Path(__file__).parents[2] / "config" / "catalog.toml").read_text()


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    """The default catalog without exploration, so that every answer here is the best one."""
    path = tmp_path / "catalog.toml"
    path.write_text(CATALOG_TEXT.replace("exploration = 0.05", "exploration = 0.0"))
    return settings.model_copy(update={"catalog": path})


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


def reachable(prefix: str, share: float = 0.05) -> str:
    """A customer id outside the default holdout group."""
    return next(f"{prefix}{i}" for i in range(1000) if not in_holdout(f"{prefix}{i}", share, SALT))


def put_profile(
    rclient: redis.Redis, settings: Settings, cid: str, *evs: Event, **traits: Any
) -> None:
    now = time.time_ns() // 1_000_000
    state = new_state(cid, now - 5 * HOUR)
    for e in evs:
        step(state, e, ProfileParams())
    state.traits.update(traits)
    rclient.set(Keys(settings.key_prefix).profile(cid), encode_profile(state, ProfileParams()))


def cart(cid: str, hours_ago: float = 2.0, price: float = 30.0) -> Event:
    t = time.time_ns() // 1_000_000 - int(hours_ago * HOUR)
    return Event("track", f"add-{cid}", t, t, "web", user_id=cid, event="Product Added",
                 properties={"product_id": "p1", "price": price, "quantity": 1})  # fmt: skip


def consent(cid: str, *channels: str) -> Event:
    t = time.time_ns() // 1_000_000 - 4 * HOUR
    e = Event("identify", f"consent-{cid}", t, t, "web", user_id=cid)
    e.traits = {"consent": dict.fromkeys(channels, True)}
    return e


def ended(rclient: redis.Redis, keys: Keys, cid: str, contacts: int) -> None:
    """Wait (5 s at most) until the decision under way for `cid` has ended: its hold released
    and the customer's contact history holding `contacts` members."""
    deadline = time.monotonic() + 5
    while rclient.exists(keys.hold(cid)) or rclient.zcard(keys.contacts(cid)) != contacts:
        assert time.monotonic() < deadline, "the contact was not recorded nor the hold released"
        time.sleep(0.01)


def zone_at(hour: int) -> str:
    """An IANA zone where the local hour is `hour` right now (Etc/GMT±N)."""
    utc_hour = datetime.now(UTC).hour
    offset = (hour - utc_hour + 12) % 24 - 12  # -12..11
    # Etc/GMT signs are inverted: Etc/GMT-3 is UTC+3
    return "Etc/GMT" + (f"-{offset}" if offset > 0 else f"+{-offset}" if offset < 0 else "")


@ON_BOTH
def test_a_cart_reminder_is_decided_and_recorded(
    client: TestClient, rclient: redis.Redis, settings: Settings
) -> None:
    cid = reachable("cart")
    put_profile(rclient, settings, cid, cart(cid), name="Ada Lovelace")
    r = client.get("/v1/decide", params={"customer_id": cid, "channel": "web"}, headers=AUTH)
    assert r.status_code == 200, r.text
    d = r.json()
    DecisionOut.model_validate(d, strict=True)  # the documented shape, exactly
    assert d["message"]["id"] == "cart_reminder" and d["suppressed_by"] is None
    assert d["message"]["content"]["banner"].startswith("Welcome back Ada!")
    assert d["customer_id"] == cid and d["explore"] is False and d["score"] > 0
    ended(rclient, Keys(settings.key_prefix), cid, contacts=1)  # recorded after the answer
    members = rclient.zrange(Keys(settings.key_prefix).contacts(cid), 0, -1)
    assert members == [f"web|cart_reminder|{d['decision_id']}".encode()]
    # and logged into the customer's stream partition for the learning loop
    deadline = time.monotonic() + 5
    while not (logged := [e for e in stored(rclient, settings) if e.type == "decision"]):
        assert time.monotonic() < deadline, "the decision was not logged"
        time.sleep(0.02)
    (ev,) = logged
    assert ev.user_id == cid and ev.message_id == d["decision_id"]
    assert ev.properties["message_id"] == "cart_reminder" and "cart_items" in ev.properties["x"]
    # the same customer again: the reminder cools down, the next message (or nothing)
    again = client.get("/v1/decide", params={"customer_id": cid, "channel": "web"},
                       headers=AUTH).json()  # fmt: skip
    assert (again["message"] or {}).get("id") != "cart_reminder"
    # erasure takes the history of decisions too
    from tests.conftest import ADMIN_KEY

    out = client.delete(f"/v1/customers/{cid}", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert out.json()["removed"] == ["profile", "decisions"]
    assert not rclient.exists(Keys(settings.key_prefix).contacts(cid))


def test_bad_requests(client: TestClient) -> None:
    r = client.get("/v1/decide", params={"customer_id": "x", "channel": "fax"}, headers=AUTH)
    assert r.status_code == 400 and "channel" in r.json()["detail"]
    assert (
        client.get("/v1/decide", params={"customer_id": "x", "channel": "web"}).status_code == 401
    )
    r = client.post("/v1/decide", json={"channel": "web"}, headers=AUTH)
    assert r.status_code == 422 and "customer_id" in r.text
    for params, field in (({"channel": "web"}, "customer_id"),
                          ({"customer_id": "", "channel": "web"}, "customer_id"),
                          ({"customer_id": "x" * 513, "channel": "web"}, "customer_id"),
                          ({"customer_id": "x"}, "channel")):  # fmt: skip
        r = client.get("/v1/decide", params=params, headers=AUTH)
        assert r.status_code == 422 and r.json()["detail"].startswith(f"{field}:"), r.text


def test_consent_and_unknown_customers(
    client: TestClient, rclient: redis.Redis, settings: Settings
) -> None:
    cid = reachable("noconsent")
    put_profile(rclient, settings, cid, cart(cid))
    d = client.get("/v1/decide", params={"customer_id": cid, "channel": "email"},
                   headers=AUTH).json()  # fmt: skip
    assert d["message"] is None and d["suppressed_by"] == "consent"
    assert "email marketing" in d["reason"]
    # nobody knows this id yet: a decision all the same (nothing fits a blank profile)
    d = client.get("/v1/decide", params={"customer_id": reachable("new"), "channel": "web"},
                   headers=AUTH).json()  # fmt: skip
    assert d["suppressed_by"] == "no_eligible_message"


def test_quiet_hours_across_time_zones(
    client: TestClient, rclient: redis.Redis, settings: Settings
) -> None:
    cid = reachable("quiet")
    put_profile(rclient, settings, cid, cart(cid), consent(cid, "email"))
    night = {"customer_id": cid, "channel": "email", "context": {"timezone": zone_at(23)}}
    d = client.post("/v1/decide", json=night, headers=AUTH).json()
    assert d["suppressed_by"] == "quiet_hours" and d["retry_after"] is not None
    until = datetime.fromisoformat(d["retry_after"].replace("Z", "+00:00"))
    assert 8 * 3600 <= (until - datetime.now(UTC)).total_seconds() <= 10 * 3600  # 08:00 local
    day = {**night, "context": {"timezone": zone_at(13)}}
    d = client.post("/v1/decide", json=day, headers=AUTH).json()
    assert d["message"]["id"] == "cart_reminder"


@ON_BOTH
def test_caps_hold_under_a_concurrent_burst(settings: Settings, rclient: redis.Redis) -> None:
    cid = reachable("burst")
    put_profile(rclient, settings, cid, cart(cid), consent(cid, "email"))
    day = {"customer_id": cid, "channel": "email", "context": {"timezone": zone_at(13)}}

    async def burst() -> list[dict[str, Any]]:
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                rs = await asyncio.gather(
                    *[c.post("/v1/decide", json=day, headers=AUTH) for _ in range(40)]
                )
        return [r.json() for r in rs]

    out = asyncio.run(burst())
    sent = [d for d in out if d["message"] is not None]
    assert len(sent) == 1  # email: 1 a day, whatever the concurrency
    assert {d["suppressed_by"] for d in out if d["message"] is None} <= {
        "frequency_cap", "cooldown",
    }  # fmt: skip
    assert rclient.zcard(Keys(settings.key_prefix).contacts(cid)) == 1


def test_one_decision_at_a_time_holds_the_customer(
    client: TestClient, rclient: redis.Redis, settings: Settings
) -> None:
    """A decision's read takes the customer's hold; another decision meanwhile serves
    nothing; the hold goes once the decision has answered (with its contact recorded), or by
    itself after a few seconds if its API died."""
    keys = Keys(settings.key_prefix)
    cid = reachable("held")
    put_profile(rclient, settings, cid, cart(cid))
    web = {"customer_id": cid, "channel": "web"}
    rclient.set(keys.hold(cid), "another-decision", px=5000)  # in flight elsewhere
    d = client.get("/v1/decide", params=web, headers=AUTH).json()
    assert d["message"] is None and d["suppressed_by"] == "frequency_cap"
    assert "one at a time" in d["reason"]
    assert rclient.get(keys.hold(cid)) == b"another-decision"  # not taken over, nor released
    assert 4000 < rclient.pttl(keys.hold(cid)) <= 5000  # a dead API's hold expires by itself
    rclient.delete(keys.hold(cid))  # that decision ended
    d = client.get("/v1/decide", params=web, headers=AUTH).json()
    assert d["message"]["id"] == "cart_reminder"
    ended(rclient, keys, cid, contacts=1)
    (member,) = rclient.zrange(keys.contacts(cid), 0, -1)
    assert member == f"web|cart_reminder|{d['decision_id']}".encode()
    # a decision that serves nothing releases the hold too
    d = client.get("/v1/decide", params=web, headers=AUTH).json()
    assert d["message"] is None and d["suppressed_by"] == "cooldown"
    ended(rclient, keys, cid, contacts=1)


def test_a_decision_ends_after_the_scripts_were_flushed(
    client: TestClient, rclient: redis.Redis, settings: Settings
) -> None:
    """The contact and the hold's release are sent at once on the open connection; if Redis
    lost the script meanwhile (NOSCRIPT), they go the full way and still land."""
    keys = Keys(settings.key_prefix)
    cid = reachable("flushed")
    put_profile(rclient, settings, cid, cart(cid))
    web = {"customer_id": cid, "channel": "web"}
    client.get("/v1/decide", params={"customer_id": "warm-up", "channel": "web"}, headers=AUTH)
    rclient.script_flush()
    d = client.get("/v1/decide", params=web, headers=AUTH).json()
    assert d["message"]["id"] == "cart_reminder"
    ended(rclient, keys, cid, contacts=1)
    assert rclient.zrange(keys.contacts(cid), 0, -1) == [
        f"web|cart_reminder|{d['decision_id']}".encode()
    ]


def test_holdout_and_any_id(rclient: redis.Redis, settings: Settings, tmp_path: Path) -> None:
    catalog = tmp_path / "catalog-holdout.toml"
    catalog.write_text(
        CATALOG_TEXT.replace("holdout_share = 0.05", "holdout_share = 0.5").replace(
            "exploration = 0.05", "exploration = 0.0"
        )
    )
    settings = settings.model_copy(update={"catalog": catalog})
    held = next(f"h{i}" for i in range(100) if in_holdout(f"h{i}", 0.5, SALT))
    free = reachable("f", 0.5)
    for cid in (held, free):
        put_profile(rclient, settings, cid, cart(cid))
    rclient.set(Keys(settings.key_prefix).link("cookie-1"), free)
    with TestClient(create_app(settings)) as client:
        d = client.get("/v1/decide", params={"customer_id": held, "channel": "web"},
                       headers=AUTH).json()  # fmt: skip
        assert d["suppressed_by"] == "holdout" and d["message"] is None
        d = client.get("/v1/decide", params={"customer_id": "cookie-1", "channel": "web"},
                       headers=AUTH).json()  # fmt: skip
        assert d["customer_id"] == free and d["requested_id"] == "cookie-1"
        assert d["message"]["id"] == "cart_reminder"


def test_a_broken_catalog_stops_the_api(settings: Settings, tmp_path: Path) -> None:
    from config.settings import ConfigError

    bad = tmp_path / "catalog.toml"
    bad.write_text('[[message]]\nid = "x"\nchannels = ["web"]\nrule = "nope > 1"\nvalue = 1.0\n')
    with pytest.raises(ConfigError, match=r"NUDGE_CATALOG: .*message 'x': rule: unknown variable"):
        create_app(settings.model_copy(update={"catalog": bad}))


def test_published_models_change_the_decision(rclient: redis.Redis, settings: Settings) -> None:
    """The model state round trip: what a trainer publishes, the API scores with."""
    from models.features import features
    from models.learning import Learner, encode_learner, vector
    from models.profile import decode_profile

    cid = reachable("model")
    put_profile(rclient, settings, cid, cart(cid, price=80.0))  # checkout help is eligible too
    keys = Keys(settings.key_prefix)
    settings = settings.model_copy(update={"model_refresh_s": 0.05})
    params = {"customer_id": cid, "channel": "web"}
    with TestClient(create_app(settings)) as client:
        first = client.get("/v1/decide", params=params, headers=AUTH).json()
        assert first["message"]["id"] == "cart_reminder"  # the prior: highest value wins
        rclient.delete(keys.contacts(cid))  # forget that contact (cooldown)
        # a trainer learned that customers like this one answer checkout help, not reminders
        blob = rclient.get(keys.profile(cid))
        assert isinstance(blob, bytes)
        now = time.time_ns() // 1_000_000
        x = vector(features(decode_profile(blob), now, "web"))
        learner = Learner(min_examples=50, lr=0.5)
        for i in range(400):
            learner.learn("checkout_help", "web", x, i % 2 == 0)
            learner.learn("cart_reminder", "web", x, False)
        for arm, model in learner.arms.items():  # the dataflow publishes one key per arm
            one = Learner(min_examples=50, lr=0.5)
            one.arms[arm] = model
            rclient.set(keys.model(arm), encode_learner(one))
        time.sleep(0.5)  # a few refreshes
        second = client.get("/v1/decide", params=params, headers=AUTH).json()
        assert second["message"]["id"] == "checkout_help", second
        # what was learned is reported: per arm figures as published, decisions served
        deadline = time.monotonic() + 5
        while (report := client.get("/v1/models", headers=AUTH).json())["decisions"]["served"] < 2:
            assert time.monotonic() < deadline, report
            time.sleep(0.02)
    arm = report["arms"]["checkout_help|web"]
    assert arm["examples"] == 400 and arm["response_rate"] == 0.5 and arm["trust"] == 1.0
    assert 0.0 <= arm["roc_auc"] <= 1.0 and arm["log_loss"] > 0
    assert report["decisions"] == {
        "served": 2, "explored": 0, "explore_share": 0.0, "strategy": "epsilon-greedy"
    }  # fmt: skip
    assert client.get("/v1/models").status_code == 401


def test_published_product_index_gives_suggestions(rclient: redis.Redis,
                                                   settings: Settings) -> None:  # fmt: skip
    """What the dataflow publishes (`models.products`), the decision suggests from: partners
    of the products just viewed, then trending; never what was bought or is current."""
    from models.products import Catalogue, encode_catalogue

    cid = reachable("sugg")
    now = time.time_ns() // 1_000_000

    def ev(i: int, name: str, hours_ago: float, **props: Any) -> Event:
        t = now - int(hours_ago * HOUR)
        return Event("track", f"{cid}-{i}", t, t, "web", user_id=cid, event=name,
                     properties=props)  # fmt: skip

    put_profile(rclient, settings, cid,
                ev(0, "Order Completed", 72, order_id="o1", revenue=20,
                   products=[{"product_id": "p5", "category": "shoes"}]),
                *(ev(i, "Product Viewed", 1 - i / 10, product_id=f"p{i}", category="shoes")
                  for i in (1, 2, 3)))  # fmt: skip
    index = Catalogue(
        co={"p3": {"p5": 10.0, "p4": 5.0}, "p2": {"p6": 2.0, "p3": 1.0}},
        trend={"p5": 9.0, "p7": 3.0, "p8": 1.0},
        trend_by_cat={"shoes": {"p5": 9.0, "p8": 1.0}},
    )
    keys = Keys(settings.key_prefix)
    rclient.set(keys.products(), encode_catalogue(index))
    rclient.set(keys.products_version(), "1")
    settings = settings.model_copy(update={"model_refresh_s": 0.05})
    with TestClient(create_app(settings)) as client:
        deadline = time.monotonic() + 5
        while client.app.state.products is None:  # type: ignore[attr-defined]
            assert time.monotonic() < deadline, "the product index was not loaded"
            time.sleep(0.02)
        d = client.get("/v1/decide", params={"customer_id": cid, "channel": "web"},
                       headers=AUTH).json()  # fmt: skip
    assert d["message"]["id"] in ("browse_reminder", "cross_sell"), d
    # partners of p3 (the latest view) then of p2; trending in shoes, then overall; never
    # p5 (bought), p3 (being viewed) nor p1..p3 twice
    assert d["suggestions"] == ["p4", "p6", "p8", "p7"]
    assert "p4, p6" in d["message"]["content"]["banner"]


def test_thompson_sampling_when_the_catalog_says_so(
    rclient: redis.Redis, settings: Settings, tmp_path: Path
) -> None:
    catalog = tmp_path / "catalog-thompson.toml"
    strategy = 'exploration_strategy = "epsilon-greedy"'
    assert strategy in CATALOG_TEXT
    catalog.write_text(CATALOG_TEXT.replace(strategy, 'exploration_strategy = "thompson"'))
    settings = settings.model_copy(update={"catalog": catalog})
    ids = [reachable(f"ts{i}-") for i in range(40)]
    for cid in ids:  # cart reminder and checkout help both eligible
        put_profile(rclient, settings, cid, cart(cid, price=80.0))
    with TestClient(create_app(settings)) as client:
        answers = [
            client.get("/v1/decide", params={"customer_id": cid, "channel": "web"},
                       headers=AUTH).json()
            for cid in ids
        ]  # fmt: skip
        report = client.get("/v1/models", headers=AUTH).json()
    assert report["decisions"]["strategy"] == "thompson"
    chosen = {a["message"]["id"] for a in answers}
    assert chosen == {"cart_reminder", "checkout_help"}  # nothing learned yet: both tried
    assert all(a["reason"].startswith("Thompson sampling") for a in answers)
    assert any(a["explore"] for a in answers) and not all(a["explore"] for a in answers)
