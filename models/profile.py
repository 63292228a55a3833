"""The profile: what the dataflow publishes to Redis for a customer and the API renders.

The stored blob is a compact, versioned msgpack array (no dedupe set, no cart log: only what
readers need). `render` turns it into the JSON document of ``GET /v1/customers/{id}`` at a
given time, so decayed scores are current when read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import msgpack

from models.consent import ConsentPolicy
from models.customer import CustomerState, ProfileParams, StateError
from models.events import CHANNELS

TOP_AFFINITIES: Final = 10
DEFAULT_POLICY: Final = ConsentPolicy()
PROFILE_VERSION: Final = 3  # 3: `bought`; a version-2 blob reads with none


@dataclass(slots=True)
class Profile:
    """Decoded profile blob."""

    customer_id: str
    first_seen: int
    last_seen: int
    anchor: int
    half_life_ms: int
    session_gap_ms: int
    counts: dict[str, int]
    decayed: dict[str, float]
    categories: dict[str, float]
    brands: dict[str, float]
    sessions: int
    current_session: list[Any] | None  # [start, end, events, last_ts, channel]
    recent: list[str]  # most recent first
    cart: dict[str, list[float]]
    cart_updated: int | None
    orders: int
    revenue: float
    last_order: int | None
    channels: dict[str, int]
    traits: dict[str, Any]
    consent: dict[str, list[Any]]  # "channel:purpose" -> [ts, hash, granted, source]
    ids: list[str]  # the other ids linked to this customer
    bought: list[str]  # the latest purchases, most recent first


def _row(s: CustomerState, params: ProfileParams, ids: list[str]) -> list[Any]:
    # `Profile`'s fields in order, straight from the state: this runs once per changed
    # customer per batch in the dataflow
    return [
        s.customer_id,
        s.first_seen,
        s.last_seen,
        s.anchor,
        params.half_life_ms,
        params.session_gap_ms,
        s.counts,
        s.decayed,
        s.categories,
        s.brands,
        s.sessions_closed + len(s.sessions),
        s.sessions[-1] if s.sessions else None,
        [pid for _, pid in reversed(s.recent)],
        s.cart() if s.cart_log else s.cart_base,
        s.cart_updated,
        s.orders,
        s.revenue,
        s.last_order,
        s.channels,
        s.traits,
        s.consent,
        ids,
        [pid for _, pid in reversed(s.bought)],
    ]


def to_profile(s: CustomerState, params: ProfileParams, ids: list[str] | None = None) -> Profile:
    return Profile(*_row(s, params, ids or []))


def encode_profile(s: CustomerState, params: ProfileParams, ids: list[str] | None = None) -> bytes:
    """The profile blob: a versioned msgpack array of `Profile`'s fields."""
    return _packer.pack([PROFILE_VERSION, *_row(s, params, ids or [])])


def decode_profile(data: bytes) -> Profile:
    row = msgpack.unpackb(data, raw=False)
    if not isinstance(row, list) or not row or row[0] not in (2, PROFILE_VERSION):
        raise StateError(f"unknown profile version {row[0] if row else None!r}")
    if row[0] == 2:  # written before `bought` was kept
        row.append([])
    return Profile(*row[1:])


_packer = msgpack.Packer(use_bin_type=True)


def iso(ms: int | None) -> str | None:
    """Epoch milliseconds → ISO-8601 UTC.

    >>> iso(1569888000000)
    '2019-10-01T00:00:00Z'
    """
    if ms is None:
        return None
    text = datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")
    return text.replace(".000+00:00", "Z").replace("+00:00", "Z")


def _consent_view(table: dict[str, list[Any]]) -> dict[str, dict[str, Any]]:
    view: dict[str, dict[str, Any]] = {}
    for key, (ts, _, granted, source) in sorted(table.items()):
        channel, _, purpose = key.partition(":")
        view.setdefault(channel, {})[purpose] = {
            "granted": granted,
            "at": iso(ts),
            "source": source,
        }
    return view


def render(p: Profile, now_ms: int, policy: ConsentPolicy | None = None) -> dict[str, Any]:
    """The profile as the JSON document the API returns, decayed to `now_ms`; `contactable`
    says per channel whether marketing may reach the customer under `policy`."""
    # clamped: a read at a time far from the anchor underflows to 0 rather than overflowing
    factor = 2.0 ** max(-1000.0, min(1000.0, -(now_ms - p.anchor) / p.half_life_ms))

    def decay(table: dict[str, float], top: int | None = None) -> dict[str, float]:
        items = sorted(table.items(), key=lambda kv: (-kv[1], kv[0]))
        return {k: round(v * factor, 4) for k, v in items[:top]}

    cart_items = [
        {"product_id": pid, "quantity": qty, "price": price}
        for pid, (qty, price) in sorted(p.cart.items())
    ]
    session = None
    if p.current_session is not None:
        start, end, n, _, channel = p.current_session
        session = {
            "started_at": iso(start),
            "last_event_at": iso(end),
            "events": n,
            "duration_s": round((end - start) / 1000, 3),
            "channel": channel,
            "active": now_ms - end <= p.session_gap_ms,
        }
    return {
        "customer_id": p.customer_id,
        "ids": sorted(p.ids),
        "first_seen": iso(p.first_seen),
        "last_seen": iso(p.last_seen),
        "events": {
            "total": sum(p.counts.values()),
            "by_type": dict(sorted(p.counts.items())),
            "decayed": decay(p.decayed),
            "half_life_s": p.half_life_ms / 1000,
        },
        "sessions": {"count": p.sessions, "current": session},
        "recent_products": p.recent,
        "affinity": {
            "categories": decay(p.categories, TOP_AFFINITIES),
            "brands": decay(p.brands, TOP_AFFINITIES),
        },
        "cart": {
            "items": cart_items,
            "quantity": sum(i[0] for i in p.cart.values()),
            "value": round(sum(q * pr for q, pr in p.cart.values()), 2),
            "updated_at": iso(p.cart_updated),
        },
        "orders": {
            "count": p.orders,
            "revenue": round(p.revenue, 2),
            "average_value": round(p.revenue / p.orders, 2) if p.orders else None,
            "last_order_at": iso(p.last_order),
            "recent_products": p.bought,
        },
        "channels": {ch: iso(ts) for ch, ts in sorted(p.channels.items())},
        "traits": p.traits,
        "consent": _consent_view(p.consent),
        "contactable": {
            ch: (policy or DEFAULT_POLICY).allowed(p.consent, ch)[0] for ch in CHANNELS
        },
    }
