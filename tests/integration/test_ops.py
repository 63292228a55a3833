"""Operating the real thing: the lag grows while the dataflow is stopped and falls back once
it resumes (as `nudge status` and the progress reports see it), and the dataflow process's
/metrics parse and pass promtool's checks."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from cli.embedded import free_port
from cli.status import snapshot
from config.settings import Settings
from models.keys import Keys
from models.progress import OpsSnapshot
from tests.api.test_ops import promtool
from tests.integration.test_pipeline import ROOT, Dataflow, batches, env_for, ingest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def wait_caught_up(rclient: redis.Redis, keys: Keys, partitions: int) -> OpsSnapshot:
    deadline = time.monotonic() + 60
    while True:
        snap = snapshot(rclient, keys, partitions)
        if snap.behind() == 0 and all(p.caught_up and p.reported_ms for p in snap.partitions):
            return snap
        assert time.monotonic() < deadline, snap
        time.sleep(0.1)


def status(settings: Settings, slo_s: float) -> subprocess.CompletedProcess[str]:
    env = {**env_for(settings), "NUDGE_LAG_SLO_S": str(slo_s)}
    return subprocess.run([sys.executable, "-m", "cli.main", "status"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def test_lag_grows_while_the_dataflow_is_stopped_and_falls_back_once_it_resumes(
    settings: Settings, rclient: redis.Redis
) -> None:
    keys = Keys(settings.key_prefix)
    bodies = batches(1_200, size=100)
    port = free_port()
    df = Dataflow(settings, env={"NUDGE_METRICS_PORT": str(port)}).start()
    try:
        ingest(settings, bodies[:4])
        snap = wait_caught_up(rclient, keys, settings.partitions)
        assert snap.events() == 400
        # the dataflow process's own metrics, once an epoch has snapshotted its state
        time.sleep(3 * settings.epoch_s)
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        got = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
        read = sum(v for (n, _), v in got.items() if n == "nudge_dataflow_events_total")
        assert read == 400
        assert got["nudge_dataflow_sink_duration_seconds_count", ()] > 0
        assert got["nudge_dataflow_snapshots_total", (("step", "read_events"),)] > 0
        assert got["nudge_dataflow_freshness_seconds_count", ()] > 0  # probes went round
        tool = promtool()
        if tool:
            lint = subprocess.run([tool, "check", "metrics"], input=text, capture_output=True,
                                  text=True, timeout=30)  # fmt: skip
            assert lint.returncode == 0, lint.stdout + lint.stderr
        assert status(settings, slo_s=5).returncode == 0
    finally:
        df.stop()

    # stopped: every new request adds entries nobody reads, and the age gap widens
    seen = []
    for body in bodies[4:8]:
        time.sleep(0.3)
        ingest(settings, [body])
        snap = snapshot(rclient, keys, settings.partitions)
        seen.append((snap.behind(), snap.max_lag_ms()))
    behind = [b for b, _ in seen]
    ages = [ms for _, ms in seen]
    assert behind == sorted(behind) and behind[0] is not None and behind[0] > 0, seen
    assert behind[-1] > behind[0] and ages[-1] > ages[0] >= 0, seen
    late = status(settings, slo_s=0.5)
    assert late.returncode == 1 and "above the SLO of 0.5 s" in late.stdout, late.stdout

    # resumed: it reads the backlog and the lag falls back to nothing
    df = Dataflow(settings).start()
    try:
        snap = wait_caught_up(rclient, keys, settings.partitions)
        # (entries read again after the restart, if any were past its last snapshot, count again)
        assert snap.max_lag_ms() == 0 and snap.events() >= 800
        assert status(settings, slo_s=0.5).returncode == 0
    finally:
        df.stop()
