"""Arbitration: the one message that is best to show or send a customer on a channel now, or
nothing and the rule that said no (pure; the API calls it with what one Redis read returned).

The rules, in order — the first that applies suppresses the decision:

1. ``holdout``: the customer is in the stable holdout group (`models.policy.in_holdout`);
2. ``consent``: no consent for marketing on this channel (explicit, else the policy's default);
3. ``quiet_hours``: an outbound channel inside the quiet hours of the customer's time zone;
4. ``recent_conversion``: an order within the policy's suppression window;
5. ``frequency_cap``: the channel's caps, or the caps of all outbound channels together;
6. ``no_eligible_message``: no message of the catalog is valid now, allowed on the channel and
   true under its rule;
7. ``cooldown``: every eligible message was sent within its cooldown.

Among what is left, score = propensity * value * lever; the highest wins (ties: message id).
Exploration keeps learning seeing every eligible message, in the way the policy's
`exploration_strategy` says (given an `rng`): epsilon-greedy, the `exploration` share of
decisions picks one of the others uniformly; Thompson sampling (given a `sample`), every
decision ranks by propensities drawn from the models' posteriors. A decision whose choice is
not the best by the models' estimates says so (`explore`).
Caps and cooldowns hold under concurrency because contacts are recorded under a per-customer
*hold*: the API's one Redis read takes it with the history it returns (`decision_read.lua`),
and releases it with the contact it served once the answer is out (`decision_done.lua`); a
decision that finds another holding the customer serves nothing (``frequency_cap``: one
decision at a time per customer), and the dataflow's triggers wait for the hold to pass
(`contacts.lua` answers "busy").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from random import Random
from typing import Any, Final
from zoneinfo import ZoneInfo

from config.catalog import THOMPSON, Catalog, ContactPolicy, Message
from config.channels import OUTBOUND
from models.consent import ConsentPolicy
from models.features import features, placeholders
from models.policy import in_holdout, quiet_until, zone
from models.profile import Profile

ALL: Final = "*"
_UTC: Final = ZoneInfo("UTC")  # (ZoneInfo keeps one instance per key)
# how long a decision may hold a customer (`decision_read.lua`): it releases the hold as soon
# as it has answered, so this only bounds how long a crashed API blocks a customer's decisions
HOLD_MS: Final = 5_000
IN_FLIGHT: Final = "another decision for this customer is being made (one at a time)"
Propensity = Callable[[str, str, Mapping[str, Any]], float]  # (message, channel, features)
Sampler = Callable[[str, str, Mapping[str, Any], Random], float]  # a draw, for Thompson sampling


def prior(message_id: str, channel: str, feats: Mapping[str, Any]) -> float:
    """The cold-start propensity: every (message, channel) alike."""
    return 0.05


@dataclass(frozen=True, slots=True)
class Contact:
    """A message served earlier (the customer's contact history, from Redis)."""

    at_ms: int
    channel: str
    message_id: str


@dataclass(slots=True)
class Decision:
    customer_id: str
    channel: str
    message: Message | None = None
    score: float = 0.0
    reason: str = ""
    suppressed_by: str | None = None
    explore: bool = False  # chosen by exploration, not as the best
    until_ms: int | None = None  # quiet hours: when they end
    content: dict[str, str] = field(default_factory=dict)
    features: dict[str, Any] = field(default_factory=dict)  # what the rules saw
    candidates: list[tuple[float, Message]] = field(default_factory=list)  # ranked
    suggestions: list[str] = field(default_factory=list)  # products, when a message is chosen


def contact_member(channel: str, message_id: str, decision_id: str) -> str:
    """A contact as the contacts sorted set keeps it (`contacts_from` reads it back)."""
    return f"{channel}|{message_id}|{decision_id}"


def contacts_from(flat: Sequence[bytes]) -> list[Contact]:
    """The contact history as Redis returns it (`decision_read.lua`: member, score, …; a
    member is ``channel|message|decision``)."""
    out = []
    for i in range(0, len(flat), 2):
        channel, message_id, _ = flat[i].decode().split("|", 2)
        out.append(Contact(int(float(flat[i + 1])), channel, message_id))
    return out


def capped(
    policy: ContactPolicy, channel: str, history: Iterable[Contact], now_ms: int
) -> str | None:
    """Which cap a new contact on `channel` would exceed (``"email: 1 a day"``), or None."""
    history = list(history)
    for scope in (channel, ALL):
        if scope == ALL and channel not in OUTBOUND:
            continue  # the overall caps count outbound channels
        for cap in policy.caps.get(scope, ()):
            since = now_ms - cap.window_s * 1000
            n = sum(
                1
                for c in history
                if c.at_ms > since
                and (c.channel == channel if scope != ALL else c.channel in OUTBOUND)
            )
            if n >= cap.limit:
                days = cap.window_s // 86_400
                window = "a day" if days == 1 else f"{days} days"
                who = "all outbound channels" if scope == ALL else scope
                return f"{who}: {cap.limit} per {window}"
    return None


def in_cooldown(message: Message, history: Iterable[Contact], now_ms: int) -> bool:
    since = now_ms - message.cooldown_s * 1000
    return any(c.message_id == message.id and c.at_ms > since for c in history)


def decide(
    catalog: Catalog,
    profile: Profile,
    channel: str,
    now_ms: int,
    history: Sequence[Contact] = (),
    context: Mapping[str, Any] | None = None,
    consent: ConsentPolicy | None = None,
    propensity: Propensity = prior,
    suggest: Callable[[Profile], list[str]] | None = None,
    rng: Random | None = None,
    sample: Sampler | None = None,
) -> Decision:
    """The decision (see the module's docstring). `suggest` gives the customer's product
    suggestions (`models.products.for_profile`); asked only once a message is chosen.
    `sample` draws propensities for Thompson sampling (`models.learning.Scorer.sample`)."""
    policy = catalog.policy
    cid = profile.customer_id
    d = Decision(cid, channel)
    if in_holdout(cid, policy.holdout_share, policy.holdout_salt):
        d.suppressed_by, d.reason = "holdout", "in the holdout group: never messaged"
        return d
    ok, why = (consent or ConsentPolicy()).allowed(profile.consent, channel)
    if not ok:
        d.suppressed_by, d.reason = "consent", why
        return d
    ctx = context or {}
    tz = zone(ctx.get("timezone") or profile.traits.get("timezone"), policy.default_timezone)
    if channel in policy.quiet_channels:
        until = quiet_until(now_ms, tz, policy.quiet_start_min, policy.quiet_end_min)
        if until is not None:
            d.suppressed_by, d.until_ms = "quiet_hours", until
            d.reason = f"quiet hours in {tz.key} for {channel}"
            return d
    if (
        profile.last_order is not None
        and now_ms - profile.last_order < policy.suppress_after_conversion_s * 1000
    ):
        d.suppressed_by, d.reason = "recent_conversion", "ordered recently: no marketing"
        return d
    cap = capped(policy, channel, history, now_ms)
    if cap is not None:
        d.suppressed_by, d.reason = "frequency_cap", f"frequency cap reached ({cap})"
        return d
    feats = features(profile, now_ms, channel, ctx, _offset_min(tz, now_ms))
    d.features = feats
    eligible = catalog.eligible(channel, feats, now_ms)
    if not eligible:
        d.suppressed_by, d.reason = "no_eligible_message", "no message's rule holds"
        return d
    fresh = [m for m in eligible if not in_cooldown(m, history, now_ms)]
    if not fresh:
        d.suppressed_by, d.reason = "cooldown", "every eligible message was sent recently"
        return d
    ranked = sorted(
        ((propensity(m.id, channel, feats) * m.value * m.lever, m) for m in fresh),
        key=lambda sm: (-sm[0], sm[1].id),
    )
    if rng is not None and sample is not None and policy.exploration_strategy == THOMPSON:
        # every candidate scored with a propensity drawn from its model's posterior
        greedy = ranked[0][1]
        drawn = {m.id: sample(m.id, channel, feats, rng) for m in fresh}
        ranked = sorted(
            ((drawn[m.id] * m.value * m.lever, m) for m in fresh),
            key=lambda sm: (-sm[0], sm[1].id),
        )
        explore = ranked[0][1] is not greedy
        why = "Thompson sampling" + (", not the best estimate," if explore else "")
        shown = f"drawn {drawn[ranked[0][1].id]:.3f} (estimate "
        shown += f"{propensity(ranked[0][1].id, channel, feats):.3f})"
    else:
        explore = rng is not None and len(ranked) > 1 and rng.random() < policy.exploration
        if explore:
            # epsilon-greedy: one of the others, uniformly; it goes first for the atomic write
            assert rng is not None
            pick = ranked.pop(rng.randrange(1, len(ranked)))
            ranked.insert(0, pick)
        why = "exploring (epsilon-greedy)" if explore else "highest expected value"
        shown = f"{propensity(ranked[0][1].id, channel, feats):.3f}"
    d.candidates = ranked
    d.explore = explore
    score, best = ranked[0]
    d.message, d.score = best, score
    d.reason = (
        f"{why} of {len(fresh)} eligible: propensity {shown} * value {best.value:g} * "
        f"lever {best.lever:g}"
    )
    if suggest is not None:
        d.suggestions = suggest(profile)
    d.content = render(best, profile, d)
    return d


def best_channel(
    catalog: Catalog,
    profile: Profile,
    channels: Sequence[str],
    now_ms: int,
    history: Sequence[Contact] = (),
    consent: ConsentPolicy | None = None,
    propensity: Propensity = prior,
    suggest: Callable[[Profile], list[str]] | None = None,
) -> Decision:
    """The best decision over several channels (for a trigger: which message, and where):
    the highest score among those that chose a message (ties: the earlier channel), else the
    first channel's, which says why nothing was chosen."""
    decisions = [
        decide(catalog, profile, ch, now_ms, history, None, consent, propensity, suggest)
        for ch in channels
    ]
    chosen = [d for d in decisions if d.message is not None]
    if not chosen:
        return decisions[0]
    return max(chosen, key=lambda d: (d.score, -channels.index(d.channel)))


def contact_args(
    policy: ContactPolicy,
    channel: str,
    decision_id: str,
    now_ms: int,
    keep_ms: int,
    candidates: Sequence[tuple[str, int]],
) -> list[str | int]:
    """ARGV of `models/scripts/contacts.lua` (the atomic re-check of caps and cooldowns and
    the record of the contact) for `candidates` ``(message_id, cooldown_s)``, best first."""
    own = policy.caps.get(channel, ())
    overall = policy.caps.get(ALL, ())
    args: list[str | int] = [
        now_ms, channel, decision_id, keep_ms, ",".join(OUTBOUND), len(own), len(overall),
    ]  # fmt: skip
    for cap in (*own, *overall):
        args += [cap.limit, cap.window_s * 1000]
    for message_id, cooldown_s in candidates:
        args += [message_id, cooldown_s * 1000]
    return args


def render(message: Message, profile: Profile, d: Decision) -> dict[str, str]:
    """`message`'s content for the decision's channel, filled from what its rules saw and
    the decision's suggestions."""
    return message.render(d.channel, placeholders(profile, d.features, d.suggestions))


def _offset_min(tz: tzinfo, now_ms: int) -> int:
    if tz is _UTC:  # most customers: no time zone known, the policy's default (UTC)
        return 0
    off = datetime.fromtimestamp(now_ms / 1000, UTC).astimezone(tz).utcoffset()
    return int(off.total_seconds() // 60) if off is not None else 0
