"""Contact policy, the pure parts: the holdout group and quiet hours in the customer's time
zone. The policy's settings are `config.catalog.ContactPolicy` (the catalog's ``[policy]``);
frequency caps are counted atomically in Redis, in `api/`."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def in_holdout(customer_id: str, share: float, salt: str) -> bool:
    """Whether a customer belongs to the holdout group: a stable share of customers (the same
    answer in every process, for ever, until the salt changes) who never receive messages, so
    that uplift can be measured against them.

    >>> in_holdout("u1", 0.0, "s"), in_holdout("u1", 1.0, "s")
    (False, True)
    """
    if share <= 0.0:
        return False
    return _draw(customer_id, salt) < share


@lru_cache(maxsize=1 << 16)
def _draw(customer_id: str, salt: str) -> float:
    # in [0, 1), uniform over customers and fixed per (customer, salt); cached: every decision
    # asks, and BLAKE2b keyed per call costs more than the lookup
    # BLAKE2b, not CRC-32: a CRC is linear, so groups drawn with two salts would overlap
    digest = hashlib.blake2b(customer_id.encode(), digest_size=8, key=salt.encode()[:64])
    return int.from_bytes(digest.digest(), "big") / 2**64


def zone(name: str | None, default: str = "UTC") -> ZoneInfo:
    """The IANA zone `name` (a customer trait or request context), else `default`."""
    for candidate in (name, default):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def quiet_until(now_ms: int, tz: ZoneInfo, start_min: int, end_min: int) -> int | None:
    """If `now_ms` falls in the quiet hours [start, end) of local time in `tz` (a window may
    span midnight), the epoch ms at which they end; else None.

    >>> utc = ZoneInfo("UTC")
    >>> t = int(datetime(2026, 11, 24, 22, 30, tzinfo=utc).timestamp() * 1000)
    >>> datetime.fromtimestamp(quiet_until(t, utc, 21 * 60, 8 * 60) / 1000, utc).isoformat()
    '2026-11-25T08:00:00+00:00'
    >>> quiet_until(t, ZoneInfo("America/New_York"), 21 * 60, 8 * 60) is None  # 17:30 there
    True
    """
    if start_min == end_min:
        return None
    local = datetime.fromtimestamp(now_ms / 1000, tz)
    minute = local.hour * 60 + local.minute
    spans_midnight = start_min > end_min
    inside = (
        (minute >= start_min or minute < end_min)
        if spans_midnight
        else start_min <= minute < end_min
    )
    if not inside:
        return None
    end = local.replace(hour=end_min // 60, minute=end_min % 60, second=0, microsecond=0)
    if end <= local:
        end = _next_day(end, tz)
    return int(end.timestamp() * 1000)


def _next_day(t: datetime, tz: ZoneInfo) -> datetime:
    # the same wall-clock time on the next calendar day (DST-safe: rebuilt in the zone)
    d = (t.replace(tzinfo=None) + timedelta(days=1)).replace(tzinfo=tz)
    return d.astimezone(tz)
