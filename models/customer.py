"""Per-customer state and its pure transition.

`step(state, event, params)` folds one event into the customer's state. The state is built
so that events arriving out of order — within `lateness_ms` — give the same state as in order:

- counts, totals, first/last seen and last seen per channel are sums, minima and maxima;
- decayed counts and affinities are kept in *anchor space*: each event adds
  ``2 ** ((t - anchor) / half_life)``, a sum that does not depend on order; the decayed value at
  time T is that sum times ``2 ** (-(T - anchor) / half_life)``;
- sessions are intervals of event times (a gap over `session_gap_ms` splits them), merged
  when a late event bridges two; intervals older than the lateness bound are closed;
- recent products are the N distinct products with the latest view times;
- the cart is a base (ops older than the lateness bound, folded) plus a short log of recent
  cart ops kept sorted by event time and replayed on read.

A `messageId` received again within `dedupe_window_ms` (by arrival time) is counted once
(`models.dedupe`: 8 bytes per id, at most `dedupe_max_ids` ids per customer).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field, fields
from typing import Any, Final

import msgpack

from config.settings import Settings
from models import NudgeError, dedupe
from models.consent import CONSENT_EVENT, InvalidConsent, statements
from models.events import (
    DECISION,
    ORDER_COMPLETED,
    PRODUCT_ADDED,
    PRODUCT_REMOVED,
    PRODUCT_VIEWED,
    Event,
)

STATE_VERSION: Final = 2  # 2: `seen` as `models.dedupe` arrays (1: a dict)
PROFILE_VERSION: Final = 1
SESSION_TYPES: Final = frozenset({"track", "page", "screen"})
# affinity weight of an interaction with a product's category and brand
AFFINITY_WEIGHTS: Final = {PRODUCT_VIEWED: 1.0, PRODUCT_ADDED: 3.0, ORDER_COMPLETED: 5.0}
_REBASE_EXP: Final = 256.0  # keep 2**exponent far from float overflow
_MAX_ORDER_IDS: Final = 32
_MAX_BOUGHT: Final = 20
OTHER_EVENTS: Final = "(other)"
_CONSENT_TRAITS: Final = frozenset({"consent", "consent_source"})
_NEVER: Final = -(2**62)

_ADD, _REMOVE, _CLEAR = 0, 1, 2


class StateError(NudgeError):
    """A state or profile blob that this version cannot read."""


@dataclass(frozen=True, slots=True)
class ProfileParams:
    """Tunables of the customer state (see `config.Settings` for their sources)."""

    half_life_ms: int = 7 * 24 * 3600 * 1000
    session_gap_ms: int = 30 * 60 * 1000
    recent_products: int = 20
    dedupe_window_ms: int = 24 * 3600 * 1000
    dedupe_max_ids: int = 10_000
    lateness_ms: int = 10 * 60 * 1000
    max_affinity_keys: int = 64
    max_traits: int = 64
    max_event_types: int = 64


def profile_params(settings: Settings) -> ProfileParams:
    """The tunables `settings` give (the dataflow and the API must agree on them)."""
    return ProfileParams(
        half_life_ms=settings.decay_half_life_s * 1000,
        session_gap_ms=settings.session_gap_s * 1000,
        recent_products=settings.recent_products,
        dedupe_window_ms=settings.dedupe_window_s * 1000,
        dedupe_max_ids=settings.dedupe_max_ids,
        lateness_ms=settings.lateness_s * 1000,
    )


def message_hash(message_id: str) -> int:
    """Stable 64-bit hash of a messageId (Python's `hash` is salted per process): CRC-32 and
    Adler-32 side by side, both C-fast; it is persisted in snapshots, so it never changes.

    >>> message_hash("ajs-next-1")
    1492102740501612048
    """
    return dedupe.hash_of(message_id.encode())


@dataclass(slots=True)
class CustomerState:
    """Everything the dataflow keeps for one customer. Small and msgpack-serialisable."""

    customer_id: str
    first_seen: int
    last_seen: int
    anchor: int
    counts: dict[str, int] = field(default_factory=dict)
    decayed: dict[str, float] = field(default_factory=dict)
    categories: dict[str, float] = field(default_factory=dict)
    brands: dict[str, float] = field(default_factory=dict)
    sessions_closed: int = 0
    session_floor: int = -(2**62)
    # open sessions: [start, end, events, last_ts, last_channel], sorted by start
    sessions: list[list[Any]] = field(default_factory=list)
    # [ts, product_id], ascending, distinct products
    recent: list[list[Any]] = field(default_factory=list)
    cart_base: dict[str, list[float]] = field(default_factory=dict)  # pid -> [qty, price]
    # [ts, message hash, op, product_id, qty, price], ordered by (ts, op, hash)
    cart_log: list[list[Any]] = field(default_factory=list)
    cart_updated: int | None = None
    orders: int = 0
    revenue: float = 0.0
    last_order: int | None = None
    order_ids: list[str] = field(default_factory=list)
    channels: dict[str, int] = field(default_factory=dict)
    traits: dict[str, Any] = field(default_factory=dict)
    traits_at: dict[str, list[int]] = field(default_factory=dict)  # trait -> [ts, msg hash]
    # "channel:purpose" -> [ts, msg hash, granted, source]: the latest statement wins
    consent: dict[str, list[Any]] = field(default_factory=dict)
    # the messageIds received in the de-duplication window, as `models.dedupe` keeps them: 8-byte
    # hashes in arrival order and their arrival-time buckets. De-duplication goes by arrival,
    # not event time, so a retried batch of old events (an offline queue flushed days later)
    # counts once.
    seen: bytearray = field(default_factory=bytearray)
    seen_marks: list[int] = field(default_factory=list)
    received_max: int = 0
    # [ts, product_id] of the latest purchases, ascending, distinct: never suggested again
    bought: list[list[Any]] = field(default_factory=list)
    # browse abandonment (`models.triggers`):
    # [session start, {"p:id"|"c:cat": views}, added to cart, time the timer was last moved]
    browse: list[Any] = field(default_factory=list)

    # --- derived views ---------------------------------------------------------------------
    def cart(self) -> dict[str, list[float]]:
        """The current cart, ``product_id -> [quantity, unit price]``."""
        items = {pid: list(v) for pid, v in self.cart_base.items()}
        for op in self.cart_log:
            _apply_cart_op(items, op)
        return items


def new_state(customer_id: str, ts: int) -> CustomerState:
    return CustomerState(customer_id=customer_id, first_seen=ts, last_seen=ts, anchor=ts)


# --- transition ----------------------------------------------------------------------------


def step(
    state: CustomerState | None, ev: Event, params: ProfileParams
) -> tuple[CustomerState, bool]:
    """Fold one event into the state. Returns the state and whether it changed.

    >>> p = ProfileParams()
    >>> ev = Event("track", "m1", 1_000, 1_000, "web", user_id="u1", event="Product Added",
    ...            properties={"product_id": "p1", "price": 9.5, "quantity": 2})
    >>> s, changed = step(None, ev, p)
    >>> s.cart(), s.counts, changed
    ({'p1': [2.0, 9.5]}, {'Product Added': 1}, True)
    >>> step(s, ev, p)[1]   # the same messageId again is ignored
    False
    """
    if ev.type == DECISION:
        return state or new_state(ev.customer_key, ev.timestamp), False  # for the learning loop
    ts = ev.timestamp
    if state is None:
        state = new_state(ev.customer_key, ts)
    mid = ev.message_id.encode()
    key = dedupe.key_of(mid)
    seen, marks = state.seen, state.seen_marks
    received = ev.received_at
    latest = received if received > state.received_max else state.received_max
    horizon = latest - params.dedupe_window_ms
    if dedupe.seen_before(seen, marks, key, horizon):
        return state, False
    state.received_max = latest
    dedupe.remember(
        seen, marks, key, received, horizon, params.dedupe_window_ms, params.dedupe_max_ids
    )
    mh = int.from_bytes(key, "little")  # = message_hash(ev.message_id)

    if ts < state.first_seen:
        state.first_seen = ts
    advanced = ts > state.last_seen
    if advanced:
        state.last_seen = ts
    typ = ev.type
    label = ev.event if typ == "track" and ev.event else typ
    counts = state.counts
    n = counts.get(label)
    if n is None:
        if len(counts) >= params.max_event_types:
            label = OTHER_EVENTS  # event names are client-chosen: keep the state bounded
            n = counts.get(label, 0)
        else:
            n = 0
    counts[label] = n + 1
    exp = (ts - state.anchor) / params.half_life_ms
    w = 2.0**exp if exp <= _REBASE_EXP else _rebase(state, ts, params.half_life_ms)
    decayed = state.decayed
    decayed[label] = decayed.get(label, 0.0) + w
    channel = ev.channel
    channels = state.channels
    if channels.get(channel, _NEVER) < ts:
        channels[channel] = ts
    if typ in SESSION_TYPES:
        _add_to_sessions(state, ts, channel, params)
        if typ == "track":
            _apply_commerce(state, ev, mh, w, params)
    elif typ == "identify" and ev.traits:
        traits = ev.traits
        if "consent" in traits:
            _add_consent(state, traits["consent"], ts, mh, traits.get("consent_source"))
            traits = {k: v for k, v in traits.items() if k not in _CONSENT_TRAITS}
        _merge_traits(state, traits, [ts, mh], params.max_traits)

    if advanced:
        _settle(state, params)
    return state, True


def _rebase(state: CustomerState, ts: int, half_life_ms: int) -> float:
    """Move the decay anchor to `ts` (rare: once per ~256 half-lives); the new weight is 1."""
    factor = 2.0 ** (-(ts - state.anchor) / half_life_ms)
    for table in (state.decayed, state.categories, state.brands):
        for k in table:
            table[k] *= factor
    state.anchor = ts
    return 1.0


def _product_id(props: dict[str, Any]) -> str | None:
    pid = props.get("product_id")
    if pid is None:
        pid = props.get("sku", props.get("id"))
        if pid is None:
            return None
    return pid if type(pid) is str else str(pid)


def _apply_commerce(
    state: CustomerState, ev: Event, mh: int, w: float, params: ProfileParams
) -> None:
    name = ev.event
    props = ev.properties
    ts = ev.timestamp
    if name == PRODUCT_VIEWED:  # most events: keep this path short
        _add_affinity(state, props, w, params.max_affinity_keys)
        pid = _product_id(props)
        if pid is not None:
            _add_recent(state, ts, pid, params.recent_products)
    elif name in (PRODUCT_ADDED, PRODUCT_REMOVED):
        pid = _product_id(props)
        if name == PRODUCT_ADDED:
            _add_affinity(state, props, AFFINITY_WEIGHTS[PRODUCT_ADDED] * w,
                          params.max_affinity_keys)  # fmt: skip
        if pid is not None:
            qty = props.get("quantity")
            if name == PRODUCT_ADDED:
                op = [ts, mh, _ADD, pid, float(qty if qty is not None else 1), props.get("price")]
            else:
                op = [ts, mh, _REMOVE, pid, None if qty is None else float(qty), None]
            _add_cart_op(state, op)
    elif name == CONSENT_EVENT:
        _add_consent(state, props.get("consent"), ts, mh, props.get("source"))
    elif name == ORDER_COMPLETED:
        products = props.get("products")
        amount = AFFINITY_WEIGHTS[ORDER_COMPLETED] * w
        for prod in products if isinstance(products, list) else (props,):
            if isinstance(prod, dict):
                _add_affinity(state, prod, amount, params.max_affinity_keys)
        _add_order(state, ev, props)
        _add_cart_op(state, [ts, mh, _CLEAR, None, None, None])
    # Checkout Started and the rest are counted only; triggers read counts and times.


def _add_affinity(state: CustomerState, prod: dict[str, Any], amount: float, cap: int) -> None:
    category = prod.get("category")
    if category:
        _bump(state.categories, category, amount, cap)
    brand = prod.get("brand")
    if brand:
        _bump(state.brands, brand, amount, cap)


def _bump(table: dict[str, float], key: Any, amount: float, cap: int) -> None:
    k = key if type(key) is str else str(key)
    table[k] = table.get(k, 0.0) + amount
    if len(table) > cap:  # drop the weakest (ties: the smallest key)
        del table[min(table.items(), key=_by_value_then_key)[0]]


def _by_value_then_key(kv: tuple[str, float]) -> tuple[float, str]:
    return kv[1], kv[0]


def _add_recent(state: CustomerState, ts: int, pid: str, n: int) -> None:
    recent = state.recent
    if recent:
        last = recent[-1]
        if last[1] == pid:  # the same product again: common, and keeps the list sorted
            if last[0] < ts:
                last[0] = ts
            return
        for i in range(len(recent) - 2, -1, -1):
            if recent[i][1] == pid:
                if recent[i][0] >= ts:
                    return
                del recent[i]
                break
        item = [ts, pid]
        if item > recent[-1]:
            recent.append(item)
        else:
            bisect.insort(recent, item)
    else:
        recent.append([ts, pid])
    if len(recent) > n:
        del recent[:-n]


def _add_cart_op(state: CustomerState, op: list[Any]) -> None:
    # Same-millisecond ops apply adds, then removes, then clears, whatever their arrival order.
    bisect.insort(state.cart_log, op, key=_op_order)
    if state.cart_updated is None or op[0] > state.cart_updated:
        state.cart_updated = op[0]


def _op_order(op: list[Any]) -> tuple[int, int, int]:
    return op[0], op[2], op[1]


def _apply_cart_op(items: dict[str, list[float]], op: list[Any]) -> None:
    kind, pid, qty, price = op[2], op[3], op[4], op[5]
    if kind == _CLEAR:
        items.clear()
    elif kind == _ADD:
        cur = items.get(pid)
        if cur is None:
            items[pid] = [qty, float(price) if price is not None else 0.0]
        else:
            cur[0] += qty
            if price is not None:
                cur[1] = float(price)
    else:
        cur = items.get(pid)
        if cur is not None:
            cur[0] = 0.0 if qty is None else cur[0] - qty
            if cur[0] <= 0:
                del items[pid]


def _order_value(props: dict[str, Any]) -> float:
    for key in ("revenue", "total", "value"):
        v = props.get(key)
        if v is not None:
            return float(v)
    products = props.get("products")
    if isinstance(products, list):
        return float(
            sum(
                float(p.get("price") or 0) * float(p.get("quantity") or 1)
                for p in products
                if isinstance(p, dict)
            )
        )
    price = props.get("price")
    return float(price) * float(props.get("quantity") or 1) if price is not None else 0.0


def _add_order(state: CustomerState, ev: Event, props: dict[str, Any]) -> None:
    # One order may arrive as several `Order Completed` calls carrying the same order_id
    # (one per checkout line, as in the REES46 data): they add value, not orders.
    order_id = str(props.get("order_id") or ev.message_id)
    if order_id not in state.order_ids:
        state.orders += 1
        state.order_ids.append(order_id)
        if len(state.order_ids) > _MAX_ORDER_IDS:
            del state.order_ids[0]
    state.revenue += _order_value(props)
    if state.last_order is None or ev.timestamp > state.last_order:
        state.last_order = ev.timestamp
    products = props.get("products")
    for prod in products if isinstance(products, list) else (props,):
        pid = _product_id(prod) if isinstance(prod, dict) else None
        if pid is not None:
            state.bought = _latest_distinct([*state.bought, [ev.timestamp, pid]])


def _add_consent(state: CustomerState, consent: Any, ts: int, mh: int, source: Any) -> None:
    try:
        stated = list(statements(consent))
    except InvalidConsent:
        return  # validated at ingest; a malformed one from another producer changes nothing
    table = state.consent
    src = source if isinstance(source, str) else None
    for key, granted in stated:
        prev = table.get(key)
        if prev is None or [prev[0], prev[1]] < [ts, mh]:
            table[key] = [ts, mh, granted, src]


def _merge_traits(state: CustomerState, traits: dict[str, Any], at: list[int], cap: int) -> None:
    # the latest value of each trait wins, by event time then message hash: order-independent
    known = state.traits_at
    for k, v in traits.items():
        prev = known.get(k)
        if prev is None:
            if len(known) >= cap:
                continue
        elif prev >= at:
            continue
        known[k] = at
        state.traits[k] = v


def _add_to_sessions(state: CustomerState, ts: int, channel: str, params: ProfileParams) -> None:
    gap = params.session_gap_ms
    sessions = state.sessions
    if sessions:
        last = sessions[-1]
        if last[1] <= ts <= last[1] + gap:  # in order, same session: the common case
            last[1] = ts
            last[2] += 1
            if (ts, channel) > (last[3], last[4]):
                last[3], last[4] = ts, channel
            return
        if ts > last[1] + gap:  # in order, a new session
            sessions.append([ts, ts, 1, ts, channel])
            return
    elif ts > state.session_floor + gap:
        sessions.append([ts, ts, 1, ts, channel])
        return
    if ts <= state.session_floor + gap:
        return  # belongs to a session already closed and counted
    hits = [i for i, s in enumerate(sessions) if s[0] - gap <= ts <= s[1] + gap]
    if not hits:
        bisect.insort(sessions, [ts, ts, 1, ts, channel])
        return
    first = sessions[hits[0]]
    for i in reversed(hits[1:]):  # a late event bridging two sessions merges them
        other = sessions.pop(i)
        first[0] = min(first[0], other[0])
        first[1] = max(first[1], other[1])
        first[2] += other[2]
        if (other[3], other[4]) > (first[3], first[4]):
            first[3], first[4] = other[3], other[4]
    first[0] = min(first[0], ts)
    first[1] = max(first[1], ts)
    first[2] += 1
    if (ts, channel) > (first[3], first[4]):
        first[3], first[4] = ts, channel


def _settle(state: CustomerState, params: ProfileParams) -> None:
    """Fold what no in-bound late event can change any more into compact form."""
    horizon = state.last_seen - params.lateness_ms
    log = state.cart_log
    if log and log[0][0] < horizon:
        n = 0
        while n < len(log) and log[n][0] < horizon:
            _apply_cart_op(state.cart_base, log[n])
            n += 1
        del log[:n]
    sessions = state.sessions
    while len(sessions) > 1 and sessions[0][1] < horizon - params.session_gap_ms:
        closed = sessions.pop(0)
        state.sessions_closed += 1
        state.session_floor = max(state.session_floor, closed[1])


# --- merging two customers (identity stitching) ---------------------------------------------


def merge(
    a: CustomerState, b: CustomerState, customer_id: str, params: ProfileParams
) -> CustomerState:
    """Fold two customers' states into one, for when their ids turn out to be one person.

    The rules, each symmetric in `a` and `b` (so merge order does not matter):

    - counts and order totals add; first seen is the earliest, last seen the latest, and the
      latest time per channel and the latest last order win;
    - decayed counts and affinities add, both brought to the same decay anchor;
    - sessions: closed ones add up, open ones merge where they overlap within the session gap;
    - recent products: the N latest of both;
    - carts combine: quantities of the same product add, the price of the later change wins;
      recent cart changes of both replay in event-time order (a late one still applies where
      it belongs);
    - orders seen under both ids (same order_id) count once; revenue adds;
    - traits and consent: per trait and per (channel, purpose), the latest statement wins;
      messageIds seen by either are known to both.
    """
    if (a.first_seen, a.customer_id) > (b.first_seen, b.customer_id):
        a, b = b, a  # a canonical operand order: the result does not depend on argument order
    anchor = min(a.anchor, b.anchor)
    hl = params.half_life_ms
    out = new_state(customer_id, a.first_seen)
    out.first_seen = min(a.first_seen, b.first_seen)
    out.last_seen = max(a.last_seen, b.last_seen)
    out.anchor = anchor
    for x in (a, b):
        factor = 2.0 ** ((x.anchor - anchor) / hl)
        for name, n in x.counts.items():
            out.counts[name] = out.counts.get(name, 0) + n
        for src, dst in (
            (x.decayed, out.decayed),
            (x.categories, out.categories),
            (x.brands, out.brands),
        ):
            for k, v in src.items():
                dst[k] = dst.get(k, 0.0) + v * factor
        for ch, ts in x.channels.items():
            if out.channels.get(ch, _NEVER) < ts:
                out.channels[ch] = ts
        for k, stated in x.consent.items():
            prev = out.consent.get(k)
            if prev is None or prev[:2] < stated[:2]:
                out.consent[k] = stated
        for k, at in x.traits_at.items():
            if k not in out.traits_at or out.traits_at[k] < at:
                out.traits_at[k] = at
                out.traits[k] = x.traits[k]
    for table in (out.categories, out.brands):
        while len(table) > params.max_affinity_keys:
            del table[min(table.items(), key=_by_value_then_key)[0]]
    out.received_max = max(a.received_max, b.received_max)
    out.seen, out.seen_marks = dedupe.merged(
        (a.seen, a.seen_marks),
        (b.seen, b.seen_marks),
        out.received_max - params.dedupe_window_ms,
        params.dedupe_max_ids,
    )

    out.sessions_closed = a.sessions_closed + b.sessions_closed
    out.session_floor = max(a.session_floor, b.session_floor)
    out.sessions = _merge_sessions(a.sessions + b.sessions, params.session_gap_ms)

    latest: dict[str, int] = {}
    for ts, pid in a.recent + b.recent:
        if latest.get(pid, _NEVER) < ts:
            latest[pid] = ts
    out.recent = sorted([ts, pid] for pid, ts in latest.items())[-params.recent_products :]

    # the settled parts of the carts add up; the recent ops of both replay in event-time order
    # on top, so a late op of either id still lands where it belongs
    base_a, base_b = a.cart_base, b.cart_base
    newer_b = (b.cart_updated or _NEVER) > (a.cart_updated or _NEVER)
    for pid in sorted(base_a.keys() | base_b.keys()):
        qa, pa = base_a.get(pid, (0.0, 0.0))
        qb, pb = base_b.get(pid, (0.0, 0.0))
        price = (pb if pid in base_b else pa) if newer_b else (pa if pid in base_a else pb)
        out.cart_base[pid] = [qa + qb, price]
    ops: dict[int, list[Any]] = {}
    for op in a.cart_log + b.cart_log:
        ops.setdefault(op[1], list(op))  # the same message under both ids: once
    out.cart_log = sorted(ops.values(), key=_op_order)
    updates = [t for t in (a.cart_updated, b.cart_updated) if t is not None]
    out.cart_updated = max(updates) if updates else None

    shared = set(a.order_ids) & set(b.order_ids)
    out.orders = a.orders + b.orders - len(shared)
    out.revenue = a.revenue + b.revenue
    out.order_ids = (a.order_ids + [o for o in b.order_ids if o not in shared])[-_MAX_ORDER_IDS:]
    orders_at = [t for t in (a.last_order, b.last_order) if t is not None]
    out.last_order = max(orders_at) if orders_at else None
    out.bought = _latest_distinct(a.bought + b.bought)
    # browsing: the later session's (sessions of two devices are not added up)
    later = max((a.browse, b.browse), key=lambda x: (x[0], repr(x)) if x else (-1, ""))
    out.browse = [later[0], dict(later[1]), *later[2:]] if later else []
    return out


def _latest_distinct(items: list[list[Any]], n: int = _MAX_BOUGHT) -> list[list[Any]]:
    """``[ts, product]`` pairs: each product once at its latest time, the `n` latest,
    ascending (ties: the product id), whatever order they came in."""
    latest: dict[str, int] = {}
    for ts, pid in items:
        if ts >= latest.get(pid, ts):
            latest[pid] = ts
    return [[ts, pid] for pid, ts in sorted(latest.items(), key=lambda kv: (kv[1], kv[0]))][-n:]


def _merge_sessions(intervals: list[list[Any]], gap: int) -> list[list[Any]]:
    merged: list[list[Any]] = []
    for cur in sorted(intervals, key=lambda s: (s[0], s[1])):
        if merged and cur[0] <= merged[-1][1] + gap:
            last = merged[-1]
            last[1] = max(last[1], cur[1])
            last[2] += cur[2]
            if (cur[3], cur[4]) > (last[3], last[4]):
                last[3], last[4] = cur[3], cur[4]
        else:
            merged.append(list(cur))
    return merged


# --- codecs --------------------------------------------------------------------------------


_packer = msgpack.Packer(use_bin_type=True)


def encode_state(s: CustomerState) -> bytes:
    """Full state → msgpack (recovery snapshots; never pickle)."""
    return _packer.pack(state_to_row(s))


def state_to_row(s: CustomerState) -> list[Any]:
    """The state as the versioned array `encode_state` packs (to embed it in a larger one)."""
    return [
            STATE_VERSION,
            s.customer_id,
            s.first_seen,
            s.last_seen,
            s.anchor,
            s.counts,
            s.decayed,
            s.categories,
            s.brands,
            s.sessions_closed,
            s.session_floor,
            s.sessions,
            s.recent,
            s.cart_base,
            s.cart_log,
            s.cart_updated,
            s.orders,
            s.revenue,
            s.last_order,
            s.order_ids,
            s.channels,
            s.traits,
            s.traits_at,
            s.consent,
            s.seen,
            s.seen_marks,
            s.received_max,
            s.bought,
            s.browse,
    ]  # fmt: skip


def decode_state(data: bytes) -> CustomerState:
    return row_to_state(msgpack.unpackb(data, raw=False, strict_map_key=False))


_SEEN: Final = 1 + [f.name for f in fields(CustomerState)].index("seen")  # its place in a row


def row_to_state(row: Any) -> CustomerState:
    if not isinstance(row, list) or not row or row[0] not in (1, STATE_VERSION):
        raise StateError(f"unknown customer state version {row[0] if row else None!r}")
    if row[0] == 1:  # version 1: `seen` a {hash: received} dict, then received_max, seen_cap
        seen, marks = dedupe.from_pairs(row[_SEEN])
        row = [*row[:_SEEN], seen, marks, row[_SEEN + 1], *row[_SEEN + 3 :]]
    state = CustomerState(*row[1:])
    state.seen = bytearray(state.seen)  # msgpack gives bytes
    return state
