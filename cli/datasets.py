"""Datasets → Segment calls, for `nudge replay`: REES46 and Taobao CSVs, and Segment JSONL.

Each call gets a deterministic `messageId` derived from its source line, so replaying a file
twice counts every event once, and exact duplicate lines count once too.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final

import orjson

REES46_HEADER = "event_time,event_type,product_id"
TAOBAO_HEADER = "user_id,item_id,category_id,behavior_type,timestamp"

REES46_EVENTS = {"view": "Product Viewed", "cart": "Product Added", "purchase": "Order Completed"}
TAOBAO_EVENTS = {
    "pv": "Product Viewed",
    "cart": "Product Added",
    "fav": "Product Added to Wishlist",
    "buy": "Order Completed",
}


class DatasetError(ValueError):
    """A file nudge cannot replay; the message says what was expected."""


def _open(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return path.open(encoding="utf-8", newline="")


def _mid(source: str, line: str) -> str:
    return f"{source}-{hashlib.sha1(line.encode(), usedforsecurity=False).hexdigest()[:24]}"


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


def detect(path: Path) -> str:
    """``rees46``, ``taobao`` or ``jsonl``, from the first line of the file."""
    with _open(path) as f:
        first = f.readline().strip()
    if first.startswith(REES46_HEADER):
        return "rees46"
    if first.startswith(TAOBAO_HEADER):
        return "taobao"
    if first.startswith("{"):
        return "jsonl"
    raise DatasetError(
        f"{path}: unknown format; expected a REES46 CSV (header {REES46_HEADER}…), a Taobao "
        f"UserBehavior CSV (header {TAOBAO_HEADER}) or Segment-style JSON lines"
    )


def rees46_call(row: list[str], line: str) -> tuple[int, dict[str, Any]]:
    event_time, event_type, product_id, category_id, category_code, brand, price, user, sess = row
    ts = int(datetime.strptime(event_time, "%Y-%m-%d %H:%M:%S UTC").replace(tzinfo=UTC).timestamp())
    product: dict[str, Any] = {
        "product_id": product_id,
        "category": category_code or category_id,
        "category_id": category_id,
        "price": float(price),
        "quantity": 1,
    }
    if brand:
        product["brand"] = brand
    name = REES46_EVENTS[event_type]
    props: dict[str, Any]
    if name == "Order Completed":
        # Several purchase rows of one session form one order (see the dataset's SOURCE.md).
        props = {
            "order_id": sess,
            "revenue": float(price),
            "currency": "USD",
            "products": [product],
        }
    else:
        props = {**product, "currency": "USD", "session_id": sess}
    call = {
        "type": "track",
        "event": name,
        "userId": user,
        "messageId": _mid("rees46", line),
        "timestamp": _iso(ts * 1000),
        "properties": props,
        "context": {"channel": "web"},
    }
    return ts * 1000, call


def taobao_call(row: list[str], line: str) -> tuple[int, dict[str, Any]]:
    user, item, category, behavior, ts_s = row
    ts = int(ts_s) * 1000
    name = TAOBAO_EVENTS[behavior]
    product = {"product_id": item, "category": category}
    props: dict[str, Any] = (
        {"order_id": f"{user}-{ts_s}-{item}", "products": [product]}
        if name == "Order Completed"
        else product
    )
    call = {
        "type": "track",
        "event": name,
        "userId": user,
        "messageId": _mid("taobao", line),
        "timestamp": _iso(ts),
        "properties": props,
        "context": {"channel": "app"},
    }
    return ts, call


def read_calls(path: Path, limit: int | None = None) -> Iterator[tuple[int | None, dict[str, Any]]]:
    """Yield ``(event time in ms or None, Segment call)`` for every line of the file."""
    kind = detect(path)
    with _open(path) as f:
        if kind == "jsonl":
            for n, line in enumerate(f):
                if limit is not None and n >= limit:
                    return
                if not line.strip():
                    continue
                call = orjson.loads(line)
                yield None, call
            return
        f.readline()  # header
        convert = rees46_call if kind == "rees46" else taobao_call
        for n, line in enumerate(f):
            if limit is not None and n >= limit:
                return
            row = next(csv.reader([line]))
            try:
                yield convert(row, line.rstrip("\r\n"))
            except (ValueError, KeyError) as exc:
                raise DatasetError(f"{path}:{n + 2}: cannot read row {row!r}: {exc}") from exc


LOGIN_EVENTS: Final = frozenset({"Product Added", "Product Removed", "Order Completed"})


def with_late_logins(
    calls: Iterable[tuple[int | None, dict[str, Any]]],
    login_on: frozenset[str] | None = LOGIN_EVENTS,
) -> Iterator[tuple[int | None, dict[str, Any]]]:
    """The REES46 calls as a shop with logins sees them: each session browses anonymously
    (``anonymousId`` = the session) until its first event named in `login_on` (a cart change
    or an order; None: its first event), then signs in (an ``identify`` linking the session
    to the user) and sends both ids from then on. Calls with no session pass unchanged.
    Exercises identity stitching with real traffic."""
    signed_in: set[str] = set()
    for ts, call in calls:
        props = call.get("properties") or {}
        session = props.get("session_id") or props.get("order_id")
        user = call.get("userId")
        if session is None or user is None:
            yield ts, call
            continue
        anon = f"anon-{session}"
        if session in signed_in:
            yield ts, {**call, "anonymousId": anon}
            continue
        if login_on is None or call.get("event") in login_on:
            signed_in.add(session)
            login = {
                "type": "identify",
                "userId": user,
                "anonymousId": anon,
                "messageId": f"{call['messageId']}-login",
                "timestamp": call["timestamp"],
                "context": call.get("context", {}),
            }
            yield ts, login
            yield ts, {**call, "anonymousId": anon}
            continue
        anonymous = {k: v for k, v in call.items() if k != "userId"}
        yield ts, {**anonymous, "anonymousId": anon}
