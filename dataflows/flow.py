"""The nudge dataflow: read the event streams, key by customer, update state, write profiles.

``python -m bytewax.run dataflows.flow:flow`` runs it with settings from the environment;
``nudge dataflow`` does the same with recovery set up.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import bytewax.operators as op
import redis
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, Source, StatefulSourcePartition
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import Sink

from config import ConfigError, Settings, get_settings
from config.catalog import Catalog, CatalogError, load_catalog
from config.runtime import DATAFLOW_YOUNG, tune_gc
from dataflows import metrics
from dataflows.redis_io import (
    ARMED,
    ERASED,
    FEEDBACK,
    LEARN,
    LEDGER,
    LINK,
    MODEL,
    NOTE,
    OBSERVE,
    PROBE,
    PRODUCTS,
    PROFILE,
    SEND,
    STATE,
    TIMER,
    TRIGGER,
    WRITTEN,
    Keyed,
    NodeStore,
    Output,
    RedisProfileSink,
    RedisStreamSource,
    client_factory,
)
from models.consent import ConsentPolicy
from models.customer import ProfileParams, new_state, profile_params, step
from models.events import DECISION, ERASE, ORDER_COMPLETED, Event
from models.feedback import (
    RESPONSES,
    Example,
    FeedbackBook,
    FeedbackParams,
    Waiting,
)
from models.identity import (
    ANON,
    JOIN,
    Control,
    IdentityParams,
    Lookup,
    Node,
    Outbox,
    Stitcher,
    claim_user,
    decode_node,
    encode_node,
    key_of,
    kind_of,
    knows_every_id,
)
from models.keys import Keys, partition_for
from models.learning import Learner, decode_learner, encode_learner
from models.products import (
    ACTIONS,
    Catalogue,
    Observation,
    decode_catalogue,
    encode_catalogue,
    observations,
    publishing,
)
from models.profile import encode_profile
from models.progress import Probe
from models.triggers import (
    ARMING,
    BROWSE,
    CART,
    CHECKOUT,
    Rule,
    Tick,
    TimerOp,
    Timers,
    TriggerParams,
    arm,
)

_SLOW = frozenset({ERASE, DECISION})


OBSERVE_EVERY = 2_000  # product interactions a worker collects before it sends them on
OBSERVE_WITHIN_S = 1.0  # ... or once the oldest is this old (checked at every batch and tick)


class _Local(threading.local):
    def __init__(self) -> None:
        self.out = Outbox()
        # Product interactions of every customer this worker steps, sent to the "products"
        # step in chunks: one Bytewax item per thousands rather than one per customer batch
        # (which cost ~40% of the flow's throughput). The watermark ticks flush it, so an
        # idle stream's last interactions reach the index within a second (on the workers
        # that hold a tick key; another worker's stay until its next event). A crash loses at
        # most one chunk of these statistics.
        self.observed: list[Observation] = []
        self.observed_since = time.monotonic()

    def take_observed(self, force: bool = False) -> list[Output]:
        observed = self.observed
        if not observed or not (
            force
            or len(observed) >= OBSERVE_EVERY
            or time.monotonic() - self.observed_since >= OBSERVE_WITHIN_S
        ):
            return []
        self.observed = []
        self.observed_since = time.monotonic()
        return [(OBSERVE, observed, None)]


_LOCAL = _Local()


def identity_params(settings: Settings) -> IdentityParams:
    return IdentityParams(enabled=settings.identity, max_ids=settings.identity_max_ids)


def trigger_params(settings: Settings, catalog: Catalog | None = None) -> TriggerParams:
    """The trigger rules of `settings` (each may be off: `Rule.enabled`), held by the quiet
    hours of `catalog` (default: `settings.catalog`'s)."""
    day = settings.trigger_cooldown_s * 1000
    rules = {
        CART: Rule(tuple(d * 1000 for d in settings.trigger_cart_s), day),
        CHECKOUT: Rule(tuple(d * 1000 for d in settings.trigger_checkout_s), day),
        # a browsing timer moves at most once per tenth of its window (it fires 0-10% late)
        BROWSE: Rule(
            tuple(d * 1000 for d in settings.trigger_browse_s),
            day,
            settings.trigger_browse_s[0] * 100 if settings.trigger_browse_s else 0,
        ),
    }
    policy = (catalog or flow_catalog(settings)).policy
    # triggers go out on outbound channels: the catalog's quiet hours hold them
    quiet = (policy.quiet_start_min, policy.quiet_end_min) if policy.quiet_channels else None
    return TriggerParams(rules, settings.trigger_browse_views, settings.partitions, quiet,
                         policy.default_timezone)  # fmt: skip


def flow_catalog(settings: Settings) -> Catalog:
    try:
        return load_catalog(settings.catalog)
    except CatalogError as exc:
        raise ConfigError(f"NUDGE_CATALOG: {exc}") from exc


class CustomerLogic:
    """Applies `models.identity.Stitcher` (which steps `models.customer`) to the events and
    control records of one id; emits its profile if changed, link updates and control records,
    and its timer changes and feedback for its partition (`PartitionLogic`, which runs it and
    stores its node). Answers as a Bytewax logic would (outputs, RETAIN or DISCARD)."""

    def __init__(
        self,
        params: ProfileParams,
        ip: IdentityParams,
        resume: bytes | None,
        prior: Lookup | None = None,
        products: bool = True,
        triggers: TriggerParams | None = None,
    ) -> None:
        """`resume`: the stored node (`encode_node`), or None for a new id. `triggers`: the
        rules to arm timers for (None or all off: none)."""
        self.params = params
        self.ip = ip
        self.prior = prior
        self._actions = ACTIONS if products else {}  # product events worth observing
        on = triggers is not None and any(r.enabled for r in triggers.rules.values())
        self.triggers = triggers if on else None
        self._arming = ARMING if on else frozenset()
        # the id is the node's, or the first item's
        self.node: Node | None = decode_node(resume) if resume else None
        self.stitcher: Stitcher | None = None  # made on first need: most ids never need it
        self.dirty = False  # the last batch may have changed the node (it must be stored)

    def on_batch(self, values: list[Event | Control]) -> tuple[list[Output], bool]:
        # The common case, inline (it runs for every event): a canonical id (or a new one) and
        # events that bring no id it does not know. The first item that is anything else goes
        # to the `Stitcher` with everything after it.
        node = self.node
        done = 0
        changed = False
        timers: list[TimerOp] | None = None
        orders: list[Event] | None = None  # for the feedback join
        if node is None or (node.target is None and not node.pending):
            pp = self.params
            check = self.ip.enabled
            actions = self._actions
            arming = self._arming
            for ev in values:
                if type(ev) is not Event or ev.type in _SLOW or ev.event in RESPONSES:
                    break  # erasure, a served decision or a response to one
                if node is None:
                    key = ev.customer_key  # a plain event is keyed by its own id
                    node = self.node = Node(key, kind_of(key, ev))
                elif node.kind == ANON and ev.user_id == node.key:
                    claim_user(node, ev)  # (created by a served decision)
                if check and not knows_every_id(node, ev):
                    break
                customer = node.customer
                if customer is None:
                    customer = node.customer = new_state(node.key, ev.timestamp)
                if step(customer, ev, pp)[1]:
                    changed = True
                    if ev.event in actions:  # a product interaction, for the product index
                        obs = observations(customer.recent, ev)
                        _LOCAL.observed += obs
                    if ev.event in arming:  # may set or cancel a trigger timer
                        assert self.triggers is not None
                        ops = arm(customer, ev, self.triggers)
                        if ops:
                            timers = ops if timers is None else timers + ops
                    if ev.event == ORDER_COMPLETED:  # may credit a served decision
                        orders = [ev] if orders is None else [*orders, ev]
                done += 1
        if done == len(values):
            self.dirty = changed
            if not changed:
                return [], StatefulBatchLogic.RETAIN
            assert node is not None and node.customer is not None
            blob = encode_profile(node.customer, self.params, node.ids)
            if _LOCAL.observed or timers or orders:
                emit: list[Output] = [(PROFILE, blob, node.key), *_LOCAL.take_observed()]
                if timers:
                    emit += _timer_outputs(timers, node)
                if orders:
                    emit += [(FEEDBACK, ev, node.key) for ev in orders]
                return emit, StatefulBatchLogic.RETAIN
            return [(PROFILE, blob, node.key)], StatefulBatchLogic.RETAIN
        self.dirty = True
        if timers:
            _LOCAL.out.timers += timers
        if orders:
            _LOCAL.out.feedback += orders
        return self._stitch(values[done:] if done else values, changed)

    def _stitch(self, values: list[Any], changed: bool) -> tuple[list[Output], bool]:
        # `values`: events and control records
        out = _LOCAL.out  # one per worker thread, reset after use: no allocation per batch
        stitcher = self.stitcher
        if stitcher is None:
            key = self.node.key if self.node is not None else key_of(values[0])
            stitcher = self.stitcher = Stitcher(
                key, self.ip, self.params, self.prior, tp=self.triggers
            )
        node = self.node = stitcher.apply(self.node, values, out)
        changed |= out.profile_changed
        out.profile_changed = out.touched = False
        emit: list[Output] = []
        if out.removed:
            emit.append((PROFILE, ERASED, stitcher.key))
            out.removed = False
        if out.links:
            emit.extend([(LINK, other, canonical) for other, canonical in out.links.items()])
            out.links = {}
        if out.feedback:  # before the control records: a JOIN takes what waits (`_route`)
            emit.extend([(FEEDBACK, ev, stitcher.key) for ev in out.feedback])
            out.feedback = []
        if out.sends:
            emit.extend([(SEND, control, None) for control in out.sends])
            out.sends = []
        if out.notes:
            emit.extend([(NOTE, note, None) for note in out.notes])
            out.notes = []
        if out.observed:
            if self._actions:
                _LOCAL.observed += out.observed
            out.observed = []
        emit += _LOCAL.take_observed()
        if out.timers:
            emit += _timer_outputs(out.timers, node)
            out.timers = []
        if node is None:
            return emit, StatefulBatchLogic.DISCARD
        if changed and node.customer is not None and node.target is None:
            emit.append((PROFILE, encode_profile(node.customer, self.params, node.ids), node.key))
        return emit, StatefulBatchLogic.RETAIN


class ArmLogic(StatefulBatchLogic[Example, Output, bytes]):
    """Trains one (message, channel) arm's response model on its labelled decisions and
    publishes it after every batch (`models.learning`; msgpack snapshots, no pickle)."""

    def __init__(self, resume: bytes | None) -> None:
        self.learner = decode_learner(resume) if resume else Learner()
        self._blob = resume

    def on_batch(self, values: list[Example]) -> tuple[list[Output], bool]:
        learner = self.learner
        for ex in values:
            learner.learn(ex.message_id, ex.channel, ex.x, ex.y)
        self._blob = encode_learner(learner)
        for key, report in learner.report().items():
            message, _, channel = key.rpartition("|")
            metrics.MODEL_EXAMPLES.labels(message, channel).set(report.pop("examples"))
            for name, value in report.items():
                metrics.MODEL.labels(message, channel, name).set(value)
        return [(MODEL, self._blob, None)], StatefulBatchLogic.RETAIN

    def snapshot(self) -> bytes:
        assert self._blob is not None
        metrics.snapshot_taken("learn", len(self._blob))
        return self._blob


def _timer_outputs(ops: list[TimerOp], node: Node | None) -> list[Output]:
    ids = list(node.ids) if node is not None else []
    for t in ops:
        if t.payload is not None:
            t.payload["ids"] = ids  # the customer's other ids, for the trigger's readers
    return [(TIMER, t, None) for t in ops]


class PartitionLogic(StatefulBatchLogic[Any, Output, bytes]):
    """The customers of one stream partition (`models.keys.partition_for` of their ids): each
    id's node (`CustomerLogic`), their trigger timers (`models.triggers.Timers`) and their
    served decisions awaiting an outcome (`models.feedback.FeedbackBook`), fired and expired
    on the partitions' watermark ticks. `CustomerSource` runs it where the partition is read;
    with a testing source it is a Bytewax step keyed by partition.

    State lives in Redis, not in Bytewax's snapshots: every id whose node, timers or waiting
    decisions change is written (STATE, `Keys.state`) by the sink with its profile, after the
    triggers and control records that follow from it; the partition keeps a bounded cache of
    nodes and reads the others with one MGET per batch. The ids with a timer or a waiting
    decision are indexed per partition (`Keys.armed`, added before their state, removed
    after), and read back when the partition starts. A restart resumes the streams at
    Bytewax's last snapshot, so it reads again events that the stored state may already
    hold: the messageId de-duplication makes them count once, and each stored node holds its
    own timers and waiting decisions, so state and timers never disagree.

    Without a store (tests with Bytewax's testing sink) every node stays in memory."""

    def __init__(
        self,
        make: Callable[[bytes | None], CustomerLogic],
        triggers: TriggerParams,
        store: NodeStore | None,
        partitions: int,
        cache: int,
    ) -> None:
        self._make = make
        self._store = store
        self._partitions = partitions
        self._cache = cache  # nodes kept in memory, at most (past it, those stored go)
        self.partition: int | None = None  # known from its first item
        self.ids: OrderedDict[str, CustomerLogic] = OrderedDict()  # least recently used first
        self._seq: dict[str, int] = {}  # id -> the write sequence of its last STATE
        self.timers = Timers(triggers)
        self.book = FeedbackBook(FeedbackParams())
        self._indexed: set[str] = set()

    def start(self, partition: int) -> None:
        """Take partition `partition`: read back its ids with something armed."""
        self.partition = partition
        if self._store is None:
            return
        armed = self._store.armed(partition)
        for i in range(0, len(armed), 1000):
            self._load(armed[i : i + 1000])
        self._indexed = set(armed)

    def warm(self, ids: list[str]) -> None:
        """Read `ids` (of this partition, not in memory yet) into the cache, in one MGET."""
        self._load(ids)

    def _load(self, ids: list[str]) -> None:
        blobs = self._store.load(ids) if self._store is not None else [None] * len(ids)
        timers, book = self.timers, self.book
        for k, blob in zip(ids, blobs, strict=True):
            lg = self._make(blob)
            node = lg.node
            if node is not None:  # what is in memory is newer than what is stored
                if node.timers is not None and k not in timers.customers:
                    timers.adopt(k, node.timers)
                if node.waiting is not None and k not in book.waiting:
                    book.adopt(k, node.waiting)
            self.ids[k] = lg

    def on_batch(self, values: list[Any]) -> tuple[list[Output], bool]:
        ticks: list[Tick] = []
        probes: list[Output] = []
        groups: dict[str, list[Any]] = {}
        for v in values:
            kind = type(v)
            if kind is tuple:  # (partition, Tick): the partitions' watermarks, to every one
                if self.partition is None:
                    self.start(v[0])
                ticks.append(v[1])
            elif kind is Probe:  # freshness probes (their own keys): to the sink
                probes.append((PROBE, v, None))
            else:
                k = key_of(v)
                group = groups.get(k)
                if group is None:
                    groups[k] = [v]
                else:
                    group.append(v)
        if not groups and not ticks:
            return probes, StatefulBatchLogic.DISCARD
        out: list[Output] = probes
        touched: set[str] = set()
        erased: list[str] = []
        if groups:
            ids = self.ids
            if self.partition is None:
                self.start(partition_for(next(iter(groups)), self._partitions))
            missing = [k for k in groups if k not in ids]
            if missing:
                self._load(missing)
            for k, items in groups.items():
                lg = ids[k]
                ids.move_to_end(k)
                emitted, keep = lg.on_batch(items)
                if emitted:
                    out += self._route(emitted, touched)
                if keep is StatefulBatchLogic.DISCARD:
                    erased.append(k)
                elif lg.dirty:
                    touched.add(k)
        if ticks:
            fired_at = time.time_ns() // 1_000_000
            for tick in ticks:  # after this batch's changes: a cancel wins a close race
                for t in self.timers.advance(tick):
                    out.append((TRIGGER, t, fired_at))
                    touched.add(t.customer_id)
            wm = self.timers.watermark()
            if wm is not None:
                out += [(LEARN, ex, None) for ex in self.book.advance(wm, touched)]
            out += _LOCAL.take_observed()
        if touched or erased:
            out += self._store_changes(touched, erased)
        return out, StatefulBatchLogic.RETAIN

    def _route(self, emitted: list[Output], touched: set[str]) -> list[Output]:
        """Apply a node's timer changes and feedback here; the rest goes on. An id that
        yields to another customer (its JOIN) hands over its waiting decisions with it."""
        rest: list[Output] = []
        for o in emitted:
            tag = o[0]
            if tag == TIMER:
                self.timers.apply(o[1])
                touched.add(o[1].customer_id)
            elif tag == FEEDBACK:
                item = o[1]
                if type(item) is Waiting:  # a group that joined this customer: its decisions
                    done = self.book.merge(o[2], item)
                else:
                    done = self.book.add(o[2], item)
                rest += [(LEARN, ex, None) for ex in done]
                touched.add(o[2])
            else:
                if tag == SEND and o[1].kind == JOIN and o[1].waiting is None:
                    # (a JOIN only readdressed here has its sender's decisions already)
                    w = self.book.take(o[1].sender)
                    if w is not None:
                        o[1].waiting = w.to_row()
                        touched.add(o[1].sender)
                rest.append(o)
        return rest

    def _store_changes(self, touched: set[str], erased: list[str]) -> list[Output]:
        ids, timers, book = self.ids, self.timers, self.book
        for k in erased:
            # an empty node, evicted like any other once the sink has stored the deletion:
            # until then Redis still holds the erased state, never to be read back
            ids[k] = self._make(None)
            timers.forget(k)
            book.forget(k)
            touched.discard(k)
        missing = [k for k in touched if k not in ids]
        if missing:  # fired or expired on the watermark while out of memory
            self._load(missing)
        LEDGER.emitted += 1
        seq = LEDGER.emitted
        out: list[Output] = []
        adds: list[str] = []
        removes = [k for k in erased if k in self._indexed]
        for k in touched:
            node = ids[k].node
            if node is None:
                continue  # timers of an id that has nothing else (never stored)
            node.timers = timers.customers.get(k)
            node.waiting = book.waiting.get(k)
            out.append((STATE, encode_node(node), k))
            self._seq[k] = seq
            if timers.is_armed(k) or k in book.waiting:
                if k not in self._indexed:
                    adds.append(k)
            elif k in self._indexed:
                removes.append(k)
        out += [(STATE, ERASED, k) for k in erased]
        for k in erased:
            self._seq[k] = seq
        if adds or removes:
            self._indexed.update(adds)
            self._indexed.difference_update(removes)
            out.append((ARMED, self.partition, (adds, removes)))
        out.append((WRITTEN, seq, None))
        self._evict()
        return out

    def _evict(self) -> None:
        """Drop the least recently used nodes past the cache's size, once Redis holds them."""
        ids = self.ids
        over = len(ids) - self._cache
        if over <= 0 or self._store is None:
            return
        written = LEDGER.written
        seqs = self._seq
        for k in [k for _, k in zip(range(2 * over), ids, strict=False)]:
            if seqs.get(k, 0) <= written:
                del ids[k]
                seqs.pop(k, None)
                over -= 1
                if not over:
                    break

    def on_eof(self) -> tuple[list[Output], bool]:
        return _LOCAL.take_observed(force=True), StatefulBatchLogic.RETAIN

    def snapshot(self) -> bytes:
        # the state is in Redis: Bytewax keeps only the streams' offsets (and this marker)
        metrics.snapshot_taken("update_customer", 6)
        return b"partition"


def _to_partitions(partitions: int) -> Any:
    """Keys a testing source's items (keyed by id, ticks by `TICK_KEY`) by the partition of
    their id, ticks to every partition."""
    keys = [str(p) for p in range(partitions)]

    def route(kv: tuple[str, Any]) -> list[tuple[str, Any]]:
        key, item = kv
        if type(item) is Tick:
            return [(k, (p, item)) for p, k in enumerate(keys)]
        if type(item) is Probe:
            return [kv]
        return [(keys[partition_for(key, partitions)], item)]

    return route


class CustomerSource(FixedPartitionedSource[tuple[str, Output], str]):
    """The event streams with each partition's customers processed where it is read: a
    `PartitionLogic` per stream partition, fed by its reader (events, control records, its
    own watermark ticks and the other partitions', read from their progress reports).

    Events and control records are in the partition of their id (`partition_for`), so no
    customer item crosses workers or processes: only the outputs for the shop-wide steps
    (product interactions, learning examples) do. Resume state is the reader's."""

    def __init__(
        self, inner: FixedPartitionedSource[Keyed, str], logic: Callable[[], PartitionLogic]
    ) -> None:
        self._inner = inner
        self._logic = logic

    def list_parts(self) -> list[str]:
        return self._inner.list_parts()

    def build_part(self, step_id: str, for_part: str, resume_state: str | None) -> _Customers:
        logic = self._logic()
        logic.start(self._inner.list_parts().index(for_part))
        return _Customers(self._inner.build_part(step_id, for_part, resume_state), logic)


class _Customers(StatefulSourcePartition[tuple[str, Output], str]):
    def __init__(self, reader: StatefulSourcePartition[Keyed, str], logic: PartitionLogic) -> None:
        self._reader = reader
        self._logic = logic
        self._key = str(logic.partition)
        self._ended = False

    def next_batch(self) -> list[tuple[str, Output]]:
        if self._ended:
            raise StopIteration
        try:
            read = self._reader.next_batch()
        except StopIteration:  # a finite source (tests, benches): what is pending goes out
            self._ended = True
            return [(self._key, o) for o in self._logic.on_eof()[0]]
        if not read:
            return []
        part = self._logic.partition
        values = [(part, v) if type(v) is Tick else v for _, v in read]
        key = self._key
        return [(key, o) for o in self._logic.on_batch(values)[0]]

    def next_awake(self) -> datetime | None:
        return self._reader.next_awake()

    def snapshot(self) -> str:
        state = self._reader.snapshot()  # where the partition is read up to; customers in Redis
        metrics.snapshot_taken("read_events", len(state))
        return state

    def close(self) -> None:
        self._reader.close()


class ProductsLogic(StatefulBatchLogic[list[Observation], Output, bytes]):
    """The shop-wide product index (`models.products.Catalogue`: co-occurrence and trending),
    kept from every customer's product interactions and published, compacted, at most every
    `every_s` seconds of processing time while it changes.

    A publication is ~0.3 s of work for 80,000 products: it is done in steps
    (`models.products.publishing`), one per batch of interactions or wake-up, so the flow
    (one thread per worker) never stops for more than a few milliseconds at a time.

    Its snapshot is the last published index, so a restart resumes from it: the few seconds
    of interactions since are not replayed into it (suggestions are statistics, not
    customer state, and exactly-once is not worth a full snapshot per epoch here)."""

    def __init__(self, resume: bytes | None, every_s: float, published: int) -> None:
        self.catalogue = decode_catalogue(resume) if resume else Catalogue()
        self.every_s = every_s
        self.published = published
        self._blob = resume
        self._dirty = False
        self._next = 0.0  # monotonic time of the next allowed publication
        self._steps: Iterator[bytes | None] | None = None  # the publication under way

    def on_batch(self, values: list[list[Observation]]) -> tuple[list[Output], bool]:
        for batch in values:
            self.catalogue.observe_all(batch)
        self._dirty = True
        return self._advance(), StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime | None:
        if self._steps is not None:
            return datetime.now(UTC)  # the next step of the publication, at once
        if not self._dirty:
            return None
        return datetime.now(UTC) + timedelta(seconds=max(0.0, self._next - time.monotonic()))

    def on_notify(self) -> tuple[list[Output], bool]:
        return self._advance(), StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[list[Output], bool]:
        out: list[Output] = []
        while self._steps is not None or self._dirty:
            out += self._advance(force=True)
        return out, StatefulBatchLogic.RETAIN

    def _advance(self, force: bool = False) -> list[Output]:
        """One step of the publication under way, or of a new one when it is due."""
        if self._steps is None:
            if not self._dirty or (time.monotonic() < self._next and not force):
                return []
            self._steps = publishing(self.catalogue, self.published)
            self._dirty = False  # what is observed from now on is for the next one
        blob = next(self._steps)
        if blob is None:
            return []
        self._steps = None
        self._blob = blob
        self._next = time.monotonic() + self.every_s
        return [(PRODUCTS, blob, str(time.time_ns()))]

    def snapshot(self) -> bytes:
        if self._blob is None:  # not published yet: the first epoch of a new flow
            self._blob = encode_catalogue(self.catalogue.compact(self.published))
        metrics.snapshot_taken("products", len(self._blob))
        return self._blob


def _products(item: tuple[str, Output]) -> tuple[str, list[Observation]]:
    return "products", item[1][1]


def _by_arm(item: tuple[str, Output]) -> tuple[str, Example]:
    ex: Example = item[1][1]
    return Learner.key(ex.message_id, ex.channel), ex


def redis_source(settings: Settings, recovery: bool = True) -> RedisStreamSource:
    """The event streams of `settings`, one Bytewax partition per stream partition, items
    keyed by id. Without recovery the streams are never trimmed (a restart reads them from
    the start)."""
    return RedisStreamSource(
        client_factory(settings.require_redis(), settings.redis_cluster),
        Keys(settings.key_prefix),
        settings.partitions,
        read_events=settings.read_events,
        backoff_s=settings.idle_backoff_ms / 1000,
        trim_after_s=settings.trim_after_s if recovery else None,
        probe_every_s=settings.probe_s,
    )


def redis_sink(settings: Settings, catalog: Catalog | None = None) -> RedisProfileSink:
    """The profile keys of `settings`."""
    triggers = None
    if settings.trigger_cart_s or settings.trigger_checkout_s or settings.trigger_browse_s:
        consent = ConsentPolicy(frozenset(settings.consent_opt_in))
        triggers = (catalog or flow_catalog(settings), consent, settings.triggers_maxlen)
    return RedisProfileSink(
        client_factory(settings.require_redis(), settings.redis_cluster),
        Keys(settings.key_prefix),
        settings.partitions,
        triggers,
    )


def link_lookup(settings: Settings) -> Lookup:
    """`GET` of an id's link key, on one connection per process opened at first use (it is
    needed only for link requests re-read after a restart)."""
    keys = Keys(settings.key_prefix)
    url = settings.require_redis()
    client: list[redis.Redis] = []

    def prior(id_: str) -> str | None:
        if not client:
            client.append(client_factory(url, settings.redis_cluster)())
        value: Any = client[0].get(keys.link(id_))
        return value.decode() if value else None

    return prior


def partition_logic(
    settings: Settings,
    store: NodeStore | None,
    prior: Lookup | None = None,
    catalog: Catalog | None = None,
    cache: int | None = None,
) -> Callable[[], PartitionLogic]:
    """Makes a stream partition's `PartitionLogic` as the flow runs it: its customers read
    from and stored in `store` (None: all kept in memory), `cache` of them in memory at most
    (default: its share of ``NUDGE_CACHE_CUSTOMERS``)."""
    params = profile_params(settings)
    ip = identity_params(settings)
    triggers = trigger_params(settings, catalog)
    partitions = settings.partitions
    size = cache if cache is not None else max(1, settings.cache_customers // partitions)

    def customer(blob: bytes | None) -> CustomerLogic:
        return CustomerLogic(params, ip, blob, prior, settings.products, triggers)

    def logic() -> PartitionLogic:
        return PartitionLogic(customer, triggers, store, partitions, size)

    return logic


def build_flow(
    settings: Settings,
    source: Source[Keyed] | None = None,
    sink: Sink[tuple[str, Output]] | None = None,
    *,
    recovery: bool = True,
) -> Dataflow:
    """Build the dataflow. Tests pass a `TestingSource`/`TestingSink`; production uses Redis.
    `recovery` says whether the run snapshots state (it decides whether streams are trimmed)."""
    source = source or redis_source(settings, recovery)
    # a Redis sink stores the customers' state, and the partitions read it back; with another
    # sink (tests) every node stays in memory
    store = NodeStore(client_factory(settings.require_redis(), settings.redis_cluster),
                      Keys(settings.key_prefix)) if sink is None else None  # fmt: skip
    prior = link_lookup(settings) if sink is None else None
    catalog = flow_catalog(settings)
    sink = sink or redis_sink(settings, catalog)
    logic = partition_logic(settings, store, prior, catalog)
    partitions = settings.partitions
    flow = Dataflow("nudge")
    if getattr(source, "stream_partitions", None) == partitions:
        # the event streams: each partition's customers are processed where it is read
        outputs = op.input("read_events", flow, CustomerSource(source, logic))  # type: ignore[arg-type]
    else:  # a testing source's items (keyed by id): a step keyed by the id's partition
        keyed = op.flat_map("to_partitions", op.input("read_events", flow, source),
                            _to_partitions(partitions))  # fmt: skip
        outputs = op.stateful_batch("update_customer", keyed, lambda resume: logic())
    # what is not a write goes on: product interactions to the product index (one,
    # shop-wide), labelled decisions to the learners, one per (message, channel) arm
    split = op.branch("split_writes", outputs, lambda kv: kv[1][0] not in _NOT_WRITES)
    others = op.branch("split_products", split.falses, lambda kv: kv[1][0] == OBSERVE)
    examples = op.map("key_by_arm", others.falses, _by_arm)  # (arm, Example)
    models = op.stateful_batch("learn", examples, ArmLogic)  # (arm, (MODEL, blob, None))
    observed = op.map("key_products", others.trues, _products)  # ("products", [Observation])
    every_s, published = settings.products_publish_s, settings.products_published
    index = op.stateful_batch(
        "products", observed, lambda resume: ProductsLogic(resume, every_s, published)
    )  # ("products", (PRODUCTS, blob, version))
    op.output("write_profiles", op.merge("writes", split.trues, models, index), sink)
    return flow


_NOT_WRITES = frozenset({LEARN, OBSERVE})


def __getattr__(name: str) -> Any:
    # `flow` for `python -m bytewax.run dataflows.flow:flow`, built on first access so that
    # importing this module reads no environment and opens no connection.
    if name == "flow":
        # Whether `bytewax.run` was given a recovery directory is not ours to parse: assume
        # it was, so snapshots are always real (and a restart without one refuses to rebuild
        # from trimmed streams rather than losing history).
        tune_gc(DATAFLOW_YOUNG)
        return build_flow(get_settings(), recovery=True)
    raise AttributeError(name)
