"""Logging for every nudge process: one JSON object per line (python-json-logger) carrying
the request and decision ids in scope, or plain text on a terminal.

The API sets `REQUEST_ID` for each request (from the caller's ``X-Request-ID`` or a new one)
and `DECISION_ID` while it decides; every log line written meanwhile carries them.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from typing import Final

from pythonjsonlogger.json import JsonFormatter

REQUEST_ID: Final[ContextVar[str | None]] = ContextVar("request_id", default=None)
DECISION_ID: Final[ContextVar[str | None]] = ContextVar("decision_id", default=None)


class ContextFilter(logging.Filter):
    """Adds the ids in scope (`REQUEST_ID`, `DECISION_ID`) to each record that has none."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in (("request_id", REQUEST_ID), ("decision_id", DECISION_ID)):
            value = var.get()
            if value is not None and not hasattr(record, name):
                setattr(record, name, value)
        return True


def json_formatter() -> logging.Formatter:
    return JsonFormatter(
        "{levelname}{name}{message}",
        style="{",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp=True,
    )


def setup_logging(fmt: str = "auto", level: str = "INFO", stream: object = None) -> None:
    """Configure the root logger once per process (again: replaces the handler).

    `fmt`: ``json``, ``text``, or ``auto`` (text when `stream` is a terminal, else JSON, as
    log collectors want)."""
    out = stream if stream is not None else sys.stderr
    if fmt == "auto":
        fmt = "text" if getattr(out, "isatty", lambda: False)() else "json"
    handler = logging.StreamHandler(out)  # type: ignore[arg-type]
    handler.addFilter(ContextFilter())
    if fmt == "json":
        handler.setFormatter(json_formatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_nudge", False)]:
        root.removeHandler(old)
    handler._nudge = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise
    # uvicorn's own loggers propagate to ours rather than printing their own format
    for name in ("uvicorn", "uvicorn.error"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
