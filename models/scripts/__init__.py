"""The Lua scripts of nudge's Redis layout (`models.keys`), shared by the API and the dataflow.
Each touches the keys of one hash tag only, so it runs on Redis Cluster too."""

from __future__ import annotations

from pathlib import Path
from typing import Final

_HERE = Path(__file__).parent
CONTACTS: Final = (_HERE / "contacts.lua").read_text()
DECISION_READ: Final = (_HERE / "decision_read.lua").read_text()
DECISION_DONE: Final = (_HERE / "decision_done.lua").read_text()
TRIGGERS_ADD: Final = (_HERE / "triggers_add.lua").read_text()
STREAM_INFO: Final = (_HERE / "stream_info.lua").read_text()
