"""`nudge dataflow --processes 2`: a Bytewax cluster of two processes on this host gives the
same profiles, byte for byte, as one process; its recovery store is laid out per process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import redis

from cli.status import snapshot
from config.settings import Settings
from models.keys import Keys
from tests.conftest import rees46_path
from tests.integration.test_pipeline import (
    ROOT,
    ROWS,
    Dataflow,
    batches,
    env_for,
    expected_from_csv,
    ingest,
    profiles,
    run_alone,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_two_processes_give_the_profiles_of_one(
    settings: Settings, rclient: redis.Redis, tmp_path: Path
) -> None:
    expected = expected_from_csv(rees46_path(), ROWS)
    users = list(expected)
    bodies = batches(ROWS)

    one = run_alone(settings, rclient, tmp_path, "one", bodies, expected)

    keys = Keys(settings.key_prefix)
    df = Dataflow(settings, args=("--processes", "2")).start()
    try:
        ingest(settings, bodies)
        wait_for(rclient, keys, expected, timeout=120)
        snap = snapshot(rclient, keys, settings.partitions)
        assert all(p.reported_ms for p in snap.partitions)  # every partition is read by someone
    finally:
        df.stop()
    assert df.proc is not None and df.proc.returncode == 0
    assert profiles(rclient, keys, users) == profiles(rclient, one, users)
    # one recovery directory per process, each with its own partitions
    parts = [sorted(p.name for p in (settings.recovery_dir / f"proc-{k}").glob("part-*"))
             for k in range(2)]  # fmt: skip
    assert all(parts) and not set(parts[0]) & set(parts[1])
    # restarting with another process count would lose or double partitions: refused
    out = subprocess.run(
        [sys.executable, "-m", "cli.main", "dataflow", "--processes", "3"],
        env=env_for(settings), cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2 and "2-process cluster" in out.stderr
