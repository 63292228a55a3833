"""Product suggestions: item-to-item co-occurrence ("viewed/bought together"), with trending
products in the customer's top categories, then overall, as the fallbacks (pure).

`Catalogue` is the state the dataflow keeps up to date from the event stream (it is
`observe`d with every product interaction, in event-time order per customer) and `suggest`
answers from it. Co-occurrence pairs a product with the customer's few previous distinct
products (a sliding window, so sessions need no boundaries), weighted by what was done (a
view 1, an add to cart 3, an order 5). Every table is bounded: a product keeps its strongest
`neighbours` partners, trending counts decay with `half_life_ms`, and the least-seen entries
are pruned once a table outgrows its cap.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Final

import msgpack

from models.events import ORDER_COMPLETED, PRODUCT_ADDED, PRODUCT_VIEWED, Event
from models.profile import Profile

WEIGHTS: Final = {"view": 1.0, "cart": 3.0, "order": 5.0}
ACTIONS: Final = {PRODUCT_VIEWED: "view", PRODUCT_ADDED: "cart", ORDER_COMPLETED: "order"}
CATALOGUE_VERSION: Final = 1
_LARGE: Final = 4_096  # tables past this size are ranked by value first (`_largest`)
_KEY: Final = itemgetter(0)
_VALUE: Final = itemgetter(1)
STEP_ENTRIES: Final = 2_000  # entries (co-occurrence rows, categories) packed or read per step
# (previous distinct products, most recent last; product; action; event time; category)
Observation = tuple[list[str], str, str, int, str | None]


class ProductsError(ValueError):
    """A published product index that cannot be read."""


@dataclass(slots=True)
class Catalogue:
    window: int = 5  # previous distinct products a new one pairs with
    neighbours: int = 50  # partners kept per product
    half_life_ms: int = 24 * 3600 * 1000
    max_products: int = 200_000
    co: dict[str, dict[str, float]] = field(default_factory=dict)
    category_of: dict[str, str] = field(default_factory=dict)
    # trending, in anchor space (see `models.customer`): product -> decayed weight
    trend: dict[str, float] = field(default_factory=dict)
    trend_by_cat: dict[str, dict[str, float]] = field(default_factory=dict)
    anchor: int | None = None
    # trending lists are recomputed every `refresh_every` observations, not per suggestion
    # (a full scan of the products): what a suggestion sees is at most that stale
    refresh_every: int = 500
    top_n: int = 100
    _seen: int = 0
    _tops: dict[str | None, list[str]] = field(default_factory=dict)

    def observe(
        self,
        history: Sequence[str],
        product: str,
        action: str,
        ts: int,
        category: str | None = None,
    ) -> None:
        """A customer acted on `product` at `ts`; `history` is their previous distinct
        products, most recent last (e.g. the profile's recently viewed products)."""
        w = WEIGHTS.get(action, 1.0)
        self._seen += 1
        if self._seen % self.refresh_every == 0:
            self._tops.clear()
        if category:
            self.category_of[product] = category
        if self.anchor is None:
            self.anchor = ts
        boost = w * 2.0 ** ((ts - self.anchor) / self.half_life_ms)
        if boost > 1e12:  # keep anchor-space numbers finite: move the anchor forward
            self._rebase(ts)
            boost = w
        self.trend[product] = self.trend.get(product, 0.0) + boost
        cat = self.category_of.get(product)
        if cat:
            by = self.trend_by_cat.setdefault(cat, {})
            by[product] = by.get(product, 0.0) + boost
        if history:
            co = self.co
            mine = co.get(product)
            if mine is None:
                mine = co[product] = {}
            seen = 0
            for other in reversed(history):  # inlined pairing: this runs for every event
                if other == product:
                    continue
                mine[other] = mine.get(other, 0.0) + w
                row = co.get(other)
                if row is None:
                    co[other] = {product: w}
                else:
                    row[product] = row.get(product, 0.0) + w
                    if len(row) > 2 * self.neighbours:
                        co[other] = dict(_largest(row, self.neighbours))
                seen += 1
                if seen == self.window:
                    break
            if len(mine) > 2 * self.neighbours:
                co[product] = dict(_largest(mine, self.neighbours))
        if len(self.trend) > self.max_products:
            self._prune()

    def _rebase(self, ts: int) -> None:
        assert self.anchor is not None
        factor = 2.0 ** (-(ts - self.anchor) / self.half_life_ms)
        self.anchor = ts
        for table in (self.trend, *self.trend_by_cat.values()):
            for k in table:
                table[k] *= factor

    def _prune(self) -> None:
        keep = dict(_largest(self.trend, self.max_products // 2))
        gone = self.trend.keys() - keep.keys()
        self.trend = keep
        for p in gone:
            self.co.pop(p, None)
            cat = self.category_of.pop(p, None)
            if cat and cat in self.trend_by_cat:
                self.trend_by_cat[cat].pop(p, None)

    def observe_all(self, batch: Iterable[Observation]) -> None:
        for history, product, action, ts, category in batch:
            self.observe(history, product, action, ts, category)

    def compact(
        self, products: int = 20_000, neighbours: int = 20, categories: int = 1_000
    ) -> Catalogue:
        """What suggestions need, bounded: the `products` most trending, each with its
        `neighbours` strongest partners, and the `top_n` trending of the `categories`
        busiest categories. This is what the dataflow publishes and the API answers from
        (`encode_catalogue`); it is also a valid `Catalogue` to carry on learning."""
        keep = _top(self.trend, products)
        by_cat = {
            cat: _top(table, self.top_n)
            for cat, table in _largest_tables(self.trend_by_cat, categories)
        }
        rows = self.co
        co = {p: _top(rows[p], neighbours) for p in keep if p in rows}
        return Catalogue(
            window=self.window,
            neighbours=self.neighbours,
            half_life_ms=self.half_life_ms,
            max_products=self.max_products,
            co=co,
            category_of={p: c for p in keep if (c := self.category_of.get(p)) is not None},
            trend=keep,
            trend_by_cat=by_cat,
            anchor=self.anchor,
            refresh_every=self.refresh_every,
            top_n=self.top_n,
        )

    def trending(self, n: int, category: str | None = None) -> list[str]:
        """The `n` (≤ `top_n`) most trending products, overall or in `category`."""
        top = self._tops.get(category)
        if top is None:
            table = self.trend if category is None else self.trend_by_cat.get(category, {})
            top = self._tops[category] = top_of(table, self.top_n)
        return top[:n]


def suggest(
    cat: Catalogue,
    recent: Sequence[str],
    top_categories: Iterable[str] = (),
    exclude: Iterable[str] = (),
    n: int = 10,
) -> list[str]:
    """Up to `n` products for a customer: partners of their recent products (the most recent
    weigh most), then trending in their top categories, then trending overall; never a product
    in `exclude` (what they just bought) nor the one they are looking at (`recent[-1]`)."""
    banned = set(exclude)
    if recent:
        banned.add(recent[-1])
    scores: dict[str, float] = {}
    for age, product in enumerate(reversed(recent[-cat.window :])):
        weight = 1.0 / (1 + age)
        for other, w in cat.co.get(product, {}).items():
            if other not in banned:
                scores[other] = scores.get(other, 0.0) + weight * w
    out = top_of(scores, n)
    if len(out) < n:
        chosen = set(out) | banned
        for source in (*(cat.trending(n + len(chosen), c) for c in top_categories),
                       cat.trending(n + len(chosen))):  # fmt: skip
            for p in source:
                if p not in chosen:
                    out.append(p)
                    chosen.add(p)
                    if len(out) == n:
                        return out
    return out


def observations(recent: Sequence[list[Any]], ev: Event, window: int = 5) -> list[Observation]:
    """What a customer's product event teaches `Catalogue.observe`: `recent` is their
    ``[ts, product]`` list (`models.customer.CustomerState.recent`, ascending) *after* the
    event was applied (the product itself is skipped when pairing)."""
    action = ACTIONS.get(ev.event or "")
    if action is None:
        return []
    history = [pid for _, pid in recent[-(window + 1) :]]
    props = ev.properties
    if action == "view":  # most of them: one product, `models.customer` made it a str
        pid = props.get("product_id")
        if pid is not None and type(pid) is str:
            category = props.get("category")
            return [(history, pid, action, ev.timestamp, str(category) if category else None)]
    items = props.get("products") if action == "order" else (props,)
    out: list[Observation] = []
    for item in items if isinstance(items, (list, tuple)) else ():
        if not isinstance(item, dict):
            continue
        pid = item.get("product_id", item.get("sku"))
        if pid is None:
            continue
        category = item.get("category")
        out.append((history, str(pid), action, ev.timestamp,
                    str(category) if category else None))  # fmt: skip
    return out


def encode_catalogue(cat: Catalogue) -> bytes:
    """A catalogue as versioned msgpack (published for the API, and the dataflow's snapshot;
    never pickle)."""
    return msgpack.packb(
        [CATALOGUE_VERSION, cat.window, cat.neighbours, cat.half_life_ms, cat.max_products,
         cat.co, cat.category_of, cat.trend, cat.trend_by_cat, cat.anchor, cat.top_n],
        use_bin_type=True,
    )  # fmt: skip


def decode_catalogue(data: bytes) -> Catalogue:
    for done in decoding(data):
        if done is not None:
            return done
    raise AssertionError("unreachable: `decoding` ends with the catalogue")


def decoding(data: bytes, step: int = STEP_ENTRIES) -> Iterator[Catalogue | None]:
    """`decode_catalogue` in steps: yields None after each `step` co-occurrence rows, then the
    catalogue. A published index is megabytes; the API reads it between requests, one step
    at a time, instead of stopping its event loop for the whole of it.

    Raises `ProductsError` (at the step that finds it) for anything but a version-1 index."""
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=len(data) + 1)
    unpacker.feed(data)
    try:
        size = unpacker.read_array_header()
        version = unpacker.unpack() if size else None
        if version != CATALOGUE_VERSION:
            raise ProductsError(f"unknown product index version {version!r}")
        if size != 11:
            raise ProductsError(f"product index has {size - 1} fields, expected 10")
        window, neighbours, half_life_ms, max_products = (unpacker.unpack() for _ in range(4))
        co: dict[str, dict[str, float]] = {}
        rows = unpacker.read_map_header()
        for i in range(rows):
            product = unpacker.unpack()
            co[product] = unpacker.unpack()
            if i % step == step - 1:
                yield None
        cat_of, trend, by_cat, anchor, top = (unpacker.unpack() for _ in range(5))
        if unpacker.tell() != len(data):
            raise ProductsError(f"product index has {len(data) - unpacker.tell()} extra bytes")
    except ProductsError:
        raise
    except (ValueError, TypeError, msgpack.OutOfData) as exc:  # (msgpack's errors included)
        raise ProductsError(f"product index is not msgpack: {exc}") from exc
    yield Catalogue(window=window, neighbours=neighbours, half_life_ms=half_life_ms,
                    max_products=max_products, co=co, category_of=cat_of, trend=trend,
                    trend_by_cat=by_cat, anchor=anchor, top_n=top)  # fmt: skip


def publishing(
    cat: Catalogue,
    products: int = 20_000,
    neighbours: int = 20,
    categories: int = 1_000,
    step: int = STEP_ENTRIES,
) -> Iterator[bytes | None]:
    """``encode_catalogue(cat.compact(products, neighbours, categories))`` in steps of
    bounded work: yields None after each (ranking the products; each `step` rows; the
    categories), then the encoded index. The dataflow takes one step between batches, so a
    publication (~0.3 s of work for 80,000 products) never stalls the flow for long.

    `cat` may go on learning between steps: each row is read when it is packed, so the
    index mixes moments less than a publication apart (suggestions are statistics); if the
    trend's anchor moves meanwhile (a rebase: values rescaled) the publication starts over."""
    while True:
        anchor = cat.anchor
        keep = _top(cat.trend, products)
        yield None
        pk = msgpack.Packer(use_bin_type=True, autoreset=False)
        pk.pack_array_header(11)
        for value in (CATALOGUE_VERSION, cat.window, cat.neighbours, cat.half_life_ms,
                      cat.max_products):  # fmt: skip
            pk.pack(value)
        rows = cat.co
        have = [p for p in keep if p in rows]
        pk.pack_map_header(len(have))
        for i in range(0, len(have), step):
            for p in have[i : i + step]:
                row = rows.get(p, {})  # (pruned meanwhile: no partners)
                pk.pack(p)
                pk.pack(row if len(row) <= neighbours else dict(_largest(row, neighbours)))
            yield None
        of = cat.category_of
        pk.pack({p: c for p in keep if (c := of.get(p)) is not None})
        pk.pack(keep)
        yield None
        busiest = _largest_tables(cat.trend_by_cat, categories)
        yield None
        pk.pack_map_header(len(busiest))
        per_step = max(1, step // 10)  # a category's table is ranked: ~10 rows' work
        for i in range(0, len(busiest), per_step):
            for c, table in busiest[i : i + per_step]:
                pk.pack(c)
                pk.pack(_top(table, cat.top_n))
            yield None
        pk.pack(anchor)
        pk.pack(cat.top_n)
        if cat.anchor == anchor:
            yield pk.bytes()
            return


def for_profile(cat: Catalogue, profile: Profile, n: int = 10) -> list[str]:
    """`suggest` for a customer's profile: their recently viewed products, their two top
    categories; never what they just bought nor what is already in their cart."""
    recent = profile.recent[: cat.window][::-1]  # the latest few, oldest first
    top = top_of(profile.categories, 2) if profile.categories else ()
    return suggest(cat, recent, top, (*profile.bought, *profile.cart), n)


def trending_only(cat: Catalogue, exclude: Iterable[str] = (), n: int = 10) -> list[str]:
    """The baseline: what is trending overall, minus `exclude`."""
    banned = set(exclude)
    return [p for p in cat.trending(n + len(banned)) if p not in banned][:n]


def top_of(table: Mapping[str, float], n: int) -> list[str]:
    """The `n` keys of highest value (ties: the larger key), best first."""
    return [k for k, _ in _largest(table, n)]


def _largest(table: Mapping[str, float], n: int) -> list[tuple[str, float]]:
    """The `n` entries of highest value, best first (ties: the larger key)."""
    if len(table) > _LARGE and len(table) > n > 0:
        # the whole trending table: the values alone sort in C; only the entries at or above
        # the n-th value then need the (value, key) order, which costs a Python call each
        # (two stable C sorts, by key then by value, give the (value, key) order)
        cut = sorted(table.values(), reverse=True)[n - 1]
        top = sorted([kv for kv in table.items() if kv[1] > cut], key=_KEY, reverse=True)
        top.sort(key=_VALUE, reverse=True)
        ties = sorted([k for k, v in table.items() if v == cut], reverse=True)
        return top + [(k, cut) for k in ties[: n - len(top)]]
    if n * 8 >= len(table):  # a large share of it: one C sort beats n heap operations
        return sorted(table.items(), key=_value_then_key, reverse=True)[:n]
    return heapq.nlargest(n, table.items(), key=_value_then_key)


def _top(table: Mapping[str, float], n: int) -> dict[str, float]:
    """The `n` largest entries of `table` (all of it, copied, when it is that small)."""
    return dict(table) if len(table) <= n else dict(_largest(table, n))


def _largest_tables(
    tables: Mapping[str, dict[str, float]], n: int
) -> list[tuple[str, dict[str, float]]]:
    return heapq.nlargest(n, tables.items(), key=lambda kv: (sum(kv[1].values()), kv[0]))


def _value_then_key(kv: tuple[str, float]) -> tuple[float, str]:
    return kv[1], kv[0]
