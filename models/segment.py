"""Segment HTTP Tracking API payloads → canonical `Event`s, with errors that name the field.

Follows Segment's rules: `userId` or `anonymousId` is required (`alias` needs `previousId` and
`userId`, `group` needs `groupId`, `track` needs `event`); `timestamp` is corrected for the
client's clock skew with ``receivedAt - (sentAt - timestamp)`` when `sentAt` is present; a
batch's top-level `context` is merged under each item's own.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from models import NudgeError
from models.consent import CONSENT_EVENT, InvalidConsent, statements
from models.events import CHANNEL_ALIASES, CHANNEL_RE, SEGMENT_TYPES, Event

MAX_ID_LEN: Final = 256
# event times outside these bounds are refused (1970-01-01 .. 2100-01-01, in ms)
MIN_TIME_MS: Final = 0
MAX_TIME_MS: Final = 4_102_444_800_000
# how far ahead of the server's clock an event may be (after the sentAt correction)
MAX_FUTURE_MS: Final = 3600 * 1000
MAX_NAME_LEN: Final = 256
# numeric e-commerce properties that must be numbers when present
NUMERIC_PROPS: Final = ("price", "quantity", "revenue", "total", "value", "subtotal")


class InvalidEvent(NudgeError):
    """One event is not valid; `field` names the offending field (dotted path)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def parse_time(value: Any, field: str) -> int:
    """ISO-8601 → epoch milliseconds; naive times are taken as UTC, 1970..2100 only.

    >>> parse_time("2019-10-01T00:00:00Z", "timestamp")
    1569888000000
    >>> parse_time("2019-10-01T02:00:00+02:00", "timestamp")
    1569888000000
    """
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value)
        except ValueError as exc:
            raise InvalidEvent(field, f"{value[:40]!r} is not an ISO-8601 date-time") from exc
    else:
        raise InvalidEvent(field, "must be an ISO-8601 string")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    ms = int(dt.timestamp() * 1000)
    if not MIN_TIME_MS <= ms < MAX_TIME_MS:
        raise InvalidEvent(field, f"{value!s:.40} is outside 1970..2100")
    return ms


def _opt_id(item: Mapping[str, Any], field: str) -> str | None:
    value = item.get(field)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidEvent(field, "must be a string")
    text = str(value)
    if len(text) > MAX_ID_LEN:
        raise InvalidEvent(field, f"longer than {MAX_ID_LEN} characters")
    return text


def _obj(item: Mapping[str, Any], field: str) -> dict[str, Any]:
    value = item.get(field)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidEvent(field, "must be a JSON object")
    return value


def _channel(item: Mapping[str, Any], props: Mapping[str, Any], ctx: Mapping[str, Any]) -> str:
    raw: Any = props.get("channel")
    field = "properties.channel"
    if raw is None:
        raw, field = ctx.get("channel"), "context.channel"
    if raw is None:
        if item.get("type") == "screen" or "app" in ctx or ctx.get("device"):
            return "app"
        return "web"
    if not isinstance(raw, str):
        raise InvalidEvent(field, "must be a string such as 'web', 'app', 'email'")
    ch = raw.strip().lower()
    ch = CHANNEL_ALIASES.get(ch, ch)
    if not CHANNEL_RE.match(ch):
        raise InvalidEvent(field, f"{raw[:40]!r} is not a channel name (lower-case word)")
    return ch


MAX_AMOUNT: Final = 1e12  # larger prices or quantities are data errors, and sums overflow


def _check_numbers(props: dict[str, Any], prefix: str) -> None:
    for name in NUMERIC_PROPS:
        value = props.get(name)
        if value is None:
            continue
        if isinstance(value, str):
            try:
                value = props[name] = float(value)
            except ValueError as exc:
                raise InvalidEvent(f"{prefix}.{name}", "must be a number") from exc
        elif isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidEvent(f"{prefix}.{name}", "must be a number")
        if not math.isfinite(value) or abs(value) > MAX_AMOUNT:
            raise InvalidEvent(f"{prefix}.{name}", "must be a finite number within ±1e12")
        if name == "quantity" and value <= 0:
            raise InvalidEvent(f"{prefix}.quantity", "must be positive")
        if name == "price" and value < 0:
            raise InvalidEvent(f"{prefix}.price", "must not be negative")
    products = props.get("products")
    if products is not None:
        if not isinstance(products, list):
            raise InvalidEvent(f"{prefix}.products", "must be an array of objects")
        for i, product in enumerate(products):
            if not isinstance(product, dict):
                raise InvalidEvent(f"{prefix}.products[{i}]", "must be an object")
            _check_numbers(product, f"{prefix}.products[{i}]")


def _check_consent(consent: Any, field: str) -> None:
    try:
        for _ in statements(consent, field):
            pass
    except InvalidConsent as exc:
        raise InvalidEvent(exc.field, exc.reason) from exc


def _merge_context(batch_ctx: Mapping[str, Any] | None, ctx: dict[str, Any]) -> dict[str, Any]:
    if not batch_ctx:
        return ctx
    if not ctx:
        return dict(batch_ctx)  # shallow: nested objects are shared, never mutated
    merged = dict(batch_ctx)
    for key, value in ctx.items():
        base = merged.get(key)
        merged[key] = (
            {**base, **value} if isinstance(base, dict) and isinstance(value, dict) else value
        )
    return merged


def normalize(
    item: Any,
    *,
    received_at: int,
    new_id: Callable[[], str],
    type_hint: str | None = None,
    sent_at: int | None = None,
    batch_context: Mapping[str, Any] | None = None,
) -> Event:
    """Validate one Segment call and return the canonical event, or raise `InvalidEvent`.

    `type_hint` is the call type of a single-call endpoint (``/v1/track`` …); inside a batch
    each item carries its own `type`. `sent_at` is the batch's `sentAt`, if any.

    >>> ev = normalize({"type": "track", "event": "Product Viewed", "userId": "u1",
    ...                 "timestamp": "2024-01-01T00:00:10Z", "sentAt": "2024-01-01T00:00:20Z"},
    ...                received_at=1704067230000, new_id=lambda: "m1")
    >>> ev.timestamp - 1704067200000, ev.channel, ev.message_id   # 10 s skew corrected
    (20000, 'web', 'm1')
    """
    if not isinstance(item, dict):
        raise InvalidEvent("(event)", "must be a JSON object")
    typ = item.get("type", type_hint)
    if type_hint is not None and typ != type_hint:
        raise InvalidEvent("type", f"this endpoint takes {type_hint!r} calls, got {typ!r}")
    if typ not in SEGMENT_TYPES:
        raise InvalidEvent("type", f"must be one of {', '.join(SEGMENT_TYPES)}")

    user_id = _opt_id(item, "userId")
    anonymous_id = _opt_id(item, "anonymousId")
    if user_id is None and anonymous_id is None:
        raise InvalidEvent("userId", "userId or anonymousId is required")
    message_id = _opt_id(item, "messageId") or new_id()

    props = _obj(item, "properties")
    traits = _obj(item, "traits")
    ctx = _merge_context(batch_context, _obj(item, "context"))

    event_name = name = previous_id = group_id = None
    if typ == "track":
        event_name = item.get("event")
        if not isinstance(event_name, str) or not event_name.strip():
            raise InvalidEvent("event", "track calls need the event name")
        if len(event_name) > MAX_NAME_LEN:
            raise InvalidEvent("event", f"longer than {MAX_NAME_LEN} characters")
        _check_numbers(props, "properties")
        if event_name == CONSENT_EVENT:
            _check_consent(props.get("consent"), "properties.consent")
            if props.get("source") is not None and not isinstance(props["source"], str):
                raise InvalidEvent("properties.source", "must be a string")
    elif typ in ("page", "screen"):
        raw_name = item.get("name")
        if raw_name is not None and not isinstance(raw_name, str):
            raise InvalidEvent("name", "must be a string")
        name = raw_name
    elif typ == "alias":
        previous_id = _opt_id(item, "previousId")
        if previous_id is None or user_id is None:
            raise InvalidEvent("previousId", "alias calls need previousId and userId")
    elif typ == "identify" and "consent" in traits:
        _check_consent(traits["consent"], "traits.consent")
    elif typ == "group":
        group_id = _opt_id(item, "groupId")
        if group_id is None:
            raise InvalidEvent("groupId", "group calls need groupId")

    raw_ts = item.get("timestamp", item.get("originalTimestamp"))
    item_sent = item.get("sentAt")
    sent = parse_time(item_sent, "sentAt") if item_sent is not None else sent_at
    if raw_ts is None:
        ts = received_at
    else:
        ts = parse_time(raw_ts, "timestamp")
        if sent is not None:
            ts = received_at - (sent - ts)
        if ts > received_at + MAX_FUTURE_MS:
            raise InvalidEvent("timestamp", "more than an hour in the future (check sentAt)")
        if ts < MIN_TIME_MS:
            raise InvalidEvent("timestamp", "before 1970 after the sentAt correction")

    return Event(
        type=typ,
        message_id=message_id,
        timestamp=ts,
        received_at=received_at,
        channel=_channel(item, props, ctx),
        anonymous_id=anonymous_id,
        user_id=user_id,
        event=event_name,
        name=name,
        previous_id=previous_id,
        group_id=group_id,
        properties=props,
        traits=traits,
        context=ctx,
    )
