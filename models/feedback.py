"""Labelled examples for the response models, from a customer's served decisions and what the
customer did next (pure; meant to run in the dataflow, per customer, in event time).

- A served decision (the API's ``decision`` event) waits for its outcome.
- ``Message Clicked`` carrying its ``decision_id`` makes it a positive; ``Message Dismissed`` a
  negative; ``Message Viewed`` only confirms the impression.
- A conversion (``Order Completed``) within `attribution_ms` of a decision credits the latest
  decision still waiting before it: a positive.
- A decision with no outcome `timeout_ms` after it was served is a negative.
- A click or dismissal may reach the log before the decision it answers (the API logs its
  decisions in batches, and several API replicas write concurrently): it is kept, at most
  `early_ms` of event time, and labels the decision when that arrives.
- When the customer's ids merge (`models.identity`: a visitor logs in), what waits under the
  id that yields moves to the customer it joins (`merge`): an order or a click that comes
  under the other id afterwards still finds the decision it answers.

Each decision yields exactly one example; later signals about it are ignored.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Final

from models import dedupe
from models.deadlines import DeadlineQueue
from models.events import DECISION, ORDER_COMPLETED, Event
from models.learning import pack_vector, unpack_vector

MESSAGE_CLICKED: Final = "Message Clicked"
MESSAGE_DISMISSED: Final = "Message Dismissed"
MESSAGE_VIEWED: Final = "Message Viewed"
RESPONSES: Final = frozenset({MESSAGE_CLICKED, MESSAGE_DISMISSED})


@dataclass(frozen=True, slots=True)
class FeedbackParams:
    attribution_ms: int = 24 * 3600 * 1000
    timeout_ms: int = 72 * 3600 * 1000
    max_waiting: int = 16  # decisions a customer keeps waiting for an outcome, at most
    early_ms: int = 3600 * 1000  # how long a response may wait for its decision to be logged


@dataclass(frozen=True, slots=True)
class Example:
    decision_id: str
    message_id: str
    channel: str
    x: dict[str, float]
    y: bool
    why: str  # clicked, dismissed, converted, timeout


@dataclass(slots=True)
class Waiting:
    """Served decisions without an outcome yet, oldest first."""

    # [id, message, channel, at, x]: x as `models.learning.pack_vector` keeps it
    decisions: list[list[Any]] = field(default_factory=list)
    # the last `_DONE` decision ids with an outcome, as 8-byte hashes (`models.dedupe`)
    done: bytearray = field(default_factory=bytearray)
    early: list[list[Any]] = field(default_factory=list)  # [id, clicked, at]: ahead of it

    def to_row(self) -> list[Any]:
        return [self.decisions, bytes(self.done), self.early]

    @staticmethod
    def from_row(row: list[Any]) -> Waiting:
        decisions, done, early = row[:3]  # (a later version may append fields)
        if isinstance(done, list):  # written before the ids were kept as hashes
            done = b"".join(dedupe.key_of(d.encode()) for d in done[-_DONE:])
        return Waiting(decisions, bytearray(done), early)

    def due(self, params: FeedbackParams) -> int | None:
        """When (event time) the watermark must look at it again: the deadline `expire` next
        acts on, the oldest decision's timeout (it expires them oldest first) or the oldest
        early answer's expiry; None if neither waits."""
        due = self.decisions[0][3] + params.timeout_ms if self.decisions else None
        if self.early:
            early = min(e[2] for e in self.early) + params.early_ms
            due = early if due is None or early < due else due
        return due

    def is_done(self, decision_id: str) -> bool:
        return dedupe.contains(self.done, dedupe.key_of(decision_id.encode()))


_DONE: Final = 64


def _label(w: Waiting, i: int, y: bool, why: str) -> Example:
    did, mid, channel, _, x = w.decisions.pop(i)
    done = w.done
    done += dedupe.key_of(did.encode())
    if len(done) > 8 * _DONE:
        del done[: -8 * _DONE]
    return Example(did, mid, channel, unpack_vector(x), y, why)


def observe(w: Waiting, ev: Event, params: FeedbackParams) -> list[Example]:
    """Fold one event of the customer in; the examples it completes (timeouts included)."""
    out = expire(w, ev.timestamp, params)
    if ev.type == DECISION:
        p = ev.properties
        did = p["decision_id"]
        if w.is_done(did) or any(d[0] == did for d in w.decisions):
            return out  # the same decision logged twice
        # (a customer may keep many waiting: compact, and the repeated names shared)
        w.decisions.append([did, sys.intern(p["message_id"]), sys.intern(ev.channel),
                            ev.timestamp, pack_vector(p.get("x") or {})])  # fmt: skip
        for i, (eid, clicked, _) in enumerate(w.early):
            if eid == did:  # its answer came first
                del w.early[i]
                out.append(
                    _label(w, len(w.decisions) - 1, clicked, "clicked" if clicked else "dismissed")
                )
                return out
        if len(w.decisions) > params.max_waiting:
            out.append(_label(w, 0, False, "timeout"))  # the oldest gives up its place
        return out
    if ev.type != "track":
        return out
    name = ev.event
    if name in (MESSAGE_CLICKED, MESSAGE_DISMISSED):
        did = ev.properties.get("decision_id")
        if not isinstance(did, str):
            return out
        clicked = name == MESSAGE_CLICKED
        for i, d in enumerate(w.decisions):
            if d[0] == did:
                out.append(_label(w, i, clicked, "clicked" if clicked else "dismissed"))
                return out
        if not w.is_done(did) and all(e[0] != did for e in w.early):
            w.early.append([did, clicked, ev.timestamp])
            del w.early[: -params.max_waiting]
    elif name == ORDER_COMPLETED:
        t = ev.timestamp
        for i in range(len(w.decisions) - 1, -1, -1):
            at = w.decisions[i][3]
            if at <= t <= at + params.attribution_ms:
                out.append(_label(w, i, True, "converted"))
                break
    return out


def expire(w: Waiting, now_ms: int, params: FeedbackParams) -> list[Example]:
    """Negatives for the decisions whose timeout has passed by `now_ms` (event time); early
    responses whose decision never came are dropped after `early_ms`."""
    out: list[Example] = []
    if w.early and w.early[0][2] + params.early_ms < now_ms:
        w.early = [e for e in w.early if e[2] + params.early_ms >= now_ms]
    while w.decisions and w.decisions[0][3] + params.timeout_ms < now_ms:
        out.append(_label(w, 0, False, "timeout"))
    return out


def merge(into: Waiting, other: Waiting, params: FeedbackParams) -> list[Example]:
    """Take `other` (what waited under an id merged into this customer) into `into`; the
    examples that completes. A decision either side has labelled stays labelled; an early
    answer that finds its decision on the other side labels it now; decisions stay oldest
    first, and past `max_waiting` the oldest give up their place (timeouts), as in
    `observe`. Taking the same `other` twice changes nothing the second time."""
    done = into.done
    for i in range(0, len(other.done), 8):
        h = bytes(other.done[i : i + 8])
        if not dedupe.contains(done, h):
            done += h
    if len(done) > 8 * _DONE:
        del done[: -8 * _DONE]
    mine = {d[0] for d in into.decisions}
    decisions = [d for d in into.decisions if not into.is_done(d[0])]
    decisions += [d for d in other.decisions if d[0] not in mine and not into.is_done(d[0])]
    decisions.sort(key=lambda d: d[3])  # (stable: ties keep their order)
    into.decisions = decisions
    answered = {e[0] for e in into.early}
    early = into.early + [e for e in other.early if e[0] not in answered]
    early.sort(key=lambda e: e[2])
    out: list[Example] = []
    into.early = []
    for e in early:
        did, clicked, _ = e
        at = next((i for i, d in enumerate(decisions) if d[0] == did), None)
        if at is not None:
            out.append(_label(into, at, clicked, "clicked" if clicked else "dismissed"))
        elif not into.is_done(did):
            into.early.append(e)
    del into.early[: -params.max_waiting]
    while len(into.decisions) > params.max_waiting:
        out.append(_label(into, 0, False, "timeout"))
    return out


def watch(
    w: Waiting | None, ev: Event, params: FeedbackParams
) -> tuple[Waiting | None, list[Example]]:
    """`observe` for callers that keep no `Waiting` until a decision is served or answered
    (most customers never are): returns the `Waiting` to keep (None once it is empty)."""
    if w is None:
        if not is_feedback(ev):
            return None, []
        w = Waiting()
    examples = observe(w, ev, params)
    return (w if w.decisions or w.early else None), examples


def is_feedback(ev: Event) -> bool:
    """A served decision or a response to one: what `watch` must see even for a customer
    with nothing waiting."""
    return ev.type == DECISION or (ev.type == "track" and ev.event in RESPONSES)


@dataclass(slots=True)
class FeedbackBook:
    """The served decisions of a partition's customers, joined with what those customers do
    next (`observe`, per customer) and timed out on the event-time watermark (`advance`), so a
    customer who never comes back still yields the negative example of each decision.

    It sees a customer's served decisions, responses and orders only (the dataflow routes
    those to it); `models.triggers.Timers` gives it the watermark."""

    params: FeedbackParams = field(default_factory=FeedbackParams)
    waiting: dict[str, Waiting] = field(default_factory=dict)  # customer -> decisions
    # each waiting customer's next deadline
    _deadlines: DeadlineQueue = field(default_factory=DeadlineQueue)

    def add(self, customer_id: str, ev: Event) -> list[Example]:
        w = self.waiting.get(customer_id)
        w, examples = watch(w, ev, self.params)
        if w is None:
            self.forget(customer_id)
        else:
            self.waiting[customer_id] = w
            self._deadlines.set(customer_id, w.due(self.params))
        return examples

    def adopt(self, customer_id: str, w: Waiting) -> None:
        """Take in a customer's waiting decisions (read back from where they were stored)."""
        self.waiting[customer_id] = w
        self._deadlines.set(customer_id, w.due(self.params))

    def merge(self, customer_id: str, other: Waiting) -> list[Example]:
        """Take in what waited under another id that joined this customer (`merge`)."""
        w = self.waiting.get(customer_id) or Waiting()
        examples = merge(w, other, self.params)
        if w.decisions or w.early:
            self.adopt(customer_id, w)
        else:
            self.forget(customer_id)
        return examples

    def take(self, customer_id: str) -> Waiting | None:
        """Hand over (and forget) what waits for an id that yields to another customer."""
        w = self.waiting.get(customer_id)
        self.forget(customer_id)
        return w

    def forget(self, customer_id: str) -> None:
        """Drop everything of a customer (nothing waits any more, or erased)."""
        self.waiting.pop(customer_id, None)
        self._deadlines.discard(customer_id)

    def advance(self, watermark_ms: int, touched: set[str] | None = None) -> list[Example]:
        """The negatives of every decision whose timeout the watermark has passed; the
        customers whose waiting decisions changed are added to `touched`."""
        out: list[Example] = []
        while (nxt := self._deadlines.pop_due(watermark_ms - 1)) is not None:
            cid = nxt[1]
            w = self.waiting.get(cid)
            if w is None:
                continue
            before = len(w.decisions) + len(w.early)
            out += expire(w, watermark_ms, self.params)
            if touched is not None and len(w.decisions) + len(w.early) != before:
                touched.add(cid)
            if not w.decisions and not w.early:
                del self.waiting[cid]
            else:
                self._deadlines.set(cid, w.due(self.params))  # the next, past the watermark
        return out
