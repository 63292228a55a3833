"""What every bench prints first: the machine, the software, the date and the command."""

from __future__ import annotations

import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

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
    lines.append(
        f"speed     {speed_index():.1f} M loop iterations/s (pure-Python calibration; compare "
        "between runs: this VM's speed varies by ±25% with its host's load)"
    )
    load = os.getloadavg()
    busy = cpu_busy()
    warn = "  WARNING: the machine is busy, figures are biased low" if busy > 0.1 else ""
    lines.append(
        f"load      {100 * busy:.0f}% of all CPUs busy in the second before start; load average "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}{warn}"
    )
    return "\n".join(lines)


def speed_index(iterations: int = 1_000_000) -> float:
    """Millions of iterations per second of a fixed pure-Python loop (best of 3)."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        acc = 0
        for i in range(iterations):
            acc += i & 7
        best = min(best, time.perf_counter() - start)
    return iterations / best / 1e6


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat (guest time is already
    inside user time; steal time is neither)."""
    with Path("/proc/stat").open() as f:
        user, nice, system, idle, iowait, irq, softirq = (int(v) for v in f.readline().split()[1:8])
    busy = user + nice + system + irq + softirq
    return busy, busy + idle + iowait


def cpu_busy(seconds: float = 1.0) -> float:
    """Share of all CPUs busy over the next `seconds` (others' load before a bench), 0..1."""
    try:
        busy0, total0 = _cpu_times()
        time.sleep(seconds)
        busy1, total1 = _cpu_times()
    except (OSError, ValueError, IndexError):
        return 0.0
    return (busy1 - busy0) / max(1, total1 - total0)


class CpuWindow:
    """Measures, over a `with` block, how many cores processes other than ours kept busy.

    Ours are this process (all threads) and `pids` (e.g. redis-server, the API); whatever
    else ran on the machine meanwhile competed with the bench for the CPUs."""

    def __init__(self, pids: Sequence[int] = ()) -> None:
        self.pids = list(pids)
        self.others_cores = 0.0
        self.seconds = 0.0

    def _own(self) -> float:
        return time.process_time() + sum(cpu_seconds(pid) for pid in self.pids)

    def __enter__(self) -> CpuWindow:
        self._busy0 = _cpu_times()[0]
        self._own0 = self._own()
        self._t0 = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.monotonic() - self._t0
        busy = (_cpu_times()[0] - self._busy0) / os.sysconf("SC_CLK_TCK")
        own = self._own() - self._own0
        self.others_cores = max(0.0, busy - own) / max(1e-9, self.seconds)


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


# --- the processes a bench starts ----------------------------------------------------------


def stop_process(
    proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, wait_s: float = 10.0
) -> None:
    """Send `sig` to `proc` if it still runs; SIGKILL it after `wait_s`."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def tail(path: Path, lines: int = 15, missing: str = "") -> str:
    """The last `lines` lines of a log file (`missing` if it cannot be read)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return missing


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children of all its threads, recursively)."""
    out: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                kids = Path(f"/proc/{parent}/task/{task}/children").read_text().split()
            except OSError:
                continue
            for kid in map(int, kids):
                if kid not in out:
                    out.append(kid)
                    todo.append(kid)
    return out


def rss_mb(pid: int) -> float | None:
    """Resident set size of `pid` in MB (None: gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None
