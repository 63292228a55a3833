"""Random ids for the hot paths, from the OS's cryptographic generator in bulk.

`uuid.uuid4()` or `os.urandom` ask the OS for a few bytes on every call: a system call, ~7 µs
of a decision on this VM (a request id too, on every request). `RandomIds` reads 4 KB at a
time and hands out slices of it. The ids stay unpredictable (a decision id is the key that
feedback events credit, so it must not be guessable from the ones a client has seen), and a
forked child never repeats its parent's."""

from __future__ import annotations

import os
from typing import Final

_BYTES: Final = 16
_BATCH: Final = 256  # ids per read of the OS's generator


class RandomIds:
    """Random ids as lowercase hex: 128 bits by default (the shape of ``uuid4().hex``)."""

    def __init__(self) -> None:
        self._buf = b""
        self._at = 0
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._buf, self._at = b"", 0

    def hex(self, nbytes: int = _BYTES) -> str:
        """`nbytes` (1 to 4096) random bytes as twice as many hex digits."""
        at = self._at
        if at + nbytes > len(self._buf):
            self._buf, at = os.urandom(max(_BYTES * _BATCH, nbytes)), 0
        self._at = at + nbytes
        return self._buf[at : at + nbytes].hex()
