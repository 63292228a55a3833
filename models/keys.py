"""The Redis key layout, in one place (versioned; golden tests pin every key).

Every per-customer key carries the customer's hash tag ``{id}`` so that all of one customer's
keys live in one Redis Cluster slot; each event-stream partition has its own tag so the
partitions spread over the cluster.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Final

LAYOUT_VERSION: Final = "v1"


def partition_for(customer_key: str, partitions: int) -> int:
    """Stable partition of a customer key (CRC-32, identical in every process and language).

    >>> partition_for("541312140", 4)
    1
    """
    return zlib.crc32(customer_key.encode()) % partitions


@dataclass(frozen=True, slots=True)
class Keys:
    """Key builder for one deployment (``prefix``) and layout version."""

    prefix: str = "nudge"

    @property
    def base(self) -> str:
        return f"{self.prefix}:{LAYOUT_VERSION}"

    def events(self, partition: int) -> str:
        """Event stream partition ``partition``.

        >>> Keys().events(3)
        'nudge:v1:events:{p3}'
        """
        return f"{self.base}:events:{{p{partition}}}"

    def all_events(self, partitions: int) -> list[str]:
        return [self.events(p) for p in range(partitions)]

    def deadletter(self) -> str:
        """Stream of rejected events with their raw payload and the reason."""
        return f"{self.base}:deadletter"

    def profile(self, customer_id: str) -> str:
        """String key holding the customer's profile blob (msgpack, `models.profile`).

        A plain string, so the dataflow writes a whole batch of profiles with one MSET.

        >>> Keys().profile("u1")
        'nudge:v1:c:{u1}:profile'
        """
        return f"{self.base}:c:{{{customer_id}}}:profile"

    def state(self, id_: str) -> str:
        """String key holding the dataflow's state of an id (`models.identity.encode_node`:
        the customer state, its links and held events, its timers and waiting decisions).

        >>> Keys().state("u1")
        'nudge:v1:c:{u1}:state'
        """
        return f"{self.base}:c:{{{id_}}}:state"

    def armed(self, partition: int) -> str:
        """Set of the ids of one stream partition whose stored state holds a trigger timer or
        a decision awaiting its outcome (read when the dataflow starts the partition, to fire
        them); in the partition's hash slot.

        >>> Keys().armed(3)
        'nudge:v1:armed:{p3}'
        """
        return f"{self.base}:armed:{{p{partition}}}"

    def link(self, id_: str) -> str:
        """String key: the canonical customer id an id was merged into (absent: the id is
        canonical itself, or unknown).

        >>> Keys().link("anon-1")
        'nudge:v1:c:{anon-1}:link'
        """
        return f"{self.base}:c:{{{id_}}}:link"

    def contacts(self, customer_id: str) -> str:
        """Sorted set of the messages served to a customer (score: epoch ms; member:
        ``channel|message_id|decision_id``), kept for the longest cap window: frequency caps
        and cooldowns are counted (and recorded, atomically) on it.

        >>> Keys().contacts("u1")
        'nudge:v1:c:{u1}:contacts'
        """
        return f"{self.base}:c:{{{customer_id}}}:contacts"

    def hold(self, customer_id: str) -> str:
        """String key: the decision being made for a customer (its token), set for a few
        seconds by the read of an API decision and deleted when it ends, so that one
        decision at a time records contacts for a customer (`decision_read.lua`).

        >>> Keys().hold("u1")
        'nudge:v1:c:{u1}:hold'
        """
        return f"{self.base}:c:{{{customer_id}}}:hold"

    def model(self, arm: str) -> str:
        """String key: one (message, channel) arm's response model
        (`models.learning.encode_learner`), published by the dataflow, polled by the API.

        >>> Keys().model("cart_reminder|email")
        'nudge:v1:model:{cart_reminder|email}'
        """
        return f"{self.base}:model:{{{arm}}}"

    def products(self) -> str:
        """The product index the dataflow publishes for suggestions (`models.products`
        msgpack); ``products_version`` changes with it, so readers poll a few bytes."""
        return f"{self.base}:{{products}}:index"

    def products_version(self) -> str:
        return f"{self.base}:{{products}}:version"

    def triggers(self) -> str:
        """The stream of fired triggers (`models.triggers`), for consumer groups."""
        return f"{self.base}:triggers:{{t}}"

    def trigger_sent(self, trigger_id: str) -> str:
        """Marks a trigger id as delivered to `triggers` (same slot: one script does both)."""
        return f"{self.base}:triggers:{{t}}:sent:{trigger_id}"

    def webhook_due(self, group: str) -> str:
        """A webhook consumer group's retry schedule (entry id -> next attempt, ms)."""
        return f"{self.base}:triggers:{{t}}:{group}:due"

    def webhook_attempts(self, group: str) -> str:
        return f"{self.base}:triggers:{{t}}:{group}:attempts"

    def webhook_deadletter(self) -> str:
        """Triggers no webhook URL accepted within the attempts allowed."""
        return f"{self.base}:triggers:{{t}}:deadletter"

    def stats(self) -> str:
        """Hash of deployment-wide counters (``identity_merges_refused``)."""
        return f"{self.base}:stats"

    def meta(self) -> str:
        """Hash of deployment-wide facts every process must agree on (``partitions``)."""
        return f"{self.base}:meta"

    def progress(self) -> str:
        """Hash: stream key → last id durably processed (snapshotted, trimmed up to); and the
        reader's report per stream (`progress_field`)."""
        return f"{self.base}:progress"


PROGRESS_FIELDS: Final = ("read", "n", "ts", "at", "events", "fresh")


def progress_field(stream: str, name: str) -> str:
    """The field of `Keys.progress` holding `name` (one of `PROGRESS_FIELDS`: last id read,
    its ordinal, newest event time, report time, events read, last probe) for `stream`
    (`models.progress` reads them).

    >>> progress_field("nudge:v1:events:{p0}", "read")
    'nudge:v1:events:{p0}:read'
    """
    return f"{stream}:{name}"


def layout_error(stored_partitions: bytes | str | None, partitions: int, keys: Keys) -> str | None:
    """Why a process configured with `partitions` must not run against this Redis, or None.

    Producers and the dataflow must agree on the partition count, or events land in streams
    nobody reads (and customers move partitions, breaking their order).

    >>> layout_error(b"8", 4, Keys())  # doctest: +ELLIPSIS
    'NUDGE_PARTITIONS=4, but the event streams of nudge:v1 were set up with 8 partitions: ...'
    >>> layout_error(b"4", 4, Keys()) is None
    True
    """
    if stored_partitions is None or int(stored_partitions) == partitions:
        return None
    return (
        f"NUDGE_PARTITIONS={partitions}, but the event streams of {keys.base} were set up with "
        f"{int(stored_partitions)} partitions: set NUDGE_PARTITIONS={int(stored_partitions)} "
        "(changing it needs the streams drained first)"
    )


def stream_id(entry_id: str | bytes) -> tuple[int, int]:
    """A Redis stream entry id as a comparable ``(milliseconds, sequence)``.

    >>> stream_id("1700000000000-2") < stream_id(b"1700000000001-0")
    True
    """
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)
