"""Consent per channel and purpose: what the customer said, and what the policy assumes.

Customers state consent in two ways, both carrying a ``consent`` object of the same shape —
``{channel: true | false | {purpose: true | false}}`` (a bare boolean is the ``marketing``
purpose):

- ``identify`` traits: ``{"traits": {"consent": {"email": true, "sms": {"marketing": false}}}}``;
- a ``Consent Updated`` track event: ``{"properties": {"consent": {...}, "source": "footer"}}``.

Each (channel, purpose) keeps its latest statement (event time, then messageId hash: the
order of arrival does not matter), with its time and source. Unknown consent follows the
policy: opt-in channels (email and SMS by default) need an explicit grant, the others are
allowed until revoked.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from models import NudgeError
from models.events import CHANNEL_RE

CONSENT_EVENT: Final = "Consent Updated"
DEFAULT_PURPOSE: Final = "marketing"
PURPOSE_RE = CHANNEL_RE  # lower-case words, like channels


class InvalidConsent(NudgeError):
    """A consent object of the wrong shape; `field` is the dotted path within it."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def statements(consent: Any, field: str = "consent") -> Iterator[tuple[str, bool]]:
    """Validate a consent object and yield ``("channel:purpose", granted)`` pairs.

    >>> sorted(statements({"email": True, "sms": {"marketing": False, "service": True}}))
    [('email:marketing', True), ('sms:marketing', False), ('sms:service', True)]
    """
    if not isinstance(consent, dict):
        raise InvalidConsent(field, "must be an object of channel: true/false or {purpose: ...}")
    for channel, value in consent.items():
        where = f"{field}.{channel}"
        if not isinstance(channel, str) or not CHANNEL_RE.match(channel):
            raise InvalidConsent(where, "is not a channel name (lower-case word)")
        if isinstance(value, bool):
            yield f"{channel}:{DEFAULT_PURPOSE}", value
        elif isinstance(value, dict):
            for purpose, granted in value.items():
                if not isinstance(purpose, str) or not PURPOSE_RE.match(purpose):
                    raise InvalidConsent(f"{where}.{purpose}", "is not a purpose (lower-case word)")
                if not isinstance(granted, bool):
                    raise InvalidConsent(f"{where}.{purpose}", "must be true or false")
                yield f"{channel}:{purpose}", granted
        else:
            raise InvalidConsent(where, "must be true, false or {purpose: true/false}")


@dataclass(frozen=True, slots=True)
class ConsentPolicy:
    """What unknown consent means: channels in `opt_in` need an explicit grant."""

    opt_in: frozenset[str] = frozenset({"email", "sms"})

    def allowed(
        self, consent: Mapping[str, list[Any]], channel: str, purpose: str = DEFAULT_PURPOSE
    ) -> tuple[bool, str]:
        """Whether a message may go to `channel` for `purpose`, and why (one dict lookup).

        `consent` is a profile's ``channel:purpose -> [ts, hash, granted, source]`` table.

        >>> policy = ConsentPolicy()
        >>> policy.allowed({}, "email"), policy.allowed({}, "push")
        ((False, 'no consent for email marketing (opt-in channel)'), (True, 'push is opt-out'))
        >>> policy.allowed({"email:marketing": [1, 0, True, "signup"]}, "email")
        (True, 'granted for email marketing')
        """
        stated = consent.get(f"{channel}:{purpose}")
        if stated is not None:
            verb = "granted" if stated[2] else "revoked"
            return bool(stated[2]), f"{verb} for {channel} {purpose}"
        if channel in self.opt_in:
            return False, f"no consent for {channel} {purpose} (opt-in channel)"
        return True, f"{channel} is opt-out"
