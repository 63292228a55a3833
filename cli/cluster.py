"""`nudge dataflow --processes N`: a Bytewax cluster of N processes on this host.

Each child is `nudge dataflow -i K -a ADDRESSES` (what several hosts run, one each), with its
own metrics port (`NUDGE_METRICS_PORT` + K) and its own share of the recovery partitions
(`NUDGE_RECOVERY_DIR`/proc-K: each partition must exist exactly once in the cluster). The
stream partitions are shared out among all the workers by Bytewax. Ctrl-C (or SIGTERM) stops
them all; if one dies, the others are stopped and its exit code is returned.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from cli.embedded import free_port
from config.settings import ConfigError


def recovery_dirs(root: Path, processes: int, partitions: int) -> list[Path]:
    """Each process's recovery directory under `root`, made on first start: at least one
    recovery partition per process, dealt out round-robin (`init_share`). Refuses a different
    process count than the one the store was made for (its partitions would be lost or
    doubled)."""
    dirs = [root / f"proc-{k}" for k in range(processes)]
    existing = sorted(root.glob("proc-*")) if root.exists() else []
    if existing:
        if len(existing) != processes or any(not d.exists() for d in dirs):
            raise ConfigError(
                f"{root} holds the recovery store of a {len(existing)}-process cluster: run "
                f"with --processes {len(existing)}, or move the part-*.sqlite3 files of every "
                f"proc-* directory into {processes} new ones (each file exactly once)"
            )
        return dirs
    if any(root.glob("part-*.sqlite3")):
        raise ConfigError(
            f"{root} holds the recovery store of a single process: run without --processes, "
            "or move its part-*.sqlite3 files into proc-0 … proc-N-1 subdirectories"
        )
    for k, d in enumerate(dirs):
        init_share(d, k, processes, partitions)
    return dirs


def init_share(directory: Path, process: int, processes: int, partitions: int) -> int:
    """Create process `process`'s share of a new recovery store for a cluster of `processes`
    in `directory`: of ``max(partitions, processes)`` partitions, those whose index is
    `process` modulo `processes`. Every process can make its own share on its own host, and
    together they hold each partition exactly once (as `recovery_dirs` deals them). Returns
    how many partitions this process holds."""
    from bytewax.recovery import init_db_dir

    staging = directory / ".staging"
    staging.mkdir(parents=True, exist_ok=True)
    try:
        init_db_dir(staging, max(partitions, processes))  # type: ignore[no-untyped-call]
        mine = 0
        for part in staging.glob("part-*.sqlite3"):
            if int(part.stem.removeprefix("part-")) % processes == process:
                part.rename(directory / part.name)
                mine += 1
        return mine
    finally:
        shutil.rmtree(staging)


def run(
    processes: int,
    workers: int,
    recovery: bool,
    recovery_root: Path,
    recovery_partitions: int,
    metrics_port: int,
    host: str = "127.0.0.1",
) -> int:
    """Start the cluster in the foreground; the exit code."""
    dirs = recovery_dirs(recovery_root, processes, recovery_partitions) if recovery else []
    addresses = ";".join(f"{host}:{free_port()}" for _ in range(processes))
    procs: list[subprocess.Popen[bytes]] = []
    for k in range(processes):
        env = {**os.environ, "NUDGE_METRICS_PORT": str(metrics_port + k if metrics_port else 0)}
        if recovery:
            env["NUDGE_RECOVERY_DIR"] = str(dirs[k])
        args = [sys.executable, "-m", "cli.main", "dataflow", "-w", str(workers),
                "-i", str(k), "-a", addresses]  # fmt: skip
        if not recovery:
            args.append("--no-recovery")
        procs.append(subprocess.Popen(args, env=env))

    def stop(signum: int = signal.SIGINT) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)
        deadline = time.monotonic() + 20
        for p in procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        while True:
            for p in procs:
                code = p.poll()
                if code is not None:
                    stop()
                    return code
            time.sleep(0.2)
    except KeyboardInterrupt:
        stop()
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
