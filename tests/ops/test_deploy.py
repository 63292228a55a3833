"""The compose example of the README (`deploy/compose.yml`) against the code: no Docker engine
here, so what can be checked without one is — every nudge command parses with the CLI, every
setting exists and validates, the dataflow processes form one Bytewax cluster, the Redis nodes
one Redis Cluster."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from cli.main import app
from config.settings import Settings

COMPOSE = Path(__file__).resolve().parents[2] / "deploy" / "compose.yml"


def interpolate(value: str) -> str:
    """Compose's ${VAR:-default} (the default) and ${VAR:?message} (a placeholder value)."""

    def one(m: re.Match[str]) -> str:
        return m.group(3) if m.group(2) == "-" else f"value-of-{m.group(1).lower()}"

    return re.sub(r"\$\{(\w+)(?::([?-])([^}]*))?\}", one, value)


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text())
    out: dict[str, Any] = doc["services"]
    return out


def nudge_services(services: dict[str, Any]) -> dict[str, Any]:
    return {name: s for name, s in services.items() if s.get("image") == "nudge"}


def test_every_command_parses_and_every_setting_validates(services: dict[str, Any]) -> None:
    cli = typer.main.get_command(app)
    commands = getattr(cli, "commands", {})
    nudge = nudge_services(services)
    assert {"dataflow-0", "dataflow-1", "api", "webhooks"} <= set(nudge)
    for name, service in nudge.items():
        program, command, *args = service["command"]
        assert program == "nudge" and command in commands, name
        commands[command].make_context(command, list(args))  # raises on an unknown option
        env = {k: interpolate(str(v)) for k, v in service["environment"].items()}
        unknown = {k for k in env if k.removeprefix("NUDGE_").lower() not in Settings.model_fields}
        assert not unknown, f"{name}: no such settings {unknown}"
        s = Settings(**{k.removeprefix("NUDGE_").lower(): v for k, v in env.items()})
        assert s.redis_cluster and s.redis_url == "redis://redis-0:6379/0", name
        assert s.partitions >= 2 * sum(n.startswith("dataflow") for n in nudge), name


def test_the_dataflow_processes_form_one_cluster(services: dict[str, Any]) -> None:
    flows = {n: s for n, s in nudge_services(services).items() if s["command"][1] == "dataflow"}
    ids, address_lists = [], set()
    for name, service in flows.items():
        args = service["command"]
        ids.append(int(args[args.index("-i") + 1]))
        address_lists.add(args[args.index("-a") + 1])
        assert service["volumes"] == [f"{name}:/data"]  # its own persistent recovery share
    assert sorted(ids) == list(range(len(flows)))
    (addresses,) = address_lists  # the same list everywhere
    hosts = [a.split(":")[0] for a in addresses.split(";")]
    assert hosts == [f"dataflow-{i}" for i in range(len(flows))]
    assert all(services[h]["hostname"] == h for h in hosts)


def test_the_redis_nodes_form_a_cluster(services: dict[str, Any]) -> None:
    nodes = [n for n in services if re.fullmatch(r"redis-\d", n)]
    assert len(nodes) == 3
    for n in nodes:
        command = services[n]["command"]
        assert "--cluster-enabled yes" in command and "--appendonly yes" in command
    create = services["redis-init"]["command"]
    assert "--cluster create" in create and all(f"hosts {n}" in create for n in nodes)
