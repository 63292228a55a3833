"""The real flow, run with Bytewax's testing source and sink (no Redis)."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main

from cli.datasets import read_calls
from config.settings import Settings
from dataflows.flow import PRODUCTS, PROFILE, Output, build_flow, profile_params
from dataflows.redis_io import ARMED, STATE, WRITTEN
from models.customer import step
from models.events import Event
from models.products import Catalogue, decode_catalogue, observations
from models.profile import decode_profile, render, to_profile
from models.segment import normalize
from tests.conftest import rees46_path

NOW = 1_800_000_000_000  # received "now": after every event of the samples


def sample_events(limit: int = 6000) -> list[Event]:
    return [
        normalize(call, received_at=NOW, new_id=lambda: "x")
        for _, call in itertools.islice(read_calls(rees46_path()), limit)
    ]


def profile_blobs(out: list[tuple[str, Output]]) -> list[tuple[str, bytes]]:
    """The PROFILE outputs of a run, in order."""
    return [(cid, a) for _, (tag, a, cid) in out if tag == PROFILE]


def run(events: list[Event], workers: int, batch_size: int = 64) -> dict[str, Any]:
    out: list[tuple[str, Output]] = []
    keyed = [(e.customer_key, e) for e in events]
    flow = build_flow(Settings(), TestingSource(keyed, batch_size), TestingSink(out))
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)
    stored = (PROFILE, PRODUCTS, STATE, ARMED, WRITTEN)
    assert not [o for o in out if o[1][0] not in stored], "no ids to link here"
    latest = dict(profile_blobs(out))  # per key, in order: the last one is the final profile
    return {cid: decode_profile(blob) for cid, blob in latest.items()}


def direct(events: list[Event]) -> dict[str, Any]:
    params = profile_params(Settings())
    states: dict[str, Any] = {}
    for ev in events:
        states[ev.customer_key], _ = step(states.get(ev.customer_key), ev, params)
    return {cid: to_profile(s, params) for cid, s in states.items()}


@pytest.fixture(scope="module")
def events() -> list[Event]:
    return sample_events()


def test_the_product_index_is_learned_from_every_customers_interactions(
    events: list[Event],
) -> None:
    out: list[tuple[str, Output]] = []
    flow = build_flow(Settings(), TestingSource([(e.customer_key, e) for e in events], 64),
                      TestingSink(out))  # fmt: skip
    run_main(flow)
    published = [(a, b) for _, (tag, a, b) in out if tag == PRODUCTS]
    assert published, "the index is published (at the latest at the end of the input)"
    got = decode_catalogue(published[-1][0])
    # the same interactions folded directly, customer by customer in log order
    params = profile_params(Settings())
    states: dict[str, Any] = {}
    direct = Catalogue()
    for ev in events:
        state, changed = step(states.get(ev.customer_key), ev, params)
        states[ev.customer_key] = state
        if changed:
            direct.observe_all(observations(state.recent, ev))
    want = direct.compact(Settings().products_published)
    assert got.co == want.co and len(got.co) > 100
    assert got.trending(10) == want.trending(10)
    top_cat = max(want.trend_by_cat, key=lambda c: sum(want.trend_by_cat[c].values()))
    assert got.trending(5, top_cat) == want.trending(5, top_cat)


def test_flow_equals_direct_fold(events: list[Event]) -> None:
    assert run(events, workers=1) == direct(events)


def test_two_workers_give_the_same_profiles_as_one(events: list[Event]) -> None:
    one = run(events, workers=1)
    two = run(events, workers=2, batch_size=17)
    assert len(one) > 1000
    assert two == one


def test_duplicates_and_bounded_disorder(events: list[Event]) -> None:
    rng = random.Random(7)
    lateness = Settings().lateness_s * 1000
    noisy = events + rng.sample(events, 500)  # redelivered duplicates
    noisy.sort(key=lambda e: e.timestamp + rng.uniform(0, lateness))
    clean, messy = run(events, workers=1), run(noisy, workers=2)
    assert clean.keys() == messy.keys()
    now = max(e.timestamp for e in events)
    for cid, prof in clean.items():
        a, b = render(prof, now), render(messy[cid], now)
        # decayed scores are sums in a different order (and anchor): equal up to rounding
        for path in (("events", "decayed"), ("affinity", "categories"), ("affinity", "brands")):
            da, db = a[path[0]].pop(path[1]), b[path[0]].pop(path[1])
            assert da == pytest.approx(db, rel=1e-9, abs=1e-4), cid
        assert a == b, cid


def test_erase_marker_drops_the_state_and_late_events_start_afresh() -> None:
    from dataflows.flow import ERASED
    from models.events import erase_marker

    t = 1_700_000_000_000
    before = [
        Event("track", f"m{i}", t + i, NOW, "web", user_id="u1", event="Product Viewed",
              properties={"product_id": "p"})
        for i in range(3)
    ]  # fmt: skip
    late = Event("track", "m9", t + 1, NOW, "web", user_id="u1", event="Product Viewed",
                 properties={"product_id": "q"})  # fmt: skip
    other = Event("track", "o1", t, NOW, "web", user_id="u2", event="Product Viewed")
    for batch_size in (1, 10):  # marker alone in a batch, or amid other events
        out: list[tuple[str, Output]] = []
        items = [*before, other, erase_marker("u1", "e1", t + 10), before[0], late]
        flow = build_flow(
            Settings(), TestingSource([(e.customer_key, e) for e in items], batch_size),
            TestingSink(out),
        )  # fmt: skip
        run_main(flow)
        mine = [blob for cid, blob in profile_blobs(out) if cid == "u1"]
        if batch_size == 1:
            assert ERASED in mine
        final = decode_profile(mine[-1])
        # a fresh profile: the re-sent m0 and the late m9, nothing from before the erasure
        assert final.counts == {"Product Viewed": 2}
        assert final.recent == ["q", "p"]
        u2 = next(b for c, b in profile_blobs(out) if c == "u2")
        assert decode_profile(u2).counts == {"Product Viewed": 1}


def test_served_decisions_and_their_outcomes_train_the_arm_models() -> None:
    from dataflows.flow import MODEL
    from models.events import decision_event
    from models.learning import decode_learner

    t = 1_700_000_000_000
    items: list[Event] = []
    for i in range(6):
        cid = f"c{i}"
        served = decision_event(cid, f"d{i}", "cart_reminder", "email", 1.0, False,
                                t + i, {"cart_items": 0.1 * i})  # fmt: skip
        outcome = "Message Clicked" if i % 2 else "Message Dismissed"
        answer = Event("track", f"r{i}", t + 60_000 + i, NOW, "email", user_id=cid,
                       event=outcome, properties={"decision_id": f"d{i}"})  # fmt: skip
        # half the answers reach the log before their decision (decisions are logged in batches)
        items += [served, answer] if i < 3 else [answer, served]
    out: list[tuple[str, Output]] = []
    flow = build_flow(Settings(), TestingSource([(e.customer_key, e) for e in items], 4),
                      TestingSink(out))  # fmt: skip
    run_main(flow)
    models = [(k, v[1]) for k, v in out if v[0] == MODEL]
    assert models and {k for k, _ in models} == {"cart_reminder|email"}
    arm = decode_learner(models[-1][1]).arms["cart_reminder|email"]
    assert arm.n == 6 and arm.positives == 3
    # and the dataflow process's metrics per arm say so
    from prometheus_client import REGISTRY

    labels = {"message": "cart_reminder", "channel": "email"}
    assert REGISTRY.get_sample_value("nudge_model_examples", labels) == 6
    rate = REGISTRY.get_sample_value("nudge_model_metric", {**labels, "metric": "response_rate"})
    assert rate == 0.5
    # the decisions themselves are not customer activity
    assert all(decode_profile(b).counts == {"Message Clicked": 1} or
               decode_profile(b).counts == {"Message Dismissed": 1}
               for _, b in profile_blobs(out))  # fmt: skip


def test_trigger_timers_fire_on_the_sources_watermark() -> None:
    from dataflows.redis_io import TICK_KEY, TRIGGER
    from models.events import erase_marker
    from models.triggers import CART, Tick

    h = 3_600_000
    t = 1_700_000_000_000 + 12 * h  # 10:13 UTC: outside the catalog's quiet hours

    def added(cid: str, n: int, at: int) -> Event:
        return Event("track", f"{cid}{n}", at, NOW, "web", user_id=cid, event="Product Added",
                     properties={"product_id": "p1", "price": 5.0})  # fmt: skip

    items: list[tuple[str, Any]] = [
        ("left", added("left", 1, t)),
        ("bought", added("bought", 1, t)),
        ("bought", Event("track", "o", t + 60_000, NOW, "web", user_id="bought",
                         event="Order Completed", properties={"order_id": "o1"})),
        (TICK_KEY, Tick(0, t + h - 1)),  # not yet
        ("moved", added("moved", 1, t)),
        ("moved", added("moved", 2, t + 30 * 60_000)),  # restarts its clock
        ("erased", added("erased", 1, t)),
        ("erased", erase_marker("erased", "x1", t + 60_000)),  # its timers go with its data
        (TICK_KEY, Tick(0, t + h)),
        (TICK_KEY, Tick(0, t + 2 * h)),
    ]  # fmt: skip
    out: list[tuple[str, Output]] = []
    settings = Settings(partitions=1)
    run_main(build_flow(settings, TestingSource(items, 1), TestingSink(out)))
    fired = [v[1] for _, v in out if v[0] == TRIGGER]
    assert sorted((f.customer_id, f.rule, f.due_ms - t) for f in fired) == [
        ("left", CART, h),
        ("moved", CART, h + 30 * 60_000),
    ]
    assert fired[0].payload["items"] == [{"product_id": "p1", "quantity": 1.0, "price": 5.0}]


def test_replay_at_full_speed_fires_what_the_live_run_fired(events: list[Event]) -> None:
    """The same log through the flow twice: "live" (the watermark follows every event, as the
    wall clock would) and "replay" (one tick per read of 500 events, trailing, as the source
    sends them when it reads a backlog at full speed): the same triggers."""
    from dataflows.redis_io import TICK_KEY, TRIGGER
    from models.triggers import Tick

    settings = Settings(partitions=1, trigger_cart_s=(600, 1800), trigger_checkout_s=(600,),
                        trigger_browse_s=(300,), products=False)  # fmt: skip
    ordered = sorted(events, key=lambda e: e.timestamp)

    def fired(items: list[tuple[str, Any]]) -> list[tuple[str, str, int, int]]:
        end = ordered[-1].timestamp + 10 * 86_400_000
        out: list[tuple[str, Output]] = []
        flow = build_flow(settings, TestingSource([*items, (TICK_KEY, Tick(0, end))], 50),
                          TestingSink(out))  # fmt: skip
        run_main(flow)
        return sorted((t.id, t.rule, t.step, t.due_ms) for _, (tag, t, _) in out
                      if tag == TRIGGER)  # fmt: skip

    live: list[tuple[str, Any]] = []
    for ev in ordered:
        live += [(TICK_KEY, Tick(0, ev.timestamp)), (ev.customer_key, ev)]
    replay: list[tuple[str, Any]] = []
    newest = ordered[0].timestamp
    for i, ev in enumerate(ordered):
        if i % 500 == 0:
            replay.append((TICK_KEY, Tick(0, newest)))
        replay.append((ev.customer_key, ev))
        newest = max(newest, ev.timestamp)
    got = fired(replay)
    assert got == fired(live)
    assert {r for _, r, _, _ in got} >= {"abandoned_cart", "browse_abandonment"}
    assert any(step == 1 for _, _, step, _ in got)  # reminders too


def test_a_decision_nobody_answers_becomes_a_negative_on_the_watermark() -> None:
    """The customer never comes back: the timeout is labelled when event time passes it."""
    from dataflows.flow import MODEL
    from dataflows.redis_io import TICK_KEY
    from models.events import decision_event
    from models.learning import decode_learner
    from models.triggers import Tick

    t = 1_700_000_000_000
    h = 3_600_000
    served = decision_event("gone", "d1", "welcome", "email", 1.0, False, t, {"views": 0.1})
    answered = decision_event("back", "d2", "welcome", "email", 1.0, False, t, {"views": 0.2})
    click = Event("track", "c2", t + 60_000, NOW, "email", user_id="back",
                  event="Message Clicked", properties={"decision_id": "d2"})  # fmt: skip

    def models_after(*ticks: int) -> tuple[int, int]:
        items: list[tuple[str, Any]] = [("gone", served), ("back", answered), ("back", click)]
        items += [(TICK_KEY, Tick(0, tick)) for tick in ticks]
        out: list[tuple[str, Output]] = []
        run_main(build_flow(Settings(partitions=1), TestingSource(items, 10), TestingSink(out)))
        arm = decode_learner([v[1] for _, v in out if v[0] == MODEL][-1]).arms["welcome|email"]
        return arm.n, arm.positives

    assert models_after(t + 71 * h) == (1, 1)  # the click only: the other still waits
    assert models_after(t + 71 * h, t + 73 * h) == (2, 1)  # 72 h later: a negative


def test_an_erased_id_is_never_read_back_before_the_sink_stored_its_deletion(
    rclient: Any, prefix: str
) -> None:
    # the partition forgets an erased id at once, but Redis holds its state until the sink
    # writes the deletion: an event in between must start afresh, not from the erased state
    from dataflows.flow import CustomerLogic, PartitionLogic, identity_params, trigger_params
    from dataflows.redis_io import ERASED, LEDGER, NodeStore
    from models.events import erase_marker
    from models.identity import decode_node
    from models.keys import Keys

    settings = Settings(partitions=1, key_prefix=prefix)
    keys = Keys(prefix)
    params, ip = profile_params(settings), identity_params(settings)

    def make(blob: bytes | None) -> CustomerLogic:
        return CustomerLogic(params, ip, blob)

    part = PartitionLogic(make, trigger_params(settings), NodeStore(lambda: rclient, keys), 1, 1)
    part.start(0)

    def viewed(n: int) -> Event:
        return Event("track", f"m{n}", NOW + n, NOW, "web", user_id="u1", event="Page Viewed")

    def states(out: list[Output]) -> dict[str, Any]:
        return {o[2]: o[1] for o in out if o[0] == STATE}

    stored = states(part.on_batch([viewed(1), viewed(2)])[0])["u1"]
    rclient.set(keys.state("u1"), stored)  # the sink stored it ...
    LEDGER.written = LEDGER.emitted
    assert states(part.on_batch([erase_marker("u1", "e1", NOW + 10)])[0]) == {"u1": ERASED}
    # ... but has not yet stored the deletion when the next event comes
    again = states(part.on_batch([viewed(3)])[0])["u1"]
    node = decode_node(again)
    assert node.customer is not None and node.customer.counts == {"Page Viewed": 1}


class Loop:
    """The partitions as the flow runs them (`PartitionLogic`, customers in memory), their
    control records looping back through an in-memory log as bytes, read in batches of 1 to
    `most` entries from partitions taken in turn or (`rng`) at random."""

    def __init__(self, partitions: int, rng: random.Random | None = None, most: int = 2) -> None:
        from collections import deque

        from dataflows.flow import partition_logic

        self.n = partitions
        self.parts = [partition_logic(Settings(partitions=partitions), None)()
                      for _ in range(partitions)]  # fmt: skip
        self.log: list[deque[Any]] = [deque() for _ in range(partitions)]
        self.rng = rng
        self.most = most
        self.examples: list[tuple[str, bool, str]] = []

    def send(self, *items: Any) -> None:
        from models.identity import key_of
        from models.keys import partition_for

        for item in items:
            self.log[partition_for(key_of(item), self.n)].append(item)

    def drain(self) -> None:
        while any(self.log):
            ready = [p for p, entries in enumerate(self.log) if entries]
            for p in [self.rng.choice(ready)] if self.rng else ready:
                entries = self.log[p]
                n = self.rng.randint(1, self.most) if self.rng else self.most
                self._run(p, [entries.popleft() for _ in range(min(n, len(entries)))])

    def _run(self, p: int, batch: list[Any]) -> None:
        from dataflows.redis_io import LEARN, SEND
        from models.identity import decode_controls, encode_controls

        for tag, value, _ in self.parts[p].on_batch(batch)[0]:
            if tag == SEND:  # through the stream, as bytes
                self.send(*decode_controls(encode_controls([value])))
            elif tag == LEARN:
                self.examples.append((value.decision_id, value.y, value.why))

    def watermark(self, at_ms: int) -> None:
        """Every partition read up to event time `at_ms` (its timeouts fire)."""
        from models.triggers import Tick

        for p in range(self.n):  # (each partition's tick reaches every partition)
            self._run(p, [(q, Tick(q, at_ms)) for q in range(self.n)])

    def waiting(self) -> int:
        return sum(len(part.book.waiting) for part in self.parts)


def _track(mid: str, at: int, name: str, **ids: Any) -> Event:
    props = ids.pop("props", {})
    return Event("track", mid, at, NOW, "web", event=name, properties=props, **ids)


def test_a_decision_served_before_a_login_is_credited_by_what_comes_after_it() -> None:
    """A visitor is served a message, logs in, then orders or clicks under the account: the
    decision moves with the visitor's data to the account (the JOIN carries it), so the order
    credits it and the click labels it; neither times out as a negative later."""
    from models.events import decision_event

    h = 3_600_000
    t = 1_700_000_000_000
    loop = Loop(3)
    loop.send(
        _track("v1", t, "Product Added", anonymous_id="visitor-1",
               props={"product_id": "p1", "price": 30.0}),
        _track("v2", t, "Product Viewed", anonymous_id="visitor-2", props={"product_id": "p2"}),
        decision_event("visitor-1", "d1", "cart_reminder", "web", 1.0, False, t + 60_000, {}),
        decision_event("visitor-2", "d2", "browse_reminder", "web", 1.0, False, t + 60_000, {}),
    )  # fmt: skip
    loop.drain()
    assert loop.examples == []
    loop.send(
        Event("identify", "i1", t + 2 * 60_000, NOW, "web", anonymous_id="visitor-1",
              user_id="ann"),
        Event("identify", "i2", t + 2 * 60_000, NOW, "web", anonymous_id="visitor-2",
              user_id="bob"),
        _track("o1", t + 3 * 60_000, "Order Completed", user_id="ann",
               props={"order_id": "o1", "revenue": 30.0}),
        _track("c2", t + 3 * 60_000, "Message Clicked", user_id="bob",
               props={"decision_id": "d2"}),
    )  # fmt: skip
    loop.drain()
    assert sorted(loop.examples) == [("d1", True, "converted"), ("d2", True, "clicked")]
    # days later, on every partition's watermark: no timeout for either, nothing waits
    loop.watermark(t + 80 * h)
    assert sorted(loop.examples) == [("d1", True, "converted"), ("d2", True, "clicked")]
    assert loop.waiting() == 0


@pytest.mark.parametrize("seed", range(6))
def test_every_decision_is_labelled_once_whatever_the_merges_and_their_timing(seed: int) -> None:
    """Visitors served messages on several devices, signing in (some to the same account,
    some twice), answering and ordering under either id, read in random interleavings:
    every decision yields exactly one example, and a click always labels its decision."""
    from models.events import decision_event

    rng = random.Random(seed)
    t = 1_700_000_000_000
    loop = Loop(3, rng, most=4)
    clicked: set[str] = set()
    decisions: list[str] = []
    for n in range(40):
        anon, user = f"dev-{n}", f"user-{rng.randrange(12)}"
        at = t + n * 1_000
        did = f"d{n}"
        decisions.append(did)
        events = [
            _track(f"v{n}", at, "Product Viewed", anonymous_id=anon, props={"product_id": "p"}),
            decision_event(anon, did, "browse_reminder", "web", 1.0, False, at + 1, {}),
        ]
        who = {"anonymous_id": anon}
        if rng.random() < 0.8:  # signs in: answers and orders may come under either id
            events.append(Event("identify", f"i{n}", at + 2, NOW, "web", anonymous_id=anon,
                                user_id=user))  # fmt: skip
            who = rng.choice([who, {"user_id": user}])
        if rng.random() < 0.4:
            clicked.add(did)
            events.append(_track(f"c{n}", at + 3, "Message Clicked", props={"decision_id": did},
                                 **who))  # fmt: skip
        elif rng.random() < 0.3:
            events.append(_track(f"o{n}", at + 3, "Order Completed",
                                 props={"order_id": f"o{n}", "revenue": 5.0}, **who))  # fmt: skip
        for ev in events:
            loop.send(ev)
            if rng.random() < 0.3:
                loop.drain()  # some arrive after the merges before them are done, some not
    loop.drain()
    loop.watermark(t + 100 * 3_600_000)  # past every timeout
    labelled = [d for d, _, _ in loop.examples]
    assert sorted(labelled) == sorted(decisions)  # each exactly once
    assert {d for d, y, why in loop.examples if why == "clicked"} == clicked
    assert loop.waiting() == 0


def test_an_id_first_seen_in_a_served_decision_takes_its_kind_from_its_own_events() -> None:
    from dataflows.flow import CustomerLogic, identity_params
    from models.events import decision_event
    from models.identity import ANON, USER

    settings = Settings()
    for own, kind in (({"user_id": "zed"}, USER), ({"anonymous_id": "zed"}, ANON)):
        lg = CustomerLogic(profile_params(settings), identity_params(settings), None)
        lg.on_batch([decision_event("zed", "d1", "welcome", "web", 1.0, False, NOW, {})])
        assert lg.node is not None and lg.node.kind == ANON  # the decision says nothing
        lg.on_batch([Event("track", "m1", NOW + 1, NOW, "web", event="Page Viewed", **own)])
        assert lg.node.kind == kind
