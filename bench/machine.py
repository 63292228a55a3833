"""What every bench prints first: the machine, the software, the date and the command."""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from cli.embedded import redis_binary

REES46 = Path("/work/shared/data/rees46_oct2019_head/events.csv.gz")
TAOBAO = Path("/work/shared/data/taobao_userbehavior_slice/events.csv.gz")


def data_path(path: Path) -> Path:
    """`path` if it exists, else the same file under ``../shared/data`` of the checkout."""
    if path.exists():
        return path
    here = Path(__file__).resolve().parent.parent
    for parent in (here, *here.parents):
        candidate = parent / "shared" / "data" / path.parent.name / path.name
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"{path}: dataset not found (expected under ../shared/data)")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "-"


def redis_version() -> str:
    try:
        out = subprocess.run(
            [redis_binary(), "--version"], capture_output=True, text=True, timeout=5
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    for word in out.split():
        if word.startswith("v="):
            return word[2:]
    return out.strip() or "unknown"


def header(title: str, module: str) -> str:
    """The lines to print before any figure, so that the output can be pasted as is."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    command = shlex.join(["python", "-m", module, *sys.argv[1:]])
    lines = [
        f"== {title}",
        f"date      {datetime.now(UTC).strftime('%Y-%m-%d %H:%M:%S UTC')}",
        f"command   {command}",
        f"machine   nproc {usable} (os.cpu_count {os.cpu_count()}), {cpu_model()}, "
        f"{platform.system()} {platform.release()}",
        f"software  Python {platform.python_version()} ({sys.implementation.name}), "
        f"bytewax {_version('bytewax')}, redis-py {_version('redis')}, "
        f"hiredis {_version('hiredis')}, redis-server {redis_version()}",
    ]
    return "\n".join(lines)


def table(rows: Sequence[Sequence[object]], head: Sequence[str]) -> str:
    """A plain-text table (left-aligned first column, right-aligned others)."""
    cells = [[str(c) for c in head], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]

    def fmt(row: list[str]) -> str:
        first, *rest = row
        parts = [first.ljust(widths[0])]
        parts += [c.rjust(w) for c, w in zip(rest, widths[1:], strict=True)]
        return "  ".join(parts).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(cells[0]), sep, *(fmt(r) for r in cells[1:])])


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process `pid` (Linux /proc), 0 if unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    # after "pid (comm)": state is fields[0]; utime is field 14 and stime 15 of the full line
    return (int(fields[11]) + int(fields[12])) / ticks
