"""The nudge dataflow: read the event streams, key by customer, update state, write profiles.

``python -m bytewax.run dataflows.flow:flow`` runs it with settings from the environment;
``nudge dataflow`` does the same with recovery set up.
"""

from __future__ import annotations

from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import Sink

from config import Settings, get_settings
from config.runtime import tune_gc
from dataflows.redis_io import RedisProfileSink, RedisStreamSource, client_factory
from models.customer import CustomerState, ProfileParams, decode_state, encode_state, step
from models.events import ERASE, Event
from models.keys import Keys
from models.profile import encode_profile

ERASED = b""  # the profile "blob" of an erased customer: the sink deletes the key


def profile_params(settings: Settings) -> ProfileParams:
    return ProfileParams(
        half_life_ms=settings.decay_half_life_s * 1000,
        session_gap_ms=settings.session_gap_s * 1000,
        recent_products=settings.recent_products,
        dedupe_window_ms=settings.dedupe_window_s * 1000,
        lateness_ms=settings.lateness_s * 1000,
    )


class CustomerLogic(StatefulBatchLogic[Event, bytes, bytes]):
    """Applies `models.customer.step` to a customer's events; emits the profile if changed.

    Snapshots are the msgpack state codec, so recovery never unpickles our objects and a
    snapshot is an immutable copy without `deepcopy`.
    """

    def __init__(self, params: ProfileParams, resume: bytes | None, recovery: bool = True) -> None:
        if resume == b"":
            raise RuntimeError(
                "a recovery snapshot is empty: it was taken by a flow built with recovery=False "
                "but run with a recovery store; rebuild the flow with recovery=True"
            )
        self.params = params
        self.state: CustomerState | None = decode_state(resume) if resume else None
        # Bytewax asks for snapshots more often than the state changes (every touched key, at
        # every epoch, with or without recovery): encode once per change, and never when no
        # recovery store will keep them.
        self._snapshot: bytes | None = resume if recovery else b""
        self._recovery = recovery

    def on_batch(self, values: list[Event]) -> tuple[list[bytes], bool]:
        state = self.state
        changed = False
        erased = False
        params = self.params
        for ev in values:
            if ev.type == ERASE:
                # forget everything: events after the marker, late ones too, start afresh
                state, changed, erased = None, False, True
                continue
            state, did = step(state, ev, params)
            changed |= did
        self.state = state
        if state is None:
            # b"" tells the sink to delete the profile; the key's state is discarded
            return ([ERASED] if erased else []), StatefulBatchLogic.DISCARD
        if erased:
            changed = True
        if changed:
            if self._recovery:
                self._snapshot = None
            return [encode_profile(state, params)], StatefulBatchLogic.RETAIN
        return [], StatefulBatchLogic.RETAIN

    def snapshot(self) -> bytes:
        if self._snapshot is None:
            assert self.state is not None
            self._snapshot = encode_state(self.state)
        return self._snapshot


def redis_source(settings: Settings, recovery: bool = True) -> RedisStreamSource:
    """The event streams of `settings`, one Bytewax partition per stream partition. Without
    recovery the streams are never trimmed (a restart reads them from the start)."""
    return RedisStreamSource(
        client_factory(settings.require_redis()),
        Keys(settings.key_prefix),
        settings.partitions,
        read_events=settings.read_events,
        backoff_s=settings.idle_backoff_ms / 1000,
        trim_after_s=settings.trim_after_s if recovery else None,
    )


def redis_sink(settings: Settings) -> RedisProfileSink:
    """The profile keys of `settings`."""
    return RedisProfileSink(client_factory(settings.require_redis()), Keys(settings.key_prefix))


def build_flow(
    settings: Settings,
    source: Source[tuple[str, Event]] | None = None,
    sink: Sink[tuple[str, bytes]] | None = None,
    *,
    recovery: bool = True,
) -> Dataflow:
    """Build the dataflow. Tests pass a `TestingSource`/`TestingSink`; production uses Redis.
    `recovery` says whether the run snapshots state (it decides whether streams are trimmed)."""
    source = source or redis_source(settings, recovery)
    sink = sink or redis_sink(settings)
    params = profile_params(settings)

    flow = Dataflow("nudge")
    # the source keys events by customer (`Event.customer_key`) as it decodes them
    keyed = op.input("read_events", flow, source)  # (cid, Event)
    profiles = op.stateful_batch(
        "update_customer", keyed, lambda resume: CustomerLogic(params, resume, recovery)
    )  # (cid, profile blob)
    op.output("write_profiles", profiles, sink)
    return flow


def __getattr__(name: str) -> Any:
    # `flow` for `python -m bytewax.run dataflows.flow:flow`, built on first access so that
    # importing this module reads no environment and opens no connection.
    if name == "flow":
        # Whether `bytewax.run` was given a recovery directory is not ours to parse: assume
        # it was, so snapshots are always real (and a restart without one refuses to rebuild
        # from trimmed streams rather than losing history).
        tune_gc()
        return build_flow(get_settings(), recovery=True)
    raise AttributeError(name)
