"""The canonical event: the Segment Spec (track/identify/page/screen/alias/group) plus a channel.

Times are integer milliseconds since the Unix epoch, UTC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final

from config.channels import CHANNELS as CHANNELS  # re-exported: the known channels

SEGMENT_TYPES: Final = ("track", "identify", "page", "screen", "alias", "group")
# internal control events, written by nudge itself, never accepted from clients
ERASE: Final = "erase"
DECISION: Final = "decision"  # a decision served by the API, logged for the learning loop
TYPES: Final = (*SEGMENT_TYPES, ERASE, DECISION)  # append only: the codec stores the index

# Segment e-commerce v2 names nudge understands; any other track name is kept and counted.
PRODUCT_VIEWED: Final = "Product Viewed"
PRODUCT_ADDED: Final = "Product Added"
PRODUCT_REMOVED: Final = "Product Removed"
CART_VIEWED: Final = "Cart Viewed"
CHECKOUT_STARTED: Final = "Checkout Started"
ORDER_COMPLETED: Final = "Order Completed"

CHANNEL_RE: Final = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
# Values of Segment's `context.channel` and common synonyms, mapped onto nudge channels.
CHANNEL_ALIASES: Final = {
    "browser": "web",
    "website": "web",
    "mobile": "app",
    "ios": "app",
    "android": "app",
    "in_store": "store",
    "pos": "store",
    "instore": "store",
    "text": "sms",
    "phone": "call",
}


def erase_marker(customer_id: str, message_id: str, now_ms: int) -> Event:
    """The event that tells the dataflow to forget a customer (GDPR/CCPA erasure)."""
    return Event(ERASE, message_id, now_ms, now_ms, "api", user_id=customer_id)


def erase_markers(customer_id: str, linked: list[str], message_id: str, now_ms: int) -> list[Event]:
    """The erasure of a customer and its linked ids: the customer's marker, and one for each
    linked id (``properties.of``: the customer; ``properties.ids``: all its linked ids, one
    of which the id may point to), each to be sent through its own id's stream partition. An
    event a linked id sends after the erasure is then read after that id's marker: it starts
    a fresh customer rather than being forwarded to the erased one."""
    return [erase_marker(customer_id, message_id, now_ms)] + [
        Event(
            ERASE,
            f"{message_id}:{other}",
            now_ms,
            now_ms,
            "api",
            user_id=other,
            properties={"of": customer_id, "ids": linked},
        )
        for other in linked
    ]


def decision_event(
    customer_id: str,
    decision_id: str,
    message_id: str,
    channel: str,
    score: float,
    explore: bool,
    now_ms: int,
    vector: dict[str, float],
) -> Event:
    """A served decision, as the API logs it into the customer's stream partition: what the
    learning loop joins with the responses (``properties.decision_id``) to label it."""
    props = {
        "decision_id": decision_id, "message_id": message_id, "score": score,
        "explore": explore, "x": vector,
    }  # fmt: skip
    return Event(DECISION, decision_id, now_ms, now_ms, channel, user_id=customer_id,
                 properties=props)  # fmt: skip


@dataclass(slots=True)
class Event:
    """One accepted event, after validation and normalisation."""

    type: str
    message_id: str
    timestamp: int
    received_at: int
    channel: str
    anonymous_id: str | None = None
    user_id: str | None = None
    event: str | None = None  # track name
    name: str | None = None  # page/screen name
    previous_id: str | None = None  # alias
    group_id: str | None = None  # group
    properties: dict[str, Any] = field(default_factory=dict)
    traits: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)

    @property
    def customer_key(self) -> str:
        """The id the event is keyed by: the user id when known, else the anonymous id."""
        key = self.user_id or self.anonymous_id
        assert key is not None, "validated events always carry userId or anonymousId"
        return key

    @property
    def label(self) -> str:
        """What the event counts as: the track name, or the call type for the others."""
        return self.event if self.type == "track" and self.event else self.type
