"""Webhook signatures and retry timing (pure), in the style of Standard Webhooks / Svix.

Every delivery carries three headers:

- ``webhook-id``: the trigger id (the same on every retry: receivers de-duplicate on it);
- ``webhook-timestamp``: Unix seconds when this attempt was signed;
- ``webhook-signature``: ``v1,<base64 HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>``.

A receiver recomputes the signature over the raw body and refuses a timestamp more than
`tolerance_s` away from its clock, so a captured request cannot be replayed later (`verify`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
from collections.abc import Mapping
from typing import Final

TOLERANCE_S: Final = 300


class SignatureError(ValueError):
    """A webhook request whose signature or timestamp does not verify."""


def sign(secret: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def headers(secret: bytes, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
        "content-type": "application/json",
    }


def verify(
    secret: bytes,
    got: Mapping[str, str],
    body: bytes,
    now_s: float,
    tolerance_s: int = TOLERANCE_S,
) -> str:
    """Check a received webhook (header names lower-case); its id, or `SignatureError`."""
    msg_id, ts, sigs = (
        got.get("webhook-id"),
        got.get("webhook-timestamp"),
        got.get("webhook-signature"),
    )
    if not msg_id or not ts or not sigs:
        raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        t = int(ts)
    except ValueError:
        raise SignatureError(f"webhook-timestamp {ts!r} is not Unix seconds") from None
    if abs(now_s - t) > tolerance_s:
        raise SignatureError(f"webhook-timestamp {t} is over {tolerance_s} s from now: replayed?")
    want = sign(secret, msg_id, t, body)
    # several space-separated signatures are allowed (secret rotation)
    if not any(hmac.compare_digest(want, s) for s in sigs.split()):
        raise SignatureError("webhook-signature does not match the body")
    return msg_id


def backoff_s(attempt: int, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Seconds before retry number `attempt` (1 = the first retry): exponential with full
    jitter (uniform between half and all of ``base * 2**(attempt-1)``, capped)."""
    ceiling = min(cap_s, base_s * 2 ** (attempt - 1))
    return rng.uniform(ceiling / 2, ceiling)
