"""The /ops page in a real headless Chromium (Debian's `chromium`), opened during a replay
through the real API and dataflow: the charts are drawn, with live data; a screenshot is
saved (`.nudge/artifacts/ops.png`)."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from cli.embedded import free_port
from config.settings import Settings
from tests.conftest import WRITE_KEY
from tests.integration.test_pipeline import ROOT, Dataflow, batches, env_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ARTIFACTS = ROOT / ".nudge" / "artifacts"


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    if os.environ.get("CI"):
        pytest.fail("chromium is missing: .ci/system-deps installs Debian's chromium package")
    pytest.skip("chromium not installed (Debian's chromium package; .ci/system-deps)")


def headless(browser: str, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--hide-scrollbars", "--window-size=1400,1100", "--virtual-time-budget=6000",
         *args, url],
        capture_output=True, text=True, timeout=90,
    )  # fmt: skip


def attr(dom: str, element_id: str, name: str) -> str:
    tag = re.search(rf'<[^>]*id="{element_id}"[^>]*>', dom)
    assert tag, f"#{element_id} not in the page"
    value = re.search(rf'{name}="([^"]*)"', tag.group(0))
    assert value, f"#{element_id} has no {name}: {tag.group(0)}"
    return html.unescape(value.group(1))


def test_ops_page_draws_live_charts_during_a_replay(settings: Settings, tmp_path: Path) -> None:
    browser = chromium()
    port = free_port()
    env = {**env_for(settings), "NUDGE_OPS_SAMPLE_S": "0.5", "NUDGE_WRITE_KEYS": WRITE_KEY,
           "NUDGE_API_KEYS": "ak-test", "NUDGE_ADMIN_KEYS": "admin-test"}  # fmt: skip
    api = subprocess.Popen([sys.executable, "-m", "cli.main", "api", "--port", str(port)],
                           env=env, cwd=ROOT)  # fmt: skip
    df = Dataflow(settings).start()
    base = f"http://127.0.0.1:{port}"
    stop = threading.Event()
    sent = [0]

    def replay() -> None:  # the REES46 excerpt at ~700 events/s, and decisions, through the API
        decide = {"Authorization": "Bearer ak-test"}
        with httpx.Client(base_url=base, timeout=10) as c:
            for body in batches(6_000, size=70):
                if stop.is_set():
                    return
                r = c.post("/v1/batch", json=body, auth=(WRITE_KEY, ""))
                assert r.status_code == 200
                sent[0] += len(body["batch"])
                for call in body["batch"][:10]:
                    params = {"customer_id": call["userId"], "channel": "web"}
                    assert c.get("/v1/decide", params=params, headers=decide).status_code == 200
                time.sleep(0.1)

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the API and dataflow did not get ready"
            time.sleep(0.2)
        sender = threading.Thread(target=replay, daemon=True)
        sender.start()
        time.sleep(4)  # several samples of the replay in the API's series
        assert sender.is_alive(), "the replay ended before the page was opened"
        out = headless(browser, f"{base}/ops", "--dump-dom")
        assert out.returncode == 0, out.stderr[-2000:]
        dom = out.stdout
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "ops.png"
        snap = headless(browser, f"{base}/ops", f"--screenshot={shot}")
        assert snap.returncode == 0 and shot.stat().st_size > 20_000, snap.stderr[-2000:]
    finally:
        stop.set()
        df.stop()
        api.terminate()
        api.wait(20)
    assert sent[0] > 0
    assert int(attr(dom, "ops", "data-samples")) >= 3, dom[:2000]
    for chart in ("lag", "throughput", "latency", "triggers"):
        assert int(attr(dom, f"chart-{chart}", "data-drawn")) >= 1  # uPlot drew its canvas
        assert int(attr(dom, f"chart-{chart}", "data-points")) >= 3
    # live data: the dataflow was reading the replay while the page sampled it
    events_per_s, decisions_per_s = json.loads(attr(dom, "chart-throughput", "data-last"))
    assert events_per_s is not None and events_per_s > 0 and decisions_per_s > 0
    p50, p99 = json.loads(attr(dom, "chart-latency", "data-last"))
    assert 0 < p50 <= p99
    assert int(attr(dom, "ops", "data-events-read")) > 0
    assert '<span id="error"></span>' in dom  # every fetch of /ops/data succeeded
