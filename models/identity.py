"""Identity stitching: many ids, one customer — as a pure state machine per id.

Every id (a userId, an anonymousId, an alias's previousId) is a key of the dataflow, and its
`Node` is either

- **canonical**: it holds the customer's state and the list of the other ids merged into it;
- a **pointer** to the id it was merged into: events that reach it are forwarded there.

Ids meet on an event that carries two of them (`identify` with an anonymousId, `alias`, any
event carrying both ids). The canonical id that sees the event asks the other id's group to
join with a `LINK` request; the request travels through the event log (Bytewax dataflows have
no loops, so nudge writes its control records to the same Redis streams it reads). The group
that ranks lower yields: it sends its whole state to the higher one (`JOIN`, applied with
`models.customer.merge`) and becomes a pointer. Ranking is static, so both sides always agree
and pointers never form a cycle: a userId outranks an anonymous id, then the smaller id wins.

While a canonical id waits for the answer to its requests it holds back its later events, and
applies them once the other group's state has been merged: so the result does not depend on how
fast the control records travel (replay at full speed = live; 2 workers = 1).

Every control record is idempotent (request ids are derived from the event that caused them),
so the records a crashed dataflow sends again after restarting change nothing.

Runaway merges (a shared device id that links thousands of users) stop at `max_ids`: the side
that would yield refuses when the merged customer would hold more ids, and says so (`REFUSE`,
plus a note the dataflow logs and counts).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import msgpack

from models import NudgeError
from models.codec import event_to_row, row_to_event, unpack_rows
from models.customer import (
    CustomerState,
    ProfileParams,
    decode_state,
    encode_state,
    merge,
    new_state,
    row_to_state,
    state_to_row,
    step,
)
from models.events import DECISION, ERASE, ORDER_COMPLETED, Event
from models.feedback import Waiting, is_feedback
from models.products import ACTIONS, Observation, observations
from models.triggers import (
    ARMING,
    CustomerTimers,
    TimerOp,
    TriggerParams,
    arm,
    disarm,
    rearm,
)

NODE_VERSION: Final = 2  # 2: with the customer's timers and decisions awaiting an outcome
CONTROL_VERSION: Final = 1
CONTROL_FIELD: Final = b"c"  # stream-entry field holding control records (events use b"e")

ANON, USER = 0, 1  # kinds of id; a userId outranks an anonymous id
_KIND_BYTE: Final = (b"\x00", b"\x01")
NONE: Final[list[Any]] = ()  # type: ignore[assignment]  # shared, immutable: see `Node`

# control record kinds
LINK, JOIN, REFUSE, FORWARD, DROP = 0, 1, 2, 3, 4

_packer = msgpack.Packer(use_bin_type=True)


class IdentityError(NudgeError):
    """A node or control record that this version cannot read."""


@dataclass(frozen=True, slots=True)
class IdentityParams:
    enabled: bool = True
    max_ids: int = 100
    max_held: int = 1000  # events a customer holds back while a merge is open, at most


@dataclass(slots=True)
class Control:
    """A record the dataflow sends itself through the log, addressed to the id `to`.

    - LINK: ``sender``'s group (``size`` ids, kind ``sender_kind``) asks ``to``'s group to
      merge; ``to_kind`` is the kind of ``to`` as the sender saw it; ``answers`` is the request
      this one answers (a counter-request from the higher-ranked group), or "".
    - JOIN: reply to ``req``: ``sender``'s group yields; ``state`` is its customer state
      (`encode_state`, or b"" if it had none), with its ids, open requests and held events,
      and ``waiting``, its served decisions awaiting an outcome (`Waiting.to_row`, or None:
      the dataflow's partition, which keeps them, puts them in as the record goes out).
    - REFUSE: reply to ``req``: the merge would exceed the id limit.
    - FORWARD: ``event`` reached an id that was merged into ``to``.
    - DROP: ``to`` belonged to the erased customer ``sender``, whose other ids were
      ``ids``: forget it if it still points to one of them (an id of a group that joined
      points to that group's former canonical id); "" from an older version: whatever it
      points to.
    """

    kind: int
    to: str
    sender: str = ""
    req: str = ""
    sender_kind: int = ANON
    to_kind: int = ANON
    size: int = 0
    answers: str = ""
    state: bytes = b""
    ids: list[str] = field(default_factory=list)
    pending: dict[str, int] = field(default_factory=dict)
    held: list[Event] = field(default_factory=list)
    event: Event | None = None
    waiting: list[Any] | None = None
    # not sent: set by the reader on records that were already in the log when the dataflow
    # (re)started, i.e. that a run before a crash may have acted on
    replayed: bool = False


def control_to_row(c: Control) -> list[Any]:
    if c.kind == FORWARD:
        assert c.event is not None
        return [CONTROL_VERSION, FORWARD, c.to, event_to_row(c.event)]
    if c.kind == DROP:
        return [CONTROL_VERSION, DROP, c.to, c.sender, c.ids]
    if c.kind == LINK:
        return [
            CONTROL_VERSION, LINK, c.to, c.sender, c.req, c.sender_kind, c.to_kind, c.size,
            c.answers,
        ]  # fmt: skip
    if c.kind == JOIN:
        return [
            CONTROL_VERSION, JOIN, c.to, c.sender, c.req, c.state, c.ids, c.pending,
            [event_to_row(e) for e in c.held], c.waiting,
        ]  # fmt: skip
    return [CONTROL_VERSION, REFUSE, c.to, c.sender, c.req]


def row_to_control(row: Any) -> Control:
    if not isinstance(row, list) or len(row) < 3 or row[0] != CONTROL_VERSION:
        raise IdentityError(f"not a version {CONTROL_VERSION} control record: {str(row)[:60]}")
    try:
        kind, to = row[1], row[2]
        if type(to) is not str:
            raise IdentityError(f"control record addressed to a non-string: {str(row)[:60]}")
        if kind == FORWARD:
            return Control(FORWARD, to, event=row_to_event(row[3]))
        if kind == DROP:
            # (older versions wrote no sender, then no ids)
            sender = row[3] if len(row) > 3 else ""
            return Control(DROP, to, sender, ids=list(row[4]) if len(row) > 4 else [])
        if kind == LINK:
            sender, req, skind, tkind, size, answers = row[3:9]
            return Control(LINK, to, sender, req, skind, tkind, size, answers)
        if kind == JOIN:
            # (older versions wrote no waiting decisions; fields a later version appends
            # are ignored, here and in every kind of record)
            _, _, _, sender, req, state, ids, pending, held, *waiting = row
            return Control(
                JOIN, to, sender, req, state=state, ids=list(ids), pending=dict(pending),
                held=[row_to_event(r) for r in held], waiting=waiting[0] if waiting else None,
            )  # fmt: skip
        if kind == REFUSE:
            return Control(REFUSE, to, row[3], row[4])
    except (ValueError, TypeError, IndexError) as exc:
        raise IdentityError(f"malformed control record: {exc}") from exc
    raise IdentityError(f"unknown control record kind {kind!r}")


def encode_controls(records: list[Control]) -> bytes:
    """Control records as the payload of one stream entry (field `CONTROL_FIELD`).

    >>> c = Control(LINK, "anon-1", "u1", "r1", USER, ANON, 1)
    >>> decode_controls(encode_controls([c])) == [c]
    True
    """
    return _packer.pack([control_to_row(c) for c in records])


def decode_controls(data: bytes) -> list[Control]:
    rows = unpack_rows(data, "control entry", "records", IdentityError)
    return [row_to_control(r) for r in rows]


def outranks(a_kind: int, a: str, b_kind: int, b: str) -> bool:
    """Whether id `a` stays canonical when its group meets `b`'s: users first, then the
    smaller id. A total, static order: both sides of a merge reach the same answer.

    >>> outranks(USER, "zoe", ANON, "0a1b")
    True
    >>> outranks(USER, "ann", USER, "bob")
    True
    """
    return a_kind > b_kind or (a_kind == b_kind and a < b)


def request_id(message_id: str, other: str) -> str:
    """The id of the link request an event makes for `other`: the same every time the event
    is processed, so a request sent again after a crash is recognised.

    >>> request_id("m1", "anon-1") == request_id("m1", "anon-1")
    True
    """
    b = f"{message_id}\x00{other}".encode()
    return f"{zlib.crc32(b):08x}{zlib.adler32(b):08x}"


@dataclass(slots=True)
class Node:
    """The dataflow state of one id."""

    key: str
    kind: int
    customer: CustomerState | None = None
    target: str | None = None  # set: this id was merged into `target` (a pointer)
    # The lists start as the shared `NONE` (a tuple: most ids never link anything, and an
    # empty list would cost the garbage collector one more object per id); `_own` makes one
    # a list before it is changed.
    ids: list[str] = NONE  # other ids merged into this one
    asked: list[str] = NONE  # ids a link was requested (or refused) for
    # open link requests -> ids reserved for what they may bring (the runaway limit counts them)
    pending: dict[str, int] = field(default_factory=dict)
    held: list[Event] = NONE  # events held until `pending` empties
    # the id's trigger timers and served decisions awaiting an outcome, stored with it (the
    # dataflow's partition fires and expires them; None: nothing armed or waiting)
    timers: CustomerTimers | None = None
    waiting: Waiting | None = None


@dataclass(slots=True)
class Outbox:
    """What applying a batch to one id produced, for the sinks."""

    profile_changed: bool = False
    touched: bool = False  # the node changed otherwise (links, requests, held events, pointer)
    removed: bool = False  # the id's profile must be deleted (merged away or erased)
    links: dict[str, str] = field(default_factory=dict)  # id -> canonical id ("" = delete)
    sends: list[Control] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # refusals, for logs and metrics
    # served decisions, responses to them and orders, and the waiting decisions of a group
    # that joined: for the feedback join (`FeedbackBook`), in order
    feedback: list[Event | Waiting] = field(default_factory=list)
    observed: list[Observation] = field(default_factory=list)  # product interactions
    timers: list[TimerOp] = field(default_factory=list)  # trigger timers set or cancelled


def encode_node(n: Node) -> bytes:
    """A node as msgpack (its stored state; never pickle). Most nodes are a customer and
    nothing else: those are their kind (one byte, never the first byte of a msgpack array)
    followed by the customer state.

    >>> from models.customer import new_state
    >>> plain = Node("u1", USER, new_state("u1", 0))
    >>> encode_node(plain)[:1], decode_node(encode_node(plain)) == plain
    (b'\\x01', True)
    """
    timers, waiting = n.timers, n.waiting
    if timers is not None and not (timers.armed or timers.fired):
        timers = None
    if waiting is not None and not (waiting.decisions or waiting.early or waiting.done):
        waiting = None
    if (
        n.target is None
        and n.customer is not None
        and not (n.ids or n.asked or n.pending or n.held or timers or waiting)
    ):
        return _KIND_BYTE[n.kind] + encode_state(n.customer)
    return _packer.pack(
        [
            NODE_VERSION,
            n.key,
            n.kind,
            state_to_row(n.customer) if n.customer is not None else None,
            n.target,
            n.ids,
            n.asked,
            n.pending,
            [event_to_row(e) for e in n.held],
            timers.to_row() if timers is not None else None,
            waiting.to_row() if waiting is not None else None,
        ]
    )


def decode_node(data: bytes) -> Node:
    if data[:1] in _KIND_BYTE:
        state = decode_state(data[1:])
        return Node(state.customer_id, data[0], state)
    row = msgpack.unpackb(data, raw=False, strict_map_key=False)
    if not isinstance(row, list) or not row or row[0] not in (1, NODE_VERSION):
        raise IdentityError(f"unknown identity node version {row[0] if row else None!r}")
    _, key, kind, state, target, ids, asked, pending, held, *rest = row
    timers = waiting = None
    if row[0] == NODE_VERSION:  # (a version 1 tenth field is an older form of `waiting`)
        timers_row, waiting_row = rest[:2]  # (a later version may append fields)
        timers = CustomerTimers.from_row(timers_row) if timers_row is not None else None
        waiting = Waiting.from_row(waiting_row) if waiting_row is not None else None
    return Node(
        key,
        kind,
        row_to_state(state) if state is not None else None,
        target,
        ids or NONE,
        asked or NONE,
        pending,
        [row_to_event(r) for r in held] if held else NONE,
        timers,
        waiting,
    )


Lookup = Callable[[str], str | None]


class Stitcher:
    """Applies events and control records to the node of one id (`key`).

    `prior(key)` tells where this id's link points in the store (the link key the sink
    writes together with every JOIN), or None. It is asked only for LINK requests that were
    in the log before a restart: the run before the crash may have yielded this id to another
    group, from a state the restart rolled back; the id must then yield to that group again,
    or its data would be merged into two customers.
    """

    __slots__ = ("ip", "key", "pp", "prior", "tp")

    def __init__(
        self,
        key: str,
        ip: IdentityParams,
        pp: ProfileParams,
        prior: Lookup | None = None,
        tp: TriggerParams | None = None,
    ) -> None:
        self.key = key
        self.ip = ip
        self.pp = pp
        self.prior = prior
        self.tp = tp  # None: no trigger timers

    def apply(self, node: Node | None, items: list[Event | Control], out: Outbox) -> Node | None:
        """Fold a batch of items into `node`; effects go to `out`. Returns the new node (None
        once it holds nothing: erased, or never created)."""
        step_ = self._step
        for item in items:
            if type(item) is Event:
                if (
                    node is not None
                    and node.target is None
                    and not node.pending
                    and item.type != ERASE
                ):  # the common case, inline
                    step_(node, item, out)
                    continue
                node = self.event(node, item, out)
            else:
                assert isinstance(item, Control)
                node = self.control(node, item, out)
        return node

    # --- events -----------------------------------------------------------------------------
    def event(self, node: Node | None, ev: Event, out: Outbox) -> Node | None:
        out.touched = True
        if ev.type == ERASE:
            of = ev.properties.get("of")
            if of is not None:  # a linked id's own marker: it only unlinks the id from `of`
                if node is None or not _points_into(node, of, ev.properties.get("ids")):
                    return node  # unlinked already (and maybe a new customer since)
                out.links[self.key] = ""
                return None
            self.erase(node, out)
            return None
        if node is None:
            node = Node(self.key, kind_of(self.key, ev))
        elif node.target is not None:
            out.sends.append(Control(FORWARD, node.target, event=ev))
            return node
        if node.pending:
            held = _own(node, "held")
            held.append(ev)
            if len(held) > self.ip.max_held:
                # the answer is late (the log is far behind): stop waiting rather than grow;
                # an answer that comes afterwards is still applied (see `_join`)
                out.notes.append(
                    f"identity: customer {self.key!r} stopped waiting for {len(node.pending)} "
                    f"link answer(s) after holding {len(held)} events"
                )
                node.pending = {}
                self._release(node, out)
            return node
        self._step(node, ev, out)
        return node

    def _step(self, node: Node, ev: Event, out: Outbox) -> None:
        if node.kind == ANON and ev.user_id == self.key:
            claim_user(node, ev)
        customer = node.customer
        if customer is None:
            customer = node.customer = new_state(self.key, ev.timestamp)
        _, changed = step(customer, ev, self.pp)
        if is_feedback(ev):  # (the join dedupes decisions and answers itself)
            out.feedback.append(ev)
        if not changed:
            return  # a duplicate: it linked whatever it links the first time
        out.profile_changed = True
        if ev.event == ORDER_COMPLETED:  # a conversion may credit a served decision
            out.feedback.append(ev)
        if ev.event in ACTIONS:
            out.observed += observations(customer.recent, ev)
        if self.tp is not None and ev.event in ARMING:
            out.timers += arm(customer, ev, self.tp)
        if not self.ip.enabled:
            return
        key = self.key
        if knows_every_id(node, ev):
            return  # the common case
        uid, anon, prev = ev.user_id, ev.anonymous_id, ev.previous_id
        ids = node.ids
        for other, kind in (
            (uid, USER),
            (anon, ANON),
            (prev, ANON),  # an existing id keeps the kind it was first seen with
        ):
            if other is None or other == key or other in ids or other in node.asked:
                continue
            asked = _own(node, "asked")
            asked.append(other)
            if len(asked) > 4 * self.ip.max_ids:
                del asked[0]  # refusals are remembered, within bounds
            size = _size(node)
            if size + 1 > self.ip.max_ids:
                out.notes.append(
                    f"identity: not linking {other!r} to customer {key!r}: it already has "
                    f"{size} ids (NUDGE_IDENTITY_MAX_IDS={self.ip.max_ids})"
                )
                continue
            req = request_id(ev.message_id, other)
            node.pending[req] = 1
            out.sends.append(Control(LINK, other, key, req, node.kind, kind, size))

    def _release(self, node: Node, out: Outbox) -> None:
        """Apply held events while no request is open (one may open a new request)."""
        while node.held and not node.pending and node.target is None:
            ev = node.held.pop(0)
            self._step(node, ev, out)

    def erase(self, node: Node | None, out: Outbox) -> None:
        """Forget the customer this id names, with its data and the links of its ids."""
        if node is not None and node.target is not None:
            # the API resolved to an id merged away since: erase the customer it joined
            out.sends.append(Control(FORWARD, node.target, event=_erase_for(node.target)))
            out.links[self.key] = ""
            return
        out.removed = True
        if self.tp is not None:  # a pending trigger must not outlive the customer's data
            out.timers += disarm(self.key)
        if node is not None:
            for other in node.ids:
                out.links[other] = ""
                out.sends.append(Control(DROP, other, self.key, ids=node.ids))

    # --- control records --------------------------------------------------------------------
    def control(self, node: Node | None, c: Control, out: Outbox) -> Node | None:
        out.touched = True
        kind = c.kind
        if kind == FORWARD:
            assert c.event is not None
            if node is None and c.event.type != ERASE:
                # sent by an id of a customer erased since, before that id's own marker or
                # DROP let it go: the erased person's, never the start of a new customer
                return None
            return self.event(node, c.event, out)
        if kind == DROP:
            if node is not None and (c.sender == "" or _points_into(node, c.sender, c.ids)):
                out.links[self.key] = ""
                return None
            return node  # not (or no longer) a pointer to the erased customer
        if node is not None and node.target is not None:
            # merged away: whatever was meant for this id goes to its group
            out.sends.append(_readdress(c, node.target))
            return node
        if kind == LINK:
            return self._link(node, c, out)
        if kind == JOIN:
            return self._join(node, c, out)
        # REFUSE
        if node is not None and node.pending.pop(c.req, None) is not None:
            self._release(node, out)
        return node

    def _link(self, node: Node | None, c: Control, out: Outbox) -> Node | None:
        key = self.key
        if c.sender == key:
            # our own request came back through a pointer: that id is already in our group
            if node is not None and node.pending.pop(c.req, None) is not None:
                self._release(node, out)
            return node
        if node is None:
            node = Node(key, c.to_kind)
        if c.answers:
            node.pending.pop(c.answers, None)
        decided = self.prior(key) if c.replayed and self.prior is not None else None
        if decided is not None and decided != c.sender:
            # before a restart this id yielded to `decided`: its data is there already
            out.sends.append(_readdress(c, decided))
            for ev in node.held:
                out.sends.append(Control(FORWARD, decided, event=ev))
            if node.customer is not None:
                out.removed = True
            return Node(key, node.kind, target=decided)
        req = request_id(c.req, key)
        prior = node.pending.get(req)  # set: we answered this request before a restart
        size = _size(node) - (prior or 0)
        if prior is None and decided is None and c.size + size > self.ip.max_ids:
            out.notes.append(
                f"identity: refused to merge customers {key!r} ({size} ids) and {c.sender!r} "
                f"({c.size} ids): over NUDGE_IDENTITY_MAX_IDS={self.ip.max_ids}"
            )
            out.sends.append(Control(REFUSE, c.sender, key, c.req))
            self._release(node, out)
            return node
        if outranks(node.kind, key, c.sender_kind, c.sender):
            # we stay canonical: ask the sender's group to join us instead, keeping room for it
            node.pending[req] = prior or c.size
            out.sends.append(
                Control(LINK, c.sender, key, req, node.kind, c.sender_kind, size, answers=c.req)
            )
            self._release(node, out)
            return node
        # yield: our whole group moves to the sender's
        out.sends.append(
            Control(
                JOIN, c.sender, key, c.req,
                state=encode_state(node.customer) if node.customer is not None else b"",
                ids=node.ids, pending=node.pending, held=node.held,
            )
        )  # fmt: skip
        if node.customer is not None:
            out.removed = True
            if self.tp is not None:  # its timers move with it (re-armed by the canonical id)
                out.timers += disarm(key)
        out.links[key] = c.sender
        return Node(key, node.kind, target=c.sender)

    def _join(self, node: Node | None, c: Control, out: Outbox) -> Node | None:
        key = self.key
        if node is None:
            # we were erased after asking (the marker came between the request and this
            # answer): what the answering group brings is the erased person's too. It goes,
            # and its ids, which now point here or to its sender, are let go.
            group = [c.sender, *c.ids]
            for other in group:
                out.links[other] = ""
                out.sends.append(Control(DROP, other, key, ids=group))
            return None
        if node.pending.pop(c.req, None) is None and c.sender in node.ids:
            # a reply we already applied, sent again after a restart: its sender may have
            # pointed its link elsewhere again meanwhile; point it back
            for other in (c.sender, *c.ids):
                if other in node.ids:
                    out.links[other] = key
            return node
        # (else a reply to a request that a restart made us close otherwise, e.g. refused
        # this time: the sender has yielded to us all the same, so its data is taken)
        if c.state:
            theirs = decode_state(c.state)
            mine = node.customer
            node.customer = (
                merge(mine, theirs, key, self.pp) if mine is not None else _rename(theirs, key)
            )
            out.profile_changed = True
            if self.tp is not None:
                out.timers += rearm(node.customer, self.tp)
        if c.waiting:  # its decisions awaiting an outcome, before the events it releases
            out.feedback.append(Waiting.from_row(c.waiting))
        asked = node.asked
        for other in (c.sender, *c.ids):
            if other != key and other not in node.ids:
                _own(node, "ids").append(other)
                if other in asked:
                    _own(node, "asked").remove(other)
                out.links[other] = key
                out.profile_changed = True
        for req, reserved in c.pending.items():
            node.pending.setdefault(req, reserved)
        if c.held:
            _own(node, "held").extend(c.held)
        self._release(node, out)
        return node


def kind_of(key: str, ev: Event) -> int:
    """The kind of a new id's node, from its first event. A served decision (which the API
    logs with the id as a userId, not knowing which it is) says nothing: anonymous until an
    event of its own says otherwise (`claim_user`)."""
    return USER if ev.user_id == key and ev.type != DECISION else ANON


def claim_user(node: Node, ev: Event) -> None:
    """`ev` names the anonymous id `node` as its userId: the id is a userId, unless it has
    taken part in a merge already (ranks are static once a merge has compared them)."""
    if ev.type != DECISION and node.target is None and not (node.ids or node.asked or node.pending):
        node.kind = USER


def knows_every_id(node: Node, ev: Event) -> bool:
    """Whether `ev` carries no id that `node`'s customer does not have already (no link to
    request): true of almost every event."""
    key, ids = node.key, node.ids
    uid, anon = ev.user_id, ev.anonymous_id
    return (
        ev.previous_id is None
        and (uid is None or uid == key or uid in ids)
        and (anon is None or anon == key or anon in ids)
    )


def _points_into(node: Node, customer: str, ids: Any) -> bool:
    """Whether `node` is a pointer to `customer` or to one of its other `ids` (the former
    canonical id of a group that joined it: its ids still point there)."""
    target = node.target
    return target is not None and (target == customer or (isinstance(ids, list) and target in ids))


def _own(node: Node, name: str) -> list[Any]:
    """`node`'s list `name`, made a list of its own first if it is still the shared `NONE`."""
    value: list[Any] = getattr(node, name)
    if value is NONE:
        value = []
        setattr(node, name, value)
    return value


def _size(node: Node) -> int:
    """Ids of the node's customer, counting those its open requests may bring."""
    return 1 + len(node.ids) + sum(node.pending.values())


def key_of(item: Event | Control) -> str:
    """The id an item is for: an event's customer key, a control record's addressee."""
    return item.customer_key if type(item) is Event else item.to  # type: ignore[union-attr]


def _rename(state: CustomerState, customer_id: str) -> CustomerState:
    state.customer_id = customer_id
    return state


def _readdress(c: Control, to: str) -> Control:
    # a new record: not `replayed`
    return Control(
        c.kind, to, c.sender, c.req, c.sender_kind, c.to_kind, c.size, c.answers, c.state,
        c.ids, c.pending, c.held, c.event, c.waiting,
    )  # fmt: skip


def _erase_for(customer_id: str) -> Event:
    return Event(ERASE, f"erase-fwd-{customer_id}", 0, 0, "api", user_id=customer_id)
