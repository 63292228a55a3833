"""Segment calls → canonical events: the rules of the HTTP Tracking API and clear errors."""

from __future__ import annotations

from typing import Any

import pytest

from models.segment import InvalidEvent, normalize, parse_time

RCV = parse_time("2024-05-01T12:00:00Z", "t")


def norm(item: Any, **kw: Any) -> Any:
    return normalize(item, received_at=RCV, new_id=lambda: "generated", **kw)


def test_track_with_all_fields() -> None:
    ev = norm(
        {
            "type": "track",
            "event": "Product Added",
            "userId": "u1",
            "anonymousId": "a1",
            "messageId": "m1",
            "timestamp": "2024-05-01T11:59:00Z",
            "properties": {"product_id": "p1", "price": "9.90", "quantity": 2},
            "context": {"channel": "mobile", "locale": "fr-FR"},
        }
    )
    assert (ev.type, ev.event, ev.user_id, ev.anonymous_id, ev.message_id) == (
        "track",
        "Product Added",
        "u1",
        "a1",
        "m1",
    )
    assert ev.timestamp == RCV - 60_000
    assert ev.channel == "app"  # Segment's context.channel "mobile"
    assert ev.properties["price"] == pytest.approx(9.9)  # numeric strings are coerced
    assert ev.customer_key == "u1"


def test_sent_at_corrects_clock_skew() -> None:
    # device clock 1 h fast: timestamp and sentAt both 1 h ahead of the server
    ev = norm(
        {
            "type": "page",
            "anonymousId": "a",
            "timestamp": "2024-05-01T12:59:50Z",
            "sentAt": "2024-05-01T13:00:00Z",
        }
    )
    assert ev.timestamp == RCV - 10_000


def test_batch_sent_at_and_context_apply_to_items() -> None:
    ev = norm(
        {"type": "track", "event": "X", "userId": "u", "timestamp": "2024-05-01T10:00:00Z",
         "context": {"page": {"path": "/a"}}},
        sent_at=parse_time("2024-05-01T10:00:05Z", "t"),
        batch_context={"channel": "email", "page": {"url": "https://x/a"}, "ip": "1.2.3.4"},
    )  # fmt: skip
    assert ev.timestamp == RCV - 5_000
    assert ev.channel == "email"
    assert ev.context["page"] == {"url": "https://x/a", "path": "/a"}
    assert ev.context["ip"] == "1.2.3.4"


def test_defaults_message_id_time_and_channel() -> None:
    ev = norm({"type": "screen", "userId": 42, "name": "Home"})
    assert ev.message_id == "generated"
    assert ev.timestamp == RCV
    assert ev.user_id == "42"
    assert ev.channel == "app"
    assert norm({"type": "page", "userId": "u"}).channel == "web"
    assert norm({"type": "track", "event": "E", "userId": "u",
                 "properties": {"channel": "Store"}}).channel == "store"  # fmt: skip


def test_endpoint_type_is_implied() -> None:
    ev = norm({"event": "Order Completed", "userId": "u"}, type_hint="track")
    assert ev.type == "track"


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ([1, 2], "(event)"),
        ({"type": "nope", "userId": "u"}, "type"),
        ({"type": "track", "event": "E"}, "userId"),
        ({"type": "track", "userId": "u"}, "event"),
        ({"type": "track", "userId": "u", "event": ""}, "event"),
        ({"type": "track", "userId": "u", "event": "E", "timestamp": "yesterday"}, "timestamp"),
        ({"type": "track", "userId": "u", "event": "E", "properties": []}, "properties"),
        ({"type": "track", "userId": "u", "event": "E", "properties": {"price": "cheap"}},
         "properties.price"),
        ({"type": "track", "userId": "u", "event": "E",
          "properties": {"products": [{"quantity": "two"}]}}, "properties.products[0].quantity"),
        ({"type": "track", "userId": {"a": 1}, "event": "E"}, "userId"),
        ({"type": "track", "userId": "u" * 300, "event": "E"}, "userId"),
        ({"type": "alias", "userId": "u"}, "previousId"),
        ({"type": "group", "userId": "u"}, "groupId"),
        ({"type": "track", "userId": "u", "event": "E", "context": {"channel": "Web Site!"}},
         "context.channel"),
        ({"type": "identify", "userId": "u", "traits": "vip"}, "traits"),
        ({"type": "track", "userId": "u", "event": "E", "timestamp": "3019-01-01T00:00:00Z"},
         "timestamp"),
        ({"type": "track", "userId": "u", "event": "E", "timestamp": 1700000000},
         "timestamp"),
        ({"type": "track", "userId": "u", "event": "E", "properties": {"price": float("nan")}},
         "properties.price"),
        ({"type": "track", "userId": "u", "event": "E", "properties": {"total": "inf"}},
         "properties.total"),
        ({"type": "track", "userId": "u", "event": "E", "properties": {"price": 1e300}},
         "properties.price"),
        ({"type": "track", "userId": "u", "event": "E", "properties": {"quantity": 0}},
         "properties.quantity"),
        ({"type": "track", "userId": "u", "event": "E", "properties": {"quantity": -3}},
         "properties.quantity"),
        ({"type": "track", "userId": "u", "event": "E", "properties": {"price": -1}},
         "properties.price"),
        ({"type": "track", "userId": "u", "event": "E", "timestamp": "2024-05-01T14:00:00Z"},
         "timestamp"),  # two hours ahead of the server
        ({"type": "track", "userId": "u", "event": "E", "timestamp": "2099-01-01T00:00:00Z",
          "sentAt": "1970-01-01T00:00:00Z"}, "timestamp"),  # lands in 2150 once corrected
    ],
)  # fmt: skip
def test_invalid_events_name_the_field(item: Any, field: str) -> None:
    with pytest.raises(InvalidEvent) as err:
        norm(item)
    assert err.value.field == field
    assert err.value.reason


def test_wrong_type_for_endpoint() -> None:
    with pytest.raises(InvalidEvent, match="takes 'identify'"):
        norm({"type": "track", "event": "E", "userId": "u"}, type_hint="identify")
