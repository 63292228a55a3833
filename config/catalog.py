"""The message catalog: what nudge may say, on which channels, to whom, and what it is worth.

A TOML file of ``[[message]]`` tables (see `config/catalog.toml`, the default catalog of an
online shop). Loading validates everything and compiles each eligibility rule once, in CEL
(Common Expression Language: non-Turing-complete, side-effect free, never `eval`), against the
variables of `models.features` — so a typo is a start-up error naming the message and the field,
never a surprise at decision time.

    [[message]]
    id = "cart_reminder"
    channels = ["email", "push", "web"]
    rule = "cart.items > 0 && cart.age_s >= 3600"
    value = 30.0           # business value of a response (currency units)
    lever = 1.0            # a priority lever the marketer turns (score multiplier)
    cooldown_s = 86400     # per customer: not again within this
    purpose = "marketing"  # the consent purpose it needs
    valid_from = 2026-01-01T00:00:00Z   # optional
    valid_until = 2026-12-31T23:59:59Z  # optional
    [message.content.email]
    subject = "Still thinking about {cart_first_item}?"
    body = "Hi {first_name}, your cart is waiting: {cart_items} item(s), {cart_value}."

Templates use ``{placeholder}`` with the names in `models.features.PLACEHOLDERS` only (no
attribute access, no format specs): rendering can never reach anything but those values.
"""

from __future__ import annotations

import string
import threading
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import cel
import msgpack

from config.channels import CHANNELS, OUTBOUND

DEFAULT_CATALOG: Final = Path(__file__).with_name("catalog.toml")
# what a rule may read: the top-level names of `models.features.features` (kept in step by a
# test); and what a template may say
RULE_VARIABLES: Final = frozenset(
    {
        "cart", "orders", "revenue", "days_since_order", "days_since_seen", "days_as_customer",
        "sessions", "events", "views", "recent_products", "top_category", "channel", "traits",
        "context", "hour", "weekday", "total_events",
    }
)  # fmt: skip
# CEL's type names, which `cel.Program.variables` lists like variables (`type(x) == int`)
CEL_TYPES: Final = frozenset(
    {"int", "uint", "double", "bool", "string", "bytes", "list", "map", "null_type", "type"}
)
PLACEHOLDERS: Final = frozenset(
    {
        "first_name", "name", "cart_items", "cart_value", "cart_first_item", "top_category",
        "suggestions", "orders", "customer_id",
    }
)  # fmt: skip
_FIELDS: Final = frozenset(
    {"id", "channels", "rule", "value", "lever", "cooldown_s", "purpose", "valid_from",
     "valid_until", "content", "description"}
)  # fmt: skip


DAY_S: Final = 86_400
WEEK_S: Final = 7 * DAY_S
_WINDOWS: Final = {"day": DAY_S, "week": WEEK_S}
THOMPSON: Final = "thompson"
STRATEGIES: Final = ("epsilon-greedy", THOMPSON)  # `ContactPolicy.exploration_strategy`


@dataclass(frozen=True, slots=True)
class Cap:
    """At most `limit` messages per `window_s` seconds (a rolling window)."""

    limit: int
    window_s: int


def _default_caps() -> dict[str, tuple[Cap, ...]]:
    return {
        "*": (Cap(3, DAY_S), Cap(10, WEEK_S)),
        "email": (Cap(1, DAY_S), Cap(3, WEEK_S)),
        "sms": (Cap(1, DAY_S), Cap(2, WEEK_S)),
        "push": (Cap(2, DAY_S), Cap(5, WEEK_S)),
    }


@dataclass(frozen=True, slots=True)
class ContactPolicy:
    """The catalog's ``[policy]``: who may be contacted, how often, and when."""

    holdout_share: float = 0.05
    holdout_salt: str = "nudge-holdout-1"
    quiet_start_min: int = 21 * 60  # minutes after local midnight
    quiet_end_min: int = 8 * 60
    quiet_channels: tuple[str, ...] = OUTBOUND
    default_timezone: str = "UTC"
    suppress_after_conversion_s: int = DAY_S
    exploration: float = 0.05  # epsilon-greedy: this share of decisions tries another message
    # how decisions explore: "epsilon-greedy" (the `exploration` share picks another eligible
    # message at random) or "thompson" (every decision ranks by propensities drawn from the
    # models' posteriors: `models.learning.Learner.sample`; `exploration` is not used)
    exploration_strategy: str = "epsilon-greedy"
    # channel, or "*" for all channels together -> caps
    caps: Mapping[str, tuple[Cap, ...]] = field(default_factory=_default_caps)


class CatalogError(ValueError):
    """A catalog that cannot be used; the message says which message and field, and why."""


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    channels: tuple[str, ...]
    rule_source: str
    rule: Any  # a compiled `cel.Program`
    value: float
    lever: float
    cooldown_s: int
    purpose: str
    valid_from: int | None  # epoch ms
    valid_until: int | None
    content: Mapping[str, Mapping[str, str]]  # channel -> part -> template
    description: str = ""

    def valid_at(self, now_ms: int) -> bool:
        return (self.valid_from is None or now_ms >= self.valid_from) and (
            self.valid_until is None or now_ms <= self.valid_until
        )

    def eligible(self, features: Mapping[str, Any] | Any) -> bool:
        """Whether the rule holds for these features (`models.features.features`, or a
        `cel.Context` of them). A rule that fails at run time (a missing map key, a type
        mismatch) does not hold."""
        try:
            return self.rule.execute(features) is True
        except Exception:
            return False

    def render(self, channel: str, values: Mapping[str, Any]) -> dict[str, str]:
        """The content for `channel`, its placeholders filled from `values`."""
        return {part: tpl.format_map(values) for part, tpl in self.content[channel].items()}


class _RuleInputs(threading.local):
    """The rules' variables as CEL values, kept from one evaluation to the next (one per
    thread: the API's event loop, each dataflow worker).

    Converting a Python value to CEL is most of what a decision's eligibility costs with
    `common-expression-language` (~0.5 µs an int, ~2 µs a float, ~3 µs a string, ~10 - 20 µs
    the `cart` map), and most of a shop's customers look alike in most variables (an empty
    cart, no order yet): a variable is converted again only when its value differs from the
    last one set here. Values are compared by their msgpack encoding, which tells 0 from 0.0
    and from False (CEL's int, double and bool) and is a snapshot that later changes to the
    caller's objects cannot reach."""

    def __init__(self) -> None:
        self.ctx = cel.Context()
        self.packed: dict[str, bytes | None] = {}  # name -> encoding of the value set
        self._pack = msgpack.Packer(autoreset=True).pack

    def context(self, features: Mapping[str, Any], needed: frozenset[str]) -> cel.Context:
        packed, pack = self.packed, self._pack
        changed: dict[str, Any] | None = None
        for name in needed:
            value = features[name]
            try:
                enc: bytes | None = pack(value)
            except (TypeError, ValueError, OverflowError):
                enc = None  # not msgpack (a caller's context value): converted every time
            if enc is None or packed.get(name) != enc:
                if changed is None:
                    changed = {}
                changed[name] = value
                packed[name] = enc
        if changed:
            try:
                self.ctx.update(changed)
            except BaseException:
                for name in changed:  # (whatever was converted, nothing is trusted)
                    packed.pop(name, None)
                raise
        return self.ctx


@dataclass(frozen=True, slots=True)
class Catalog:
    messages: tuple[Message, ...]
    policy: ContactPolicy = field(default_factory=ContactPolicy)
    # per channel: its messages, the rule variables they read, and whether any of them has
    # validity dates (computed once)
    _by_channel: dict[str, tuple[tuple[Message, ...], frozenset[str], bool]] = field(
        default_factory=dict, compare=False, repr=False
    )
    _inputs: _RuleInputs = field(default_factory=_RuleInputs, compare=False, repr=False)

    _keep_s: int = field(default=0, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        windows = [c.window_s for caps in self.policy.caps.values() for c in caps]
        object.__setattr__(
            self, "_keep_s", max([*windows, *(m.cooldown_s for m in self.messages), 0])
        )
        for ch in CHANNELS:
            msgs = tuple(m for m in self.messages if ch in m.channels)
            needed = frozenset(v for m in msgs for v in m.rule.variables()) - CEL_TYPES
            dated = any(m.valid_from is not None or m.valid_until is not None for m in msgs)
            self._by_channel[ch] = (msgs, needed, dated)

    def eligible(self, channel: str, features: Mapping[str, Any], now_ms: int) -> list[Message]:
        """The messages valid now on `channel` whose rule holds for `features`.

        The features the channel's rules read are converted to CEL values once, and only
        those that changed since the last evaluation on this thread (`_RuleInputs`), then
        every rule runs on them: converting per rule would cost ~35 µs each."""
        msgs, needed, dated = self._by_channel.get(channel, ((), frozenset(), False))
        live = [m for m in msgs if m.valid_at(now_ms)] if dated else msgs
        if not live:
            return []
        ctx = self._inputs.context(features, needed)
        return [m for m in live if m.eligible(ctx)]

    def get(self, message_id: str) -> Message | None:
        return next((m for m in self.messages if m.id == message_id), None)

    @property
    def keep_s(self) -> int:
        """How long the contact history must reach back: the longest cap window or cooldown
        (computed once: every decision asks)."""
        return self._keep_s


def load_catalog(path: Path | None = None) -> Catalog:
    """Read and validate a catalog file (the default one if `path` is None)."""
    path = path or DEFAULT_CATALOG
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read the catalog: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"{path}: not valid TOML: {exc}") from exc
    return parse_catalog(data, str(path))


def parse_catalog(data: Mapping[str, Any], where: str = "catalog") -> Catalog:
    extra = set(data) - {"message", "policy"}
    if extra:
        raise CatalogError(
            f"{where}: unknown top-level key(s) {sorted(extra)}; use [[message]] and [policy]"
        )
    items = data.get("message")
    if not isinstance(items, list) or not items:
        raise CatalogError(f"{where}: no [[message]] tables")
    messages: list[Message] = []
    seen: set[str] = set()
    for n, item in enumerate(items, 1):
        msg = _message(item, f"{where}: message #{n}")
        if msg.id in seen:
            raise CatalogError(f"{where}: message {msg.id!r}: id: used twice")
        seen.add(msg.id)
        messages.append(msg)
    return Catalog(tuple(messages), _policy(data.get("policy", {}), f"{where}: policy"))


def _policy(raw: Any, where: str) -> ContactPolicy:
    """``[policy]``: every key optional (defaults: `ContactPolicy`)."""

    def fail(key: str, why: str) -> CatalogError:
        return CatalogError(f"{where}: {key}: {why}")

    if not isinstance(raw, dict):
        raise CatalogError(f"{where}: a table is required")
    known = {"holdout_share", "holdout_salt", "quiet_hours", "default_timezone",
             "suppress_after_conversion_s", "caps", "exploration",
             "exploration_strategy"}  # fmt: skip
    unknown = set(raw) - known
    if unknown:
        raise fail(sorted(unknown)[0], f"unknown key (known: {', '.join(sorted(known))})")
    base = ContactPolicy()
    share = raw.get("holdout_share", base.holdout_share)
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share < 1:
        raise fail("holdout_share", "a share from 0 (no holdout) to below 1, e.g. 0.05")
    salt = raw.get("holdout_salt", base.holdout_salt)
    if not isinstance(salt, str) or not salt:
        raise fail("holdout_salt", "a non-empty string (changing it draws a new group)")
    quiet = raw.get("quiet_hours", {})
    if not isinstance(quiet, dict) or set(quiet) - {"start", "end", "channels"}:
        raise fail("quiet_hours", 'a table {start = "21:00", end = "08:00", channels = [...]}')
    start = _clock(quiet.get("start", "21:00"), lambda why: fail("quiet_hours.start", why))
    end = _clock(quiet.get("end", "08:00"), lambda why: fail("quiet_hours.end", why))
    qch = quiet.get("channels", list(base.quiet_channels))
    if not isinstance(qch, list) or any(c not in CHANNELS for c in qch):
        raise fail("quiet_hours.channels", f"a list of channels among {', '.join(CHANNELS)}")
    tz = raw.get("default_timezone", base.default_timezone)
    if not isinstance(tz, str) or not _zone_exists(tz):
        raise fail("default_timezone", 'an IANA time zone such as "Europe/Paris"')
    suppress = raw.get("suppress_after_conversion_s", base.suppress_after_conversion_s)
    if not isinstance(suppress, int) or isinstance(suppress, bool) or suppress < 0:
        raise fail("suppress_after_conversion_s", "seconds, a whole number ≥ 0")
    explore = raw.get("exploration", base.exploration)
    if isinstance(explore, bool) or not isinstance(explore, int | float) or not 0 <= explore <= 1:
        raise fail("exploration", "the share of decisions that explore, from 0 to 1 (e.g. 0.1)")
    strategy = raw.get("exploration_strategy", base.exploration_strategy)
    if strategy not in STRATEGIES:
        raise fail("exploration_strategy", f"one of {', '.join(map(repr, STRATEGIES))}")
    caps = dict(base.caps)
    raw_caps = raw.get("caps", {})
    if not isinstance(raw_caps, dict):
        raise fail("caps", 'a table of channel = {day = N, week = N} ("*": all channels)')
    for ch, windows in raw_caps.items():
        if ch != "*" and ch not in CHANNELS:
            raise fail(f"caps.{ch}", f"unknown channel (known: *, {', '.join(CHANNELS)})")
        if not isinstance(windows, dict) or set(windows) - set(_WINDOWS):
            raise fail(f"caps.{ch}", "a table {day = N, week = N} (either, both or none)")
        if not windows:  # {}: no cap there (and no history kept for one)
            caps.pop(ch, None)
            continue
        for w, n in windows.items():
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise fail(f"caps.{ch}.{w}", "a whole number ≥ 0 (0: never)")
        caps[ch] = tuple(Cap(n, _WINDOWS[w]) for w, n in sorted(windows.items()))
    return ContactPolicy(
        float(share), salt, start, end, tuple(qch), tz, suppress, float(explore), strategy,
        caps,
    )  # fmt: skip


def _clock(v: Any, fail: Any) -> int:
    if not isinstance(v, str) or len(v) != 5 or v[2] != ":":
        raise fail('a local time "HH:MM"')
    try:
        h, m = int(v[:2]), int(v[3:])
    except ValueError:
        raise fail('a local time "HH:MM"') from None
    if not (0 <= h < 24 and 0 <= m < 60):
        raise fail('a local time "HH:MM"')
    return h * 60 + m


def _zone_exists(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _message(item: Any, where: str) -> Message:
    if not isinstance(item, dict):
        raise CatalogError(f"{where}: not a table")
    mid = item.get("id")
    if not isinstance(mid, str) or not mid.replace("_", "").replace("-", "").isalnum():
        raise CatalogError(f"{where}: id: required, letters, digits, '_' and '-' only")
    where = f"{where.rsplit(':', 1)[0]}: message {mid!r}"

    def fail(field: str, why: str) -> CatalogError:
        return CatalogError(f"{where}: {field}: {why}")

    unknown = set(item) - _FIELDS
    if unknown:
        raise fail(sorted(unknown)[0], f"unknown field (known: {', '.join(sorted(_FIELDS))})")
    channels = item.get("channels")
    if not isinstance(channels, list) or not channels:
        raise fail("channels", "a non-empty list of channels is required")
    for ch in channels:
        if ch not in CHANNELS:
            raise fail("channels", f"unknown channel {ch!r} (known: {', '.join(CHANNELS)})")
    rule_source = item.get("rule", "true")
    if not isinstance(rule_source, str) or not rule_source.strip():
        raise fail("rule", 'a CEL expression is required (e.g. "cart.items > 0")')
    try:
        rule = cel.compile(rule_source)
    except ValueError as exc:
        raise fail("rule", f"not valid CEL: {str(exc).splitlines()[0]}") from exc
    unknown_vars = set(rule.variables()) - RULE_VARIABLES - CEL_TYPES
    if unknown_vars:
        known = ", ".join(sorted(RULE_VARIABLES))
        raise fail("rule", f"unknown variable(s) {sorted(unknown_vars)} (known: {known})")
    value = _number(item.get("value"), fail, "value", minimum=0.0)
    lever = _number(item.get("lever", 1.0), fail, "lever", minimum=0.0)
    cooldown = item.get("cooldown_s", 86_400)
    if not isinstance(cooldown, int) or isinstance(cooldown, bool) or cooldown < 0:
        raise fail("cooldown_s", "seconds, a whole number ≥ 0")
    purpose = item.get("purpose", "marketing")
    if not isinstance(purpose, str) or not purpose.isidentifier():
        raise fail("purpose", 'a consent purpose such as "marketing"')
    valid_from = _time(item.get("valid_from"), fail, "valid_from")
    valid_until = _time(item.get("valid_until"), fail, "valid_until")
    if valid_from is not None and valid_until is not None and valid_until <= valid_from:
        raise fail("valid_until", "must be after valid_from")
    content = item.get("content")
    if not isinstance(content, dict):
        raise fail("content", "a table per channel ([message.content.<channel>]) is required")
    parsed: dict[str, dict[str, str]] = {}
    for ch in channels:
        parts = content.get(ch)
        if not isinstance(parts, dict) or not parts:
            raise fail(f"content.{ch}", f"missing: the message is allowed on {ch}")
        parsed[ch] = {}
        for part, tpl in parts.items():
            if not isinstance(tpl, str):
                raise fail(f"content.{ch}.{part}", "a template string is required")
            _check_template(tpl, lambda why, f=f"content.{ch}.{part}": fail(f, why))
            parsed[ch][part] = tpl
    stray = set(content) - set(channels)
    if stray:
        raise fail(f"content.{sorted(stray)[0]}", "content for a channel not in `channels`")
    description = item.get("description", "")
    if not isinstance(description, str):
        raise fail("description", "a string")
    return Message(
        mid, tuple(channels), rule_source, rule, value, lever, cooldown, purpose, valid_from,
        valid_until, parsed, description,
    )  # fmt: skip


def _number(v: Any, fail: Any, field: str, minimum: float) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or v < minimum:
        raise fail(field, f"a number ≥ {minimum:g} is required")
    return float(v)


def _time(v: Any, fail: Any, field: str) -> int | None:
    if v is None:
        return None
    if not isinstance(v, datetime) or v.tzinfo is None:
        raise fail(field, "a TOML date-time with a zone, e.g. 2026-12-24T00:00:00Z")
    return int(v.timestamp() * 1000)


def _check_template(tpl: str, fail: Any) -> None:
    try:
        parts = list(string.Formatter().parse(tpl))
    except ValueError as exc:
        raise fail(f"not a valid template: {exc}") from exc
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if spec or conversion:
            raise fail(f"{{{name}}}: no format specs or conversions, just {{name}}")
        if name not in PLACEHOLDERS:
            raise fail(f"unknown placeholder {{{name}}} (known: {', '.join(sorted(PLACEHOLDERS))})")
