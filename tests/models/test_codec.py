"""Event codec: versioned msgpack, round trip, and refusal of unknown versions."""

from __future__ import annotations

import msgpack
import pytest

from models.codec import CodecError, decode_entry, decode_event, encode_entry, encode_event
from models.events import Event


def sample(i: int = 0) -> Event:
    return Event(
        type="track",
        message_id=f"m{i}",
        timestamp=1_700_000_000_000 + i,
        received_at=1_700_000_000_500,
        channel="web",
        anonymous_id="a",
        user_id="u",
        event="Product Viewed",
        properties={"product_id": "p", "price": 1.5, "nested": {"x": [1, 2]}},
        traits={},
        context={"locale": "en-GB"},
    )


def test_round_trip() -> None:
    ev = sample()
    assert decode_event(encode_event(ev)) == ev
    evs = [sample(i) for i in range(5)]
    assert decode_entry(encode_entry(evs)) == evs


def test_compact() -> None:
    # positional schema: no field names on the wire
    assert b"message_id" not in encode_event(sample())
    assert len(encode_event(sample())) < 120


def test_unknown_version_is_refused() -> None:
    row = msgpack.unpackb(encode_event(sample()))
    row[0] = 99
    with pytest.raises(CodecError, match="not a version 1 event row"):
        decode_event(msgpack.packb(row))
    with pytest.raises(CodecError):
        decode_entry(b"\xc1garbage")
    with pytest.raises(CodecError):
        decode_entry(msgpack.packb({"not": "a list"}))
