"""The front door: `nudge` commands, dataset readers, and the README staying true."""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from cli.datasets import DatasetError, detect, read_calls
from cli.embedded import free_port
from config.settings import Settings
from tests.conftest import EXCERPT

ROOT = Path(__file__).resolve().parents[2]


def nudge(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Any:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("NUDGE_")}
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        env={**clean, "PYTHONPATH": str(ROOT), **(env or {})},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"`(NUDGE_[A-Z_]+)`", readme))
    fields = {f"NUDGE_{name.upper()}" for name in Settings.model_fields}
    assert fields <= documented, f"settings missing from the README: {fields - documented}"


def test_api_refuses_to_start_without_keys() -> None:
    out = nudge("api", env={"NUDGE_REDIS_URL": "redis://127.0.0.1:1/0"})
    assert out.returncode == 2
    assert "NUDGE_WRITE_KEYS, NUDGE_API_KEYS, NUDGE_ADMIN_KEYS not set" in out.stderr


def test_bad_setting_is_a_sentence() -> None:
    out = nudge("api", env={"NUDGE_PARTITIONS": "many"})
    assert out.returncode == 2
    assert "NUDGE_PARTITIONS" in out.stderr and "integer" in out.stderr


def test_dataflow_refuses_to_start_without_redis() -> None:
    out = nudge("dataflow")
    assert out.returncode == 2
    assert "NUDGE_REDIS_URL is not set" in out.stderr


@pytest.mark.integration
@pytest.mark.slow
def test_demo_runs_the_whole_engine(tmp_path: Path) -> None:
    port = free_port()
    out = nudge(
        "demo", "--exit", "--port", str(port), "--data-dir", str(tmp_path),
        "--sample", str(EXCERPT),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "nudge is up" in out.stderr
    assert "6,000 accepted, 0 rejected" in out.stderr
    profiles = re.findall(r'"customer_id": "(\d+)"', out.stdout)
    assert len(profiles) == 3
    assert "curl -s -H 'Authorization: Bearer" in out.stdout
    assert (tmp_path / "recovery").is_dir()


def test_an_interrupt_inside_a_step_is_a_clean_stop() -> None:
    """A SIGINT that lands while a step's Python code runs reaches `nudge dataflow` as the
    step's error, caused by the KeyboardInterrupt: a stop, not a crash (seen in CI as a
    traceback at Ctrl-C)."""
    from cli.main import _interrupted

    def raised(exc: BaseException, cause: BaseException | None = None) -> BaseException:
        try:
            raise exc from cause
        except BaseException as caught:
            return caught

    in_step = raised(RuntimeError("error calling `next_batch`"), raised(KeyboardInterrupt()))
    assert _interrupted(in_step)
    assert _interrupted(RuntimeError("interrupt signal received, shutting down"))
    assert _interrupted(KeyboardInterrupt())
    assert not _interrupted(raised(RuntimeError("error calling `next_batch`"), ValueError("x")))


def test_taobao_and_jsonl_readers(tmp_path: Path) -> None:
    tb = tmp_path / "tb.csv.gz"
    with gzip.open(tb, "wt") as f:
        f.write("user_id,item_id,category_id,behavior_type,timestamp\n")
        f.write("1,10,100,pv,1511658000\n1,10,100,cart,1511658001\n1,10,100,buy,1511658002\n")
    assert detect(tb) == "taobao"
    calls = [c for _, c in read_calls(tb)]
    assert [c["event"] for c in calls] == ["Product Viewed", "Product Added", "Order Completed"]
    assert calls[2]["properties"]["products"] == [{"product_id": "10", "category": "100"}]
    assert calls[0]["messageId"] != calls[1]["messageId"]

    jl = tmp_path / "events.jsonl"
    jl.write_bytes(b"\n".join(orjson.dumps({"type": "page", "userId": str(i)}) for i in range(3)))
    assert detect(jl) == "jsonl"
    assert [c["userId"] for _, c in read_calls(jl)] == ["0", "1", "2"]

    bad = tmp_path / "x.csv"
    bad.write_text("a,b,c\n")
    with pytest.raises(DatasetError, match="unknown format"):
        detect(bad)


def test_rees46_rows_become_segment_calls() -> None:
    calls = [c for _, c in read_calls(EXCERPT, limit=5)]
    assert calls[0]["event"] == "Product Viewed"
    assert calls[0]["timestamp"] == "2019-10-01T00:00:00Z"
    assert calls[0]["properties"]["brand"] == "shiseido"
    # the same file twice gives the same messageIds (replays are idempotent)
    assert [c["messageId"] for c in calls] == [c["messageId"] for _, c in read_calls(EXCERPT, 5)]


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("ctrl_c", ["process", "terminal"])
def test_up_serves_and_ctrl_c_stops_everything(tmp_path: Path, ctrl_c: str) -> None:
    """Ctrl-C as `kill -INT` sends it (to `up` alone) and as a terminal does (to its whole
    process group): either way one clean stop of everything, without a traceback."""
    import signal
    import threading
    import time

    import httpx

    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("NUDGE_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "up", "--port", str(port), "--data-dir", str(tmp_path)],
        env={**clean, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
        process_group=0,  # as a shell starts a foreground job
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr or []), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while not any("admin key" in line for line in lines):
            assert proc.poll() is None and time.monotonic() < deadline, "".join(lines)
            time.sleep(0.05)
        # ready once the dataflow has reported progress on every partition
        while httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code != 200:
            assert proc.poll() is None and time.monotonic() < deadline, "".join(lines)
            time.sleep(0.1)
        # its metrics port is printed, and serves
        (metrics,) = re.findall(r"dataflow (http://\S+/metrics)", "".join(lines))
        assert "nudge_dataflow_events_total" in httpx.get(metrics, timeout=2).text
        if ctrl_c == "terminal":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGINT)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(5)
    out = "".join(lines)
    assert proc.returncode == 0, out
    assert "dataflow stopped" in out and "Traceback" not in out and '"ERROR"' not in out, out
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
    # the embedded redis-server is gone too
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(tmp_path / "redis") not in ps


@pytest.mark.integration
def test_lag_and_status_report_each_partition(redis_url: str, prefix: str, rclient: Any) -> None:
    from models.codec import ENTRY_FIELD, encode_entry
    from models.events import Event
    from models.keys import Keys

    keys = Keys(prefix)
    ev = Event("track", "m", 1, 1, "web", user_id="u", event="E")
    rclient.xadd(keys.events(1), {ENTRY_FIELD: encode_entry([ev])})
    env = {"NUDGE_REDIS_URL": redis_url, "NUDGE_KEY_PREFIX": prefix, "NUDGE_PARTITIONS": "2"}
    out = nudge("lag", "--once", env=env)
    assert out.returncode == 0, out.stderr
    rows = [line for line in out.stdout.splitlines() if "{p" in line]
    assert [keys.events(0) in rows[0], keys.events(1) in rows[1]] == [True, True], out.stdout
    assert "never" in rows[0]  # no dataflow has reported yet
    assert " ? " in rows[1]  # an entry behind, but how many is unknown without a report
    status = nudge("status", env=env)
    assert status.returncode == 1, status.stdout + status.stderr
    assert f"NOT OK          {keys.events(0)}: the dataflow has never reported" in status.stdout
    down = nudge("status", env={**env, "NUDGE_REDIS_URL": "redis://127.0.0.1:1/0"})
    assert down.returncode == 2 and "redis" in down.stderr
