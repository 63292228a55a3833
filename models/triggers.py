"""Triggers for marketing automation (pure): abandoned cart, abandoned checkout and browse
abandonment, on event time.

Two halves, both run by the dataflow:

- `arm` runs in the customer's step after each event and says which of the customer's timers
  that event sets, moves or cancels (`TimerOp`): a cart change (re)arms ``abandoned_cart`` at
  the change's time (a new cart state is a new *version*: the clock restarts); ``Checkout
  Started`` cancels it and arms ``abandoned_checkout``; an order cancels everything; the N-th
  view of one product or category in a session, with nothing added to the cart in it, arms
  ``browse_abandonment`` (every later view moves its deadline).
- `Timers` holds the armed timers of a partition's customers and fires them when the event-time
  *watermark* passes their deadline (`advance`). The watermark is the oldest of the stream
  partitions' (`Tick`): while a partition is read behind its tip, the newest event time read
  in its previous read (so a replay of history at full speed fires what the live run fired);
  once it is caught up, the wall clock (so a live trigger fires as its deadline passes, and
  after a restart the overdue ones fire at once).

A rule has a series of delays (e.g. 1 h, then 24 h: a reminder), each measured from the
timer's reference time (the last cart change, the checkout, the last view); a series stops
when cancelled. The first trigger of a series is skipped if the same rule fired for the
customer within its cooldown (event time). Each trigger has a stable id — hash of customer,
rule, version and step — so whoever delivers it can drop repeats after a crash.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Final

from models.customer import CustomerState
from models.deadlines import DeadlineQueue
from models.events import (
    ORDER_COMPLETED,
    PRODUCT_ADDED,
    PRODUCT_REMOVED,
    PRODUCT_VIEWED,
    Event,
)
from models.policy import quiet_until, zone

CART: Final = "abandoned_cart"
CHECKOUT: Final = "abandoned_checkout"
BROWSE: Final = "browse_abandonment"
RULES: Final = (CART, CHECKOUT, BROWSE)
CHECKOUT_STARTED: Final = "Checkout Started"
# the events `arm` looks at (the dataflow calls it for these only)
ARMING: Final = frozenset(
    {PRODUCT_VIEWED, PRODUCT_ADDED, PRODUCT_REMOVED, CHECKOUT_STARTED, ORDER_COMPLETED}
)
_CANCEL: Final = -1


@dataclass(frozen=True, slots=True)
class Rule:
    delays_ms: tuple[int, ...]  # the series: each from the timer's reference time
    cooldown_ms: int
    # a timer is moved at most once per `slack_ms` of event time (browsing moves it with
    # every view): each deadline is that much later, so it never fires early
    slack_ms: int = 0

    def due(self, at_ms: int, step: int) -> int:
        return at_ms + self.delays_ms[step] + self.slack_ms

    @property
    def enabled(self) -> bool:
        return bool(self.delays_ms)


@dataclass(frozen=True, slots=True)
class TriggerParams:
    rules: dict[str, Rule] = field(
        default_factory=lambda: {
            CART: Rule((3_600_000,), 86_400_000),
            CHECKOUT: Rule((3_600_000,), 86_400_000),
            BROWSE: Rule((1_800_000,), 86_400_000),
        }
    )
    browse_views: int = 3  # views of one product or category in a session that arm browsing
    partitions: int = 1  # stream partitions whose watermarks `Timers` waits for
    # quiet hours (minutes after local midnight: start, end) in the customer's time zone (the
    # `timezone` trait, else `default_tz`): a trigger due in them is held until they end
    quiet: tuple[int, int] | None = None
    default_tz: str = "UTC"


@dataclass(frozen=True, slots=True)
class TimerOp:
    """Arm (or move) the customer's timer for `rule`, or cancel it (`version` -1)."""

    customer_id: str
    rule: str
    version: int
    at_ms: int = 0  # the reference time the rule's delays count from
    payload: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Tick:
    """Stream partition `partition` has been read up to event time `watermark_ms`."""

    partition: int
    watermark_ms: int


@dataclass(frozen=True, slots=True)
class Trigger:
    id: str
    rule: str
    customer_id: str
    step: int  # 0: the first of the series, 1: the first reminder, …
    due_ms: int  # event time of the deadline
    at_ms: int  # the reference time (last cart change, checkout, last view)
    payload: dict[str, Any]
    held_ms: int | None = None  # the deadline fell in quiet hours: held until then


def trigger_id(customer_id: str, rule: str, version: int, step: int) -> str:
    raw = f"{customer_id}\x00{rule}\x00{version}\x00{step}".encode()
    return hashlib.blake2b(raw, digest_size=12).hexdigest()


# --- arming, in the customer's step ---------------------------------------------------------


def arm(state: CustomerState, ev: Event, params: TriggerParams) -> list[TimerOp]:
    """The timer changes `ev` (just folded into `state`) makes for its customer."""
    ops = _arm(state, ev, params)
    tz = state.traits.get("timezone")
    if isinstance(tz, str):
        for op in ops:
            if op.payload is not None:
                op.payload["timezone"] = tz
    return ops


def _arm(state: CustomerState, ev: Event, params: TriggerParams) -> list[TimerOp]:
    name = ev.event
    if ev.type != "track" or name is None:
        return []
    cid = state.customer_id
    rules = params.rules
    if name == PRODUCT_VIEWED:
        return _browse(state, ev, params) if rules[BROWSE].enabled else []
    if name in (PRODUCT_ADDED, PRODUCT_REMOVED):
        ops = [TimerOp(cid, BROWSE, _CANCEL)] if name == PRODUCT_ADDED else []
        if state.browse:
            state.browse[2] = True  # something was added in this session: no browse trigger
        if rules[CART].enabled:
            cart = state.cart()
            if cart and state.cart_updated is not None:
                ops.append(TimerOp(cid, CART, _cart_version(cart, state.cart_updated),
                                   state.cart_updated, _cart_payload(cart, ev)))  # fmt: skip
            else:
                ops.append(TimerOp(cid, CART, _CANCEL))
        return ops
    if name == CHECKOUT_STARTED:
        ops = [TimerOp(cid, CART, _CANCEL)]
        if rules[CHECKOUT].enabled:
            cart = state.cart()
            version = _cart_version(cart, ev.timestamp)
            ops.append(TimerOp(cid, CHECKOUT, version, ev.timestamp, _cart_payload(cart, ev)))
        return ops
    if name == ORDER_COMPLETED:
        return [TimerOp(cid, rule, _CANCEL) for rule in RULES]
    return []


def disarm(customer_id: str) -> list[TimerOp]:
    """Cancel every timer of an id (merged into another customer)."""
    return [TimerOp(customer_id, rule, _CANCEL) for rule in RULES]


def rearm(state: CustomerState, params: TriggerParams) -> list[TimerOp]:
    """The cart timer of a customer whose state was just merged from two ids: the combined
    cart's, from its latest change (a checkout or browse timer of the merged-away id is
    not carried over)."""
    cart = state.cart()
    if not params.rules[CART].enabled or not cart or state.cart_updated is None:
        return []
    at = state.cart_updated
    return [TimerOp(state.customer_id, CART, _cart_version(cart, at), at,
                    _cart_payload(cart, None))]  # fmt: skip


def _browse(state: CustomerState, ev: Event, params: TriggerParams) -> list[TimerOp]:
    if not state.sessions:
        return []
    session = state.sessions[-1][0]
    if not state.browse or state.browse[0] != session:
        state.browse = [session, {}, False, None]
    elif len(state.browse) == 3:  # kept before moves were throttled
        state.browse.append(None)
    _, counts, added, armed_at = state.browse
    props = ev.properties
    pid, category = props.get("product_id"), props.get("category")
    best: tuple[int, str] | None = None
    for key in (f"p:{pid}" if pid is not None else None,
                f"c:{category}" if category else None):  # fmt: skip
        if key is None:
            continue
        counts[key] = counts.get(key, 0) + 1
        if best is None or counts[key] > best[0]:
            best = (counts[key], key)
    if len(counts) > 50:  # bounded: keep the most viewed
        for k in sorted(counts, key=counts.__getitem__)[: len(counts) - 50]:
            del counts[k]
    if added or best is None or best[0] < params.browse_views:
        return []
    if armed_at is not None and ev.timestamp - armed_at < params.rules[BROWSE].slack_ms:
        return []  # moved recently: its deadline (with the slack) is not earlier than ours
    state.browse[3] = ev.timestamp
    kind, _, value = best[1].partition(":")
    payload = {"product_id" if kind == "p" else "category": value, "views": best[0],
               "session_started_at": session}  # fmt: skip
    # one series per session: later views move its deadline (same version)
    return [TimerOp(state.customer_id, BROWSE, session, ev.timestamp, payload)]


def _cart_version(cart: dict[str, list[float]], at_ms: int) -> int:
    raw = repr((sorted(cart.items()), at_ms)).encode()
    return int.from_bytes(hashlib.blake2b(raw, digest_size=7).digest(), "big")


def _cart_payload(cart: dict[str, list[float]], ev: Event | None) -> dict[str, Any]:
    items = [{"product_id": pid, "quantity": q, "price": p} for pid, (q, p) in sorted(cart.items())]
    currency = ev.properties.get("currency") if ev is not None else None
    return {
        "items": items,
        "value": round(sum(q * (p or 0.0) for q, p in cart.values()), 2),
        "currency": currency if isinstance(currency, str) else None,
    }


# --- firing, per customer and across a partition's customers -----------------------------------


@dataclass(slots=True)
class CustomerTimers:
    """One customer's armed timers and the cooldowns of its rules: small, msgpack-able, kept
    with the customer (`to_row`/`from_row`) or across a partition's customers (`Timers`)."""

    # rule -> [version, at_ms, step, payload, held until (0: not held)]
    armed: dict[str, list[Any]] = field(default_factory=dict)
    fired: dict[str, int] = field(default_factory=dict)  # rule -> deadline of its last first-fire

    def apply(self, op: TimerOp) -> None:
        if op.version == _CANCEL:
            self.armed.pop(op.rule, None)
            return
        cur = self.armed.get(op.rule)
        if cur is not None and cur[0] == op.version:
            cur[1], cur[3], cur[4] = op.at_ms, op.payload or {}, 0  # moved: same series
        else:
            self.armed[op.rule] = [op.version, op.at_ms, 0, op.payload or {}, 0]

    def due(self, params: TriggerParams) -> int | None:
        """The earliest moment (event time) one of the timers needs the watermark: its
        deadline, or the end of the quiet hours it is held for; None if none is armed."""
        best: int | None = None
        for rule_name, (_, at_ms, step, _, held) in self.armed.items():
            rule = params.rules.get(rule_name)
            if rule is None or step >= len(rule.delays_ms):
                continue  # a rule switched off or shortened since: never due
            due = max(rule.due(at_ms, step), held)
            if best is None or due < best:
                best = due
        return best

    def advance(self, customer_id: str, watermark_ms: int, params: TriggerParams) -> list[Trigger]:
        """The triggers whose deadline `watermark_ms` has passed, oldest first; each series
        moves to its next step, or ends."""
        out: list[Trigger] = []
        while True:
            due = self.due(params)
            if due is None or due > watermark_ms:
                break
            t = self._next(customer_id, due, params)
            if t is not None:
                out.append(t)
        for rule_name in [r for r, (_, _, s, _, _) in self.armed.items() if _gone(params, r, s)]:
            del self.armed[rule_name]  # switched off or shortened since it was armed
        if self.fired:
            longest = max(r.cooldown_ms for r in params.rules.values())
            for rule_name in [r for r, t in self.fired.items() if watermark_ms - t >= longest]:
                del self.fired[rule_name]  # past every cooldown: forgotten
        return out

    def _next(self, customer_id: str, due: int, params: TriggerParams) -> Trigger | None:
        """Handle the timer due at `due` (the earliest): held, dropped or fired."""
        rule_name, cur = next(
            (r, c) for r, c in self.armed.items()
            if not _gone(params, r, c[2]) and max(params.rules[r].due(c[1], c[2]), c[4]) == due
        )  # fmt: skip
        version, at_ms, step, payload, held = cur
        rule = params.rules[rule_name]
        deadline = rule.due(at_ms, step)
        quiet = params.quiet
        if quiet is not None and not held:
            tz = zone(payload.get("timezone"), params.default_tz)
            until = quiet_until(deadline, tz, quiet[0], quiet[1])
            if until is not None:
                cur[4] = until  # due in quiet hours: held until they end
                return None
        if step == 0:
            last = self.fired.get(rule_name)
            if last is not None and deadline - last < rule.cooldown_ms:
                del self.armed[rule_name]  # within the cooldown: this series never starts
                return None
            self.fired[rule_name] = deadline
        tid = trigger_id(customer_id, rule_name, version, step)
        t = Trigger(tid, rule_name, customer_id, step, deadline, at_ms, payload, held or None)
        cur[4] = 0
        if step + 1 < len(rule.delays_ms):
            cur[2] = step + 1
        else:
            del self.armed[rule_name]
        return t

    def to_row(self) -> list[Any]:
        return [self.armed, self.fired]

    @staticmethod
    def from_row(row: list[Any]) -> CustomerTimers:
        armed, fired = row[:2]  # (a later version may append fields)
        return CustomerTimers(armed, fired)


def _gone(params: TriggerParams, rule_name: str, step: int) -> bool:
    rule = params.rules.get(rule_name)
    return rule is None or step >= len(rule.delays_ms)


@dataclass(slots=True)
class Timers:
    """The timers of a partition's customers, and the watermark that fires them."""

    params: TriggerParams
    customers: dict[str, CustomerTimers] = field(default_factory=dict)
    marks: dict[int, int] = field(default_factory=dict)  # partition -> watermark
    # each armed customer's next deadline
    _deadlines: DeadlineQueue = field(default_factory=DeadlineQueue)

    def apply(self, op: TimerOp) -> None:
        ct = self.customers.get(op.customer_id)
        if ct is None:
            ct = self.customers[op.customer_id] = CustomerTimers()
        ct.apply(op)
        self._queue(op.customer_id, ct)

    def adopt(self, customer_id: str, ct: CustomerTimers) -> None:
        """Take in a customer's timers (read back from where they were stored)."""
        self.customers[customer_id] = ct
        self._queue(customer_id, ct)

    def forget(self, customer_id: str) -> None:
        """Drop everything of a customer (erased)."""
        self.customers.pop(customer_id, None)
        self._deadlines.discard(customer_id)

    def is_armed(self, customer_id: str) -> bool:
        """Whether a timer of the customer waits for the watermark."""
        return customer_id in self._deadlines

    def _queue(self, customer_id: str, ct: CustomerTimers) -> None:
        due = ct.due(self.params)
        self._deadlines.set(customer_id, due)  # a cart change moves it
        if due is None and not ct.fired:
            del self.customers[customer_id]

    def watermark(self) -> int | None:
        """The oldest partition's watermark; None until every partition has reported."""
        if len(self.marks) < self.params.partitions:
            return None
        return min(self.marks.values())

    def advance(self, tick: Tick) -> list[Trigger]:
        """Take `tick` in; the triggers whose deadline the watermark has now passed."""
        if tick.watermark_ms > self.marks.get(tick.partition, -(2**62)):
            self.marks[tick.partition] = tick.watermark_ms
        wm = self.watermark()
        out: list[Trigger] = []
        if wm is None:
            return out
        deadlines = self._deadlines
        while (nxt := deadlines.pop_due(wm)) is not None:
            due, cid = nxt
            ct = self.customers[cid]
            # one at a time, so triggers come out in deadline order across customers
            t = ct._next(cid, due, self.params)
            if t is not None:
                out.append(t)
            self._queue(cid, ct)
        if len(self.customers) > 2 * max(64, len(deadlines)):
            for cid in [c for c in self.customers if c not in deadlines]:
                ct = self.customers[cid]
                ct.advance(cid, wm, self.params)  # forgets the cooldowns past
                if not ct.fired and not ct.armed:
                    del self.customers[cid]
        return out
