"""Where the dataflow is in each stream partition (read by `nudge demo` and `nudge lag`)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis

from models.keys import Keys, stream_id


@dataclass(frozen=True)
class PartitionLag:
    stream: str
    tip: str  # last entry id in the stream
    read: str  # last id the dataflow has read

    @property
    def caught_up(self) -> bool:
        return stream_id(self.read) >= stream_id(self.tip)

    @property
    def lag_ms(self) -> int:
        return max(0, stream_id(self.tip)[0] - stream_id(self.read)[0])


def lag(client: redis.Redis, keys: Keys, partitions: int) -> list[PartitionLag]:
    streams = keys.all_events(partitions)
    pipe = client.pipeline(transaction=False)
    for stream in streams:
        pipe.xrevrange(stream, count=1)
    pipe.hmget(keys.progress(), [keys.read_field(s) for s in streams])
    *tips, reads = pipe.execute()
    out = []
    for stream, tip, read in zip(streams, tips, reads, strict=True):
        tip_id = tip[0][0].decode() if tip else "0-0"
        out.append(PartitionLag(stream, tip_id, read.decode() if read else "0-0"))
    return out


def wait_caught_up(
    client: redis.Redis, keys: Keys, partitions: int, timeout: float = 120.0
) -> bool:
    """Block until the dataflow has read every partition to its tip (or the timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(p.caught_up for p in lag(client, keys, partitions)):
            return True
        time.sleep(0.1)
    return False
