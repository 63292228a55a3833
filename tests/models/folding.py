"""Helpers shared by the model tests: fold events into a state, render it."""

from __future__ import annotations

from typing import Any

from models.consent import ConsentPolicy
from models.customer import ProfileParams, step
from models.events import Event
from models.profile import decode_profile, encode_profile, render

P = ProfileParams(lateness_ms=10 * 60_000)


def fold(events: list[Event], params: ProfileParams = P) -> Any:
    state = None
    for e in events:
        state, _ = step(state, e, params)
    return state


def view(
    events: list[Event], now: int | None = None, policy: ConsentPolicy | None = None
) -> dict[str, Any]:
    """The rendered profile after `events` (through the profile blob, as the API reads it)."""
    state = fold(events)
    return render(decode_profile(encode_profile(state, P)), now or state.last_seen, policy)
