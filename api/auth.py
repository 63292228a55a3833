"""Key checks. Every comparison runs over all configured keys in constant time."""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Sequence

from pydantic import SecretStr


def key_matches(candidate: str | None, keys: Sequence[SecretStr]) -> bool:
    """True when `candidate` equals one of `keys`; timing does not depend on which or where.

    >>> key_matches("b", [SecretStr("a"), SecretStr("b")]), key_matches("c", [SecretStr("a")])
    (True, False)
    """
    if not candidate:
        return False
    found = False
    cand = candidate.encode()
    for key in keys:
        found |= hmac.compare_digest(cand, key.get_secret_value().encode())
    return found


def basic_user(authorization: str | None) -> str | None:
    """The user part of an HTTP Basic header (Segment sends the write key as the user)."""
    if not authorization or authorization[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
    except (binascii.Error, ValueError, UnicodeDecodeError):  # ValueError: non-ASCII input
        return None
    return decoded.split(":", 1)[0]


def bearer(authorization: str | None) -> str | None:
    if not authorization or authorization[:7].lower() != "bearer ":
        return None
    return authorization[7:].strip()
