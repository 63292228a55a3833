"""Writing fired triggers: choose each one's next-best message and channel, record the
contact, and append the trigger to the triggers stream once.

For a batch of triggers, one pipelined read (whether each was appended already, and each
customer's profile and contact history: `models/scripts/decision_read.lua`); then, per new
trigger, the decision logic of the API (`models.decision.best_channel` over the outbound
channels: consent, holdout, quiet hours, recent conversion, caps, eligibility, cooldowns);
the chosen contact is recorded atomically (`contacts.lua`, with the trigger id as decision
id; while an API decision holds the customer, it waits a few milliseconds for it to pass, so
caps hold against concurrent API decisions); last, `triggers_add.lua` appends each
trigger at most once. A crash between the contact and the append re-decides on restart,
with that contact in the history (a cap or cooldown may then say no): a trigger is never
lost and never doubled, and a cap is never exceeded.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import orjson
import redis

from config.catalog import Catalog
from config.connect import queue_script
from dataflows import metrics
from models import scripts
from models.consent import ConsentPolicy
from models.decision import (
    HOLD_MS,
    Decision,
    best_channel,
    contact_args,
    contacts_from,
    render,
)
from models.keys import Keys
from models.profile import Profile, decode_profile, iso
from models.triggers import Trigger

TRIGGER_CHANNELS = ("email", "sms", "push")  # where marketing automation sends
TRIGGER_DEDUPE_S = 7 * 86_400  # a trigger id appended within this is not appended again
_BUSY_RETRY_S = 0.002  # a contact an API decision's hold delays is tried again after this


class TriggerWriter:
    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        catalog: Catalog,
        consent: ConsentPolicy,
        maxlen: int,
    ) -> None:
        self._r = client
        self._keys = keys
        self._catalog = catalog
        self._consent = consent
        self._maxlen = maxlen
        self._read = client.register_script(scripts.DECISION_READ)
        self._record = client.register_script(scripts.CONTACTS)
        self._add = client.register_script(scripts.TRIGGERS_ADD)

    def write(self, fired: list[tuple[Trigger, int]]) -> int:
        """Decide, record and append `fired` ``(trigger, fired at ms)``; how many were new."""
        keys = self._keys
        keep_ms = self._catalog.keep_s * 1000
        pipe = self._r.pipeline(transaction=False)
        for t, at in fired:
            cid = t.customer_id
            pipe.exists(keys.trigger_sent(t.id))
            queue_script(pipe, self._read, [keys.profile(cid), keys.link(cid), keys.contacts(cid)],
                         [at - keep_ms])  # fmt: skip
        got: list[Any] = pipe.execute()
        decided: list[tuple[Trigger, int, Decision | None, Profile | None]] = []
        for (t, at), sent, (blob, _, flat, _) in zip(fired, got[0::2], got[1::2], strict=True):
            if sent:
                continue  # appended before a restart: not decided (nor counted) again
            history = contacts_from(flat)
            profile = decode_profile(blob) if blob else None  # None: erased since
            d = None
            if profile is not None:
                d = best_channel(self._catalog, profile, TRIGGER_CHANNELS, at, history,
                                 self._consent)  # fmt: skip
            decided.append((t, at, d, profile))
        if not decided:
            return 0
        # the chosen contacts, re-checked against caps and cooldowns and recorded atomically
        # per customer (one script each), all in one round trip
        recording = [(t, at, d, p) for t, at, d, p in decided if d is not None and d.message]
        for (_, _, d, profile), (verdict, detail) in zip(
            recording, self._record_contacts(recording, keep_ms), strict=True
        ):
            assert d is not None and profile is not None
            _settle(d, profile, verdict, detail)
        args: list[Any] = [self._maxlen, TRIGGER_DEDUPE_S]
        for t, at, d, _ in decided:
            args += [t.id, t.rule, t.customer_id, trigger_document(t, at, d)]
        flags: Any = self._add(
            keys=[keys.triggers(), *(keys.trigger_sent(t.id) for t, *_ in decided)], args=args
        )
        # counted (in `Keys.stats`, for every API's /metrics, and here) once appended
        counts: dict[tuple[str, str], int] = {}
        for (t, _, d, _), flag in zip(decided, flags, strict=True):
            if flag:
                outcome = "message" if d is not None and d.message is not None else "suppressed"
                counts[t.rule, outcome] = counts.get((t.rule, outcome), 0) + 1
        if counts:
            by_rule: dict[str, int] = {}
            for (rule, outcome), n in counts.items():
                metrics.TRIGGERS.labels(rule, outcome).inc(n)
                by_rule[rule] = by_rule.get(rule, 0) + n
            pipe = self._r.pipeline(transaction=False)
            for rule, n in by_rule.items():
                pipe.hincrby(keys.stats(), f"triggers:{rule}", n)
            pipe.execute()
        return sum(int(f) for f in flags)

    def _record_contacts(
        self,
        recording: Sequence[tuple[Trigger, int, Decision | None, Profile | None]],
        keep_ms: int,
    ) -> list[tuple[str, str]]:
        """`contacts.lua` for each decision, in one round trip; those of customers an API
        decision holds at that moment ("busy": it releases the hold once it has answered,
        within milliseconds) are tried again shortly, for as long as a hold may last."""
        keys = self._keys
        verdicts: list[tuple[str, str]] = [("busy", "")] * len(recording)
        waiting = list(range(len(recording)))
        deadline = time.monotonic() + HOLD_MS / 1000 + 1.0
        while waiting:
            pipe = self._r.pipeline(transaction=False)
            for i in waiting:
                t, at, d, _ = recording[i]
                assert d is not None
                candidates = [(m.id, m.cooldown_s) for _, m in d.candidates]
                queue_script(pipe, self._record,
                             [keys.contacts(t.customer_id), keys.hold(t.customer_id)],
                             contact_args(self._catalog.policy, d.channel, t.id, at, keep_ms,
                                          candidates))  # fmt: skip
            for i, (verdict, detail) in zip(waiting, pipe.execute(), strict=True):
                verdicts[i] = (verdict.decode(), detail.decode())
            waiting = [i for i in waiting if verdicts[i][0] == "busy"]
            if waiting:
                if time.monotonic() > deadline:  # a hold that outlives its TTL: not ours to wait
                    break
                time.sleep(_BUSY_RETRY_S)
        return verdicts


def _settle(d: Decision, profile: Profile, verdict: str, detail: str) -> None:
    """Apply the contact script's verdict to a decision (a concurrent one may have won)."""
    if verdict != "ok":
        d.message, d.suppressed_by = None, verdict
        d.reason = f"taken meanwhile: {verdict} {detail}".strip()
    elif d.message is not None and detail != d.message.id:  # it took the best one
        d.score, d.message = next((s, m) for s, m in d.candidates if m.id == detail)
        d.content = render(d.message, profile, d)


def trigger_document(t: Trigger, fired_at_ms: int, d: Decision | None = None) -> bytes:
    """The JSON a consumer of the triggers stream reads (field ``data``)."""
    payload = dict(t.payload)
    ids = payload.pop("ids", [])
    payload.pop("timezone", None)
    message = None
    if d is not None and d.message is not None:
        message = {"id": d.message.id, "channel": d.channel, "content": d.content,
                   "score": d.score, "reason": d.reason}  # fmt: skip
    return orjson.dumps(
        {
            "id": t.id,
            "type": t.rule,
            "customer_id": t.customer_id,
            "ids": ids,
            "step": t.step,
            "due_at": iso(t.due_ms),
            "held_until": iso(t.held_ms),  # the deadline fell in the customer's quiet hours
            "since": iso(t.at_ms),
            "fired_at": iso(fired_at_ms),
            **payload,
            "message": message,  # the next-best message and channel, or None and why
            "suppressed_by": None if message else (d.suppressed_by if d else "no_profile"),
        }
    )
