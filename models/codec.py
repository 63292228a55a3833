"""Versioned msgpack codecs for what crosses a process boundary: events and stream entries.

An event is a positional msgpack array led by its schema version. A stream entry carries a
whole request's events for one partition (one XADD per partition per request), like a record
batch in Kafka.
"""

from __future__ import annotations

from typing import Any, Final

import msgpack

from models import NudgeError
from models.events import TYPES, Event

EVENT_VERSION: Final = 1
ENTRY_FIELD: Final = b"e"
_TYPE_CODE: Final = {t: i for i, t in enumerate(TYPES)}

_packer = msgpack.Packer(use_bin_type=True)


class CodecError(NudgeError):
    """Bytes that are not a known version of nudge's schema."""


def event_to_row(ev: Event) -> list[Any]:
    return [
        EVENT_VERSION,
        _TYPE_CODE[ev.type],
        ev.message_id,
        ev.timestamp,
        ev.received_at,
        ev.channel,
        ev.anonymous_id,
        ev.user_id,
        ev.event,
        ev.name,
        ev.previous_id,
        ev.group_id,
        ev.properties or None,
        ev.traits or None,
        ev.context or None,
    ]


def row_to_event(row: Any) -> Event:
    if not isinstance(row, list) or not row or row[0] != EVENT_VERSION:
        raise CodecError(f"not a version {EVENT_VERSION} event row: {str(row)[:60]}")
    try:
        (_, code, mid, ts, rcv, ch, anon, uid, name_ev, name, prev, grp, props, traits, ctx) = row
        if not (
            type(ts) is int
            and type(rcv) is int
            and type(mid) is str
            and type(ch) is str
            and (uid or anon)
            and (props is None or type(props) is dict)
            and (traits is None or type(traits) is dict)
            and (ctx is None or type(ctx) is dict)
            and (name_ev is None or type(name_ev) is str)
            and (uid is None or type(uid) is str)
            and (anon is None or type(anon) is str)
        ):
            raise CodecError(f"event row with fields of the wrong type: {str(row)[:60]}")
        # positional: this runs for every event the dataflow reads
        return Event(
            TYPES[code], mid, ts, rcv, ch, anon, uid, name_ev, name, prev, grp,
            props or {}, traits or {}, ctx or {},
        )  # fmt: skip
    except (ValueError, IndexError, TypeError) as exc:
        raise CodecError(f"malformed event row: {exc}") from exc


def encode_event(ev: Event) -> bytes:
    """One event → msgpack bytes.

    >>> ev = Event("track", "m1", 1, 2, "web", user_id="u", event="Product Viewed")
    >>> decode_event(encode_event(ev)) == ev
    True
    """
    return _packer.pack(event_to_row(ev))


def decode_event(data: bytes) -> Event:
    try:
        row = msgpack.unpackb(data, raw=False)
    except Exception as exc:
        raise CodecError(f"not msgpack: {exc}") from exc
    return row_to_event(row)


def encode_entry(events: list[Event]) -> bytes:
    """Several events as the payload of one stream entry."""
    return _packer.pack([event_to_row(ev) for ev in events])


def decode_entry(data: bytes) -> list[Event]:
    return [row_to_event(row) for row in unpack_rows(data, "stream entry", "events", CodecError)]


def unpack_rows(data: bytes, entry: str, what: str, error: type[Exception]) -> list[Any]:
    """A stream entry's payload: a msgpack array of records (`what`), else `error`."""
    try:
        rows = msgpack.unpackb(data, raw=False)
    except Exception as exc:
        raise error(f"{entry} is not msgpack: {exc}") from exc
    if not isinstance(rows, list):
        raise error(f"{entry} is not an array of {what}")
    return rows
