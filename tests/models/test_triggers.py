"""Trigger rules on event time: fire, cancel, restart the clock, cooldown, reminders, snapshots
(no sleeping: the watermark is driven by `Tick`s)."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from models.customer import ProfileParams, step
from models.deadlines import SLACK
from models.events import Event
from models.triggers import (
    BROWSE,
    CART,
    CHECKOUT,
    CustomerTimers,
    Rule,
    Tick,
    Timers,
    Trigger,
    TriggerParams,
    arm,
)

MIN = 60_000
H = 60 * MIN
T0 = 1_700_000_000_000
PP = ProfileParams()


def ev(n: int, name: str, minute: float, cid: str = "u1", **props: Any) -> Event:
    t = T0 + int(minute * MIN)
    return Event("track", f"{cid}-{n}", t, t, "web", user_id=cid, event=name, properties=props)


class Run:
    """Customers' steps and one shard of timers, watermark advanced by hand."""

    def __init__(self, params: TriggerParams | None = None) -> None:
        self.params = params or TriggerParams()
        self.states: dict[str, Any] = {}
        self.timers = Timers(self.params)
        self.fired: list[Trigger] = []

    def send(self, *events: Event) -> Run:
        for e in events:
            state, changed = step(self.states.get(e.customer_key), e, PP)
            self.states[e.customer_key] = state
            if changed:
                for op in arm(state, e, self.params):
                    self.timers.apply(op)
        return self

    def until(self, minute: float) -> list[tuple[str, str, int, float]]:
        self.fired += self.timers.advance(Tick(0, T0 + int(minute * MIN)))
        return [(t.rule, t.customer_id, t.step, (t.due_ms - T0) / MIN) for t in self.fired]


def add(n: int, minute: float, pid: str = "p1", cid: str = "u1") -> Event:
    return ev(n, "Product Added", minute, cid, product_id=pid, price=10.0, quantity=1,
              currency="EUR")  # fmt: skip


def test_abandoned_cart_fires_once_at_its_deadline() -> None:
    r = Run().send(add(1, 0))
    assert r.until(59) == []
    assert r.until(60) == [(CART, "u1", 0, 60.0)]
    assert r.until(600) == [(CART, "u1", 0, 60.0)]  # once
    t = r.fired[0]
    assert t.payload == {"items": [{"product_id": "p1", "quantity": 1.0, "price": 10.0}],
                         "value": 10.0, "currency": "EUR"}  # fmt: skip


def test_a_cart_change_restarts_the_clock_and_an_order_or_empty_cart_cancels() -> None:
    r = Run().send(add(1, 0), add(2, 30, "p2"))
    assert r.until(89) == []
    assert r.until(90) == [(CART, "u1", 0, 90.0)]
    r = Run().send(add(1, 0), ev(2, "Order Completed", 10, order_id="o1"))
    assert r.until(600) == []
    r = Run().send(add(1, 0), ev(2, "Product Removed", 10, product_id="p1"))
    assert r.until(600) == []


def test_checkout_started_moves_to_abandoned_checkout() -> None:
    r = Run().send(add(1, 0), ev(2, "Checkout Started", 20))
    assert r.until(79) == []
    assert r.until(80) == [(CHECKOUT, "u1", 0, 80.0)]
    r = Run().send(add(1, 0), ev(2, "Checkout Started", 20),
                   ev(3, "Order Completed", 25, order_id="o"))  # fmt: skip
    assert r.until(600) == []


def test_cooldown_and_the_reminder_series() -> None:
    r = Run().send(add(1, 0))
    r.until(60)
    r.send(ev(2, "Order Completed", 70, order_id="o1"), add(3, 120, "p2"))  # a new cart
    assert r.until(600) == [(CART, "u1", 0, 60.0)]  # within 24 h of the first: not again
    r.send(ev(4, "Order Completed", 700, order_id="o2"), add(5, 25 * 60, "p3"))
    assert r.until(27 * 60)[-1] == (CART, "u1", 0, 26 * 60.0)  # after the cooldown: fires

    series = TriggerParams(rules={**TriggerParams().rules, CART: Rule((H, 24 * H), 24 * H)})
    r = Run(series).send(add(1, 0))
    assert r.until(24 * 60 - 1) == [(CART, "u1", 0, 60.0)]
    assert r.until(24 * 60) == [(CART, "u1", 0, 60.0), (CART, "u1", 1, 24 * 60.0)]
    assert len({t.id for t in r.fired}) == 2
    r = Run(series).send(add(1, 0))
    r.until(60)
    r.send(ev(2, "Order Completed", 120, order_id="o"))  # a purchase stops the series
    assert len(r.until(48 * 60)) == 1


def test_browse_abandonment() -> None:
    views = [ev(i, "Product Viewed", i, product_id="p1", category="shoes") for i in range(3)]
    r = Run().send(*views)
    assert r.until(31) == []  # moved by every view: 30 min after the last (minute 2)
    assert r.until(32) == [(BROWSE, "u1", 0, 32.0)]
    assert r.fired[0].payload["views"] == 3
    # two views only, or something added to the cart in the session: nothing
    assert Run().send(*views[:2]).until(600) == []
    r = Run().send(*views[:2], add(9, 3), views[2])
    assert [t.rule for t in r.fired] == [] and r.until(600) == [(CART, "u1", 0, 63.0)]
    # three views of one category count too
    cat = [ev(i, "Product Viewed", i, product_id=f"p{i}", category="bags") for i in range(3)]
    assert Run().send(*cat).until(600) == [(BROWSE, "u1", 0, 32.0)]


def test_trigger_ids_are_stable_and_the_watermark_is_the_oldest_partition() -> None:
    a, b = Run().send(add(1, 0)), Run().send(add(1, 0))
    a.until(60)
    b.until(60)
    assert a.fired[0].id == b.fired[0].id
    two = Run(TriggerParams(partitions=2)).send(add(1, 0))
    assert two.timers.advance(Tick(0, T0 + 2 * H)) == []  # partition 1 has not reported
    assert two.timers.advance(Tick(1, T0 + 30 * MIN)) == []
    assert [t.rule for t in two.timers.advance(Tick(1, T0 + 61 * MIN))] == [CART]


def restored(t: Timers, params: TriggerParams) -> Timers:
    """The timers as a restart rebuilds them: each customer's row, as its stored node holds
    it (msgpack), adopted anew; the watermarks come again with the next ticks."""
    back = Timers(params)
    for cid, ct in t.customers.items():
        back.adopt(cid, CustomerTimers.from_row(msgpack.unpackb(msgpack.packb(ct.to_row()))))
    return back


def test_timers_stored_and_read_back_fire_as_before() -> None:
    r = Run().send(add(1, 0), add(2, 0, cid="u2"), ev(3, "Checkout Started", 5, "u2"))
    r.until(30)
    back = restored(r.timers, r.params)
    fired = back.advance(Tick(0, T0 + 10 * H))
    assert sorted((t.rule, t.customer_id) for t in fired) == [(CART, "u1"), (CHECKOUT, "u2")]


def test_a_trigger_due_in_quiet_hours_is_held_until_they_end() -> None:
    from datetime import UTC, datetime

    quiet = TriggerParams(quiet=(21 * 60, 8 * 60))  # T0 + 1 h is 23:13 UTC: quiet in UTC
    r = Run(quiet).send(add(1, 0))
    morning = int(datetime(2023, 11, 15, 8, 0, tzinfo=UTC).timestamp() * 1000)
    assert r.timers.advance(Tick(0, morning - 1)) == []
    (t,) = r.timers.advance(Tick(0, morning))
    assert (t.due_ms, t.held_ms) == (T0 + H, morning)
    # in New York it is 18:13: not quiet, fired on time
    ny = Run(quiet)
    ident = Event("identify", "id1", T0 - MIN, T0, "web", user_id="u1")
    ident.traits = {"timezone": "America/New_York"}
    ny.send(ident, add(1, 0))
    assert ny.until(60) == [(CART, "u1", 0, 60.0)] and ny.fired[0].held_ms is None
    # held timers survive a restart
    r2 = Run(quiet).send(add(1, 0))
    r2.until(120)
    back = restored(r2.timers, quiet)
    assert [x.held_ms for x in back.advance(Tick(0, morning))] == [morning]


@pytest.mark.parametrize("rule", [CHECKOUT, BROWSE])
def test_cooldown_and_restart_for_checkout_and_browse(rule: str) -> None:
    def arm_at(r: Run, minute: float, n: int) -> None:
        if rule == CHECKOUT:
            r.send(add(100 + n, minute), ev(200 + n, "Checkout Started", minute))
        else:
            r.send(*(ev(300 + 10 * n + i, "Product Viewed", minute + i / 10, product_id="p9")
                     for i in range(3)))  # fmt: skip

    def mine(r: Run, until: float) -> list[float]:
        return [due for name, _, _, due in r.until(until) if name == rule]

    r = Run()
    arm_at(r, 0, 0)
    first = mine(r, 200)
    assert len(first) == 1
    # the clock restarts: a second checkout (or more views) later moves the deadline
    r2 = Run()
    arm_at(r2, 0, 0)
    arm_at(r2, 20, 1)
    assert mine(r2, 19 + first[0]) == [] and len(mine(r2, 200)) == 1
    # within the cooldown the rule does not fire again for the customer (new session: +2 h)
    r.send(ev(400, "Order Completed", 210, order_id="o1"))
    arm_at(r, 300, 2)
    assert mine(r, 600) == first
    arm_at(r, 25 * 60, 3)  # a day later it does
    assert len(mine(r, 27 * 60)) == 2


def test_browsing_moves_its_timer_at_most_once_per_slack_and_never_fires_early() -> None:
    rules = {**TriggerParams().rules, BROWSE: Rule((30 * MIN,), 24 * H, slack_ms=3 * MIN)}
    params = TriggerParams(rules=rules)
    r = Run(params)
    moves: list[float] = []
    minutes = [0, 1, 2, 3, 4, 4.5, 6, 7]
    for i, m in enumerate(minutes):
        e = ev(i, "Product Viewed", m, product_id="p1")
        state, _ = step(r.states.get("u1"), e, PP)
        r.states["u1"] = state
        for op in arm(state, e, params):
            moves.append((op.at_ms - T0) / MIN)
            r.timers.apply(op)
    assert moves == [2, 6]  # armed at the 3rd view, then moved once 3+ minutes later
    last = minutes[-1]
    assert r.until(last + 30 - 0.01) == []  # never before 30 min after the last view
    ((rule, _, _, due),) = r.until(last + 34)
    assert rule == BROWSE and last + 30 <= due <= last + 33


def test_a_customers_timers_fire_on_their_own_as_in_a_shard() -> None:
    """`CustomerTimers` (what a customer's stored state carries) fires what the shard fires,
    and survives its msgpack row."""
    import msgpack

    events = (add(1, 0), ev(2, "Checkout Started", 5), add(3, 0, cid="u2"))
    shard = Run(TriggerParams(rules={**TriggerParams().rules, CART: Rule((H, 24 * H), 0)}))
    shard.send(*events)
    alone = {
        cid: CustomerTimers.from_row(msgpack.unpackb(msgpack.packb(ct.to_row()), raw=False))
        for cid, ct in shard.timers.customers.items()
    }
    assert alone["u1"].due(shard.params) == T0 + 5 * MIN + H
    shard.until(48 * 60)
    wm = T0 + 48 * H
    mine = [t for cid, ct in alone.items() for t in ct.advance(cid, wm, shard.params)]
    assert sorted(t.id for t in mine) == sorted(t.id for t in shard.fired)
    assert [(t.rule, t.customer_id, t.step) for t in shard.fired] == [
        (CART, "u2", 0), (CHECKOUT, "u1", 0), (CART, "u2", 1),
    ]  # fmt: skip  # deadline order across customers
    assert all(not ct.armed for ct in alone.values())


def test_a_timer_moved_again_and_again_leaves_no_trail_in_the_queue() -> None:
    # Every cart change moves the customer's deadline; the queue drops the entries it
    # supersedes lazily, so without compaction it grew with the changes, not the customers
    # (a soak's dataflow gained ~2 MB a minute before its first timer was due).
    r = Run()
    for n in range(5_000):
        r.send(add(n, n / 100, f"p{n % 7}", cid=f"u{n % 50}"))
    assert len(r.timers.customers) == 50
    assert r.timers._deadlines.entries <= 2 * 50 + SLACK  # live timers, and a bounded slack
    r.until(10_000)
    assert sorted(t.customer_id for t in r.fired) == sorted(f"u{i}" for i in range(50))
    assert [t.due_ms for t in r.fired] == sorted(t.due_ms for t in r.fired)  # deadline order
    # each at an hour after the customer's last cart change
    assert [t.due_ms for t in r.fired] == [add(4_950 + i, (4_950 + i) / 100).timestamp + H
                                           for i in range(50)]  # fmt: skip
