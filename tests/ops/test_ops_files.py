"""The dashboard and alert rules in ops/: valid for Prometheus (promtool), their alerts fire
when they should (promtool's rule unit tests), and every metric they use is one nudge exports."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY

import api.metrics
import dataflows.metrics  # noqa: F401  (registers the dataflow's metrics)
from models.progress import OpsSnapshot, PartitionLag
from tests.api.test_ops import promtool

OPS = Path(__file__).resolve().parents[2] / "ops"
DASHBOARD = OPS / "grafana" / "nudge.json"
ALERTS = OPS / "prometheus" / "alerts.yml"


def exported() -> set[str]:
    """Every sample name the API and dataflow processes expose (with the Redis view filled)."""
    view = api.metrics.REDIS_VIEW
    view.snapshot = OpsSnapshot(
        [PartitionLag(0, "s", "2-0", 2, 2, "1-0", 1, 1, 1, 5, 3)],
        {"triggers:abandoned_cart": 1, "webhooks:delivered": 1}, 0, 0, 1,
    )  # fmt: skip
    try:
        names = {s.name for family in REGISTRY.collect() for s in family.samples}
    finally:
        view.snapshot = None
    for family in REGISTRY.collect():  # labelled families without children yet
        if family.type == "histogram":
            names |= {family.name + suffix for suffix in ("_bucket", "_count", "_sum")}
        elif family.type == "counter":
            names.add(family.name + "_total")
        else:
            names.add(family.name)
    return names


def dashboard_exprs() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [t["expr"] for p in panels for t in p.get("targets", [])]


def alert_exprs() -> list[str]:
    rules = yaml.safe_load(ALERTS.read_text())["groups"][0]["rules"]
    return [r["expr"] for r in rules]


def used_metrics(exprs: list[str]) -> set[str]:
    return {m for e in exprs for m in re.findall(r"\b(nudge_[a-z0-9_]+)", e)}


def test_every_metric_used_is_exported() -> None:
    names = exported()
    missing = (used_metrics(dashboard_exprs()) | used_metrics(alert_exprs())) - names
    assert not missing, f"used by ops/ but exported by nobody: {sorted(missing)}"
    assert len(dashboard_exprs()) >= 20


def test_dashboard_is_grafana_json_with_a_datasource_variable() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] == "nudge-overview" and dash["schemaVersion"] >= 36
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        for t in p.get("targets", []):
            assert t["datasource"]["uid"] == "${datasource}"


@pytest.fixture
def tool() -> str:
    found = promtool()
    if found is None:
        pytest.skip("promtool not installed (Debian's prometheus package; .ci/run installs it)")
    return found


def test_alert_rules_are_valid_and_their_unit_tests_pass(tool: str) -> None:
    check = subprocess.run([tool, "check", "rules", str(ALERTS)], capture_output=True,
                           text=True, timeout=60)  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    unit = subprocess.run([tool, "test", "rules", "alerts_test.yml"], cwd=ALERTS.parent,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert unit.returncode == 0 and "SUCCESS" in unit.stdout, unit.stdout + unit.stderr


def test_dashboard_queries_are_valid_promql(tool: str, tmp_path: Path) -> None:
    # promtool parses PromQL in rule files: each query becomes a recording rule
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"nudge:dashboard:{i}", "expr": e} for i, e in enumerate(dashboard_exprs())
    ]}]}  # fmt: skip
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules))
    check = subprocess.run([tool, "check", "rules", str(path)], capture_output=True, text=True,
                           timeout=60)  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
