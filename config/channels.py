"""The channels nudge knows, in one place (`config` imports nothing of ours; `models` and the
catalog take them from here)."""

from __future__ import annotations

from typing import Final

CHANNELS: Final = ("web", "app", "email", "sms", "push", "store", "call")
# channels nudge sends through (as opposed to answering a visit): quiet hours and the overall
# frequency caps apply to them
OUTBOUND: Final = ("email", "sms", "push", "call")
