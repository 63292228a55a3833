"""What eligibility rules and templates see of a customer: a flat view of the profile at a
moment, for a channel (pure; the same function serves the API, the dataflow and tests).

Rules (CEL, `config.catalog`) read `features(...)`; templates read `placeholders(...)`.
Durations are in seconds or days as floats; "never" is -1 (`days_since_order` of a customer
who never ordered), so rules compare numbers without null checks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
    """The variables of a rule (names listed in `config.catalog.RULE_VARIABLES`).

    This runs on every decision (and for every channel a trigger is decided on), so the cart
    is summed in one pass and the local hour and weekday come from integer arithmetic."""
    cart = p.cart
    if cart:
        items = 0
        quantity: float = 0
        total: float = 0
        for q, pr in cart.values():
            if q > 0:
                items += 1
            quantity += q
            total += q * pr
        value: float = round(total, 2)
        products = sorted(cart)
    else:
        items = quantity = value = 0
        products = []
    local_ms = now_ms + tz_offset_min * 60_000
    counts = p.counts
    categories = p.categories
    return {
        "cart": {
            "items": items,
            "quantity": quantity,
            "value": value,
            "age_s": (now_ms - p.cart_updated) / 1000 if p.cart_updated is not None else NEVER,
            "products": products,
        },
        "orders": p.orders,
        "revenue": round(p.revenue, 2),
        "days_since_order": (now_ms - p.last_order) / DAY_MS if p.last_order else NEVER,
        "days_since_seen": (now_ms - p.last_seen) / DAY_MS,
        "days_as_customer": (now_ms - p.first_seen) / DAY_MS,
        "sessions": p.sessions,
        "events": dict(counts),
        "total_events": sum(counts.values()),
        "views": counts.get(PRODUCT_VIEWED, 0),
        "recent_products": list(p.recent),
        # the category with the highest affinity (ties: the greatest name)
        "top_category": max(zip(categories.values(), categories, strict=True), default=(0, ""))[1],
        "channel": channel,
        "traits": dict(p.traits),
        "context": dict(context or {}),
        "hour": local_ms // 3_600_000 % 24,
        "weekday": (local_ms // DAY_MS + 3) % 7 + 1,  # ISO: 1970-01-01 was a Thursday (4)
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
