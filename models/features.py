"""What eligibility rules and templates see of a customer: a flat view of the profile at a
moment, for a channel (pure; the same function serves the API, the dataflow and tests).

Rules (CEL, `config.catalog`) read `features(...)`; templates read `placeholders(...)`.
Durations are in seconds or days as floats; "never" is -1 (`days_since_order` of a customer
who never ordered), so rules compare numbers without null checks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from models.events import PRODUCT_VIEWED
from models.profile import Profile

DAY_MS: Final = 86_400_000
NEVER: Final = -1.0


def features(
    p: Profile,
    now_ms: int,
    channel: str,
    context: Mapping[str, Any] | None = None,
    tz_offset_min: int = 0,
) -> dict[str, Any]:
    """The variables of a rule (names listed in `config.catalog.RULE_VARIABLES`)."""
    cart = p.cart
    items = sum(1 for q, _ in cart.values() if q > 0)
    value = round(sum(q * pr for q, pr in cart.values()), 2)
    local = datetime.fromtimestamp((now_ms + tz_offset_min * 60_000) / 1000, tz=UTC)
    return {
        "cart": {
            "items": items,
            "quantity": sum(q for q, _ in cart.values()),
            "value": value,
            "age_s": (now_ms - p.cart_updated) / 1000 if p.cart_updated is not None else NEVER,
            "products": sorted(cart),
        },
        "orders": p.orders,
        "revenue": round(p.revenue, 2),
        "days_since_order": (now_ms - p.last_order) / DAY_MS if p.last_order else NEVER,
        "days_since_seen": (now_ms - p.last_seen) / DAY_MS,
        "days_as_customer": (now_ms - p.first_seen) / DAY_MS,
        "sessions": p.sessions,
        "events": dict(p.counts),
        "total_events": sum(p.counts.values()),
        "views": p.counts.get(PRODUCT_VIEWED, 0),
        "recent_products": list(p.recent),
        "top_category": max(p.categories, key=lambda k: (p.categories[k], k), default=""),
        "channel": channel,
        "traits": dict(p.traits),
        "context": dict(context or {}),
        "hour": local.hour,
        "weekday": local.isoweekday(),
    }


def placeholders(
    p: Profile, feats: Mapping[str, Any], suggestions: Sequence[str] = ()
) -> dict[str, str]:
    """The values templates may use (names listed in `config.catalog.PLACEHOLDERS`)."""
    traits = p.traits
    name = str(traits.get("name") or traits.get("first_name") or "")
    first = str(traits.get("first_name") or (name.split()[0] if name else "there"))
    cart = feats["cart"]
    return {
        "customer_id": p.customer_id,
        "name": name or first,
        "first_name": first,
        "cart_items": str(cart["items"]),
        "cart_value": f"{cart['value']:.2f}",
        "cart_first_item": cart["products"][0] if cart["products"] else "your picks",
        "top_category": feats["top_category"] or "our latest",
        "suggestions": ", ".join(suggestions) if suggestions else "our bestsellers",
        "orders": str(p.orders),
    }
