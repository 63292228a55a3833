"""Shared fixtures: a real redis-server on a free port in a temp dir, a unique key prefix per
test, settings bound to both, and helpers to read the REES46 sample."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from cli.embedded import LocalCluster, RedisServer
from config.connect import sync_client
from config.settings import Settings

EXCERPT = Path(__file__).resolve().parents[1] / "cli" / "data" / "rees46_excerpt.csv.gz"
WRITE_KEY, API_KEY, ADMIN_KEY = "wk-test", "ak-test", "admin-test"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"), aof=False).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A real 3-master Redis Cluster on loopback ports (`redis-server --cluster-enabled yes`,
    joined by `redis-cli --cluster create`)."""
    if shutil.which("redis-cli") is None and not os.environ.get("CI"):
        pytest.skip("no redis-cli (Debian's redis-tools) to create a Redis Cluster with")
    cluster = LocalCluster(tmp_path_factory.mktemp("cluster"), masters=3).start()
    yield cluster
    cluster.stop()


# Tests that must hold on a Redis Cluster too take both backends:
#     @ON_BOTH
#     def test_x(settings, rclient): ...
# and their `redis_url`, `rclient` and `settings` point at the cluster in the second run.
ON_BOTH = pytest.mark.parametrize("backend", ["redis", "cluster"], indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """ "redis" (one server), or "cluster" where a test is parametrized with `ON_BOTH`."""
    return str(getattr(request, "param", "redis"))


@pytest.fixture
def cluster(backend: str) -> bool:
    return backend == "cluster"


@pytest.fixture
def redis_url(backend: str, request: pytest.FixtureRequest) -> str:
    server = request.getfixturevalue("redis_cluster" if backend == "cluster" else "redis_server")
    return str(server.url)


@pytest.fixture
def rclient(redis_url: str, backend: str) -> Iterator[redis.Redis]:
    client = sync_client(redis_url, cluster=backend == "cluster")
    yield client
    client.close()


@pytest.fixture
def prefix() -> str:
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
def settings(redis_url: str, backend: str, prefix: str, tmp_path: Path) -> Settings:
    return Settings(
        redis_url=redis_url,
        key_prefix=prefix,
        partitions=3,
        write_keys=WRITE_KEY,  # type: ignore[arg-type]
        api_keys=API_KEY,  # type: ignore[arg-type]
        admin_keys=ADMIN_KEY,  # type: ignore[arg-type]
        recovery_dir=tmp_path / "recovery",
        epoch_s=0.5,
        idle_backoff_ms=20,
        redis_cluster=backend == "cluster",
    )


def rees46_path() -> Path:
    """The first 6,000 rows of the REES46 sample, shipped in cli/data (tests do not depend on
    ../shared being present)."""
    return EXCERPT
