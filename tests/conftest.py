"""Shared fixtures: a real redis-server on a free port in a temp dir, a unique key prefix per
test, settings bound to both, and helpers to read the REES46 sample."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from cli.embedded import RedisServer
from config.settings import Settings

EXCERPT = Path(__file__).resolve().parents[1] / "cli" / "data" / "rees46_excerpt.csv.gz"
WRITE_KEY, API_KEY, ADMIN_KEY = "wk-test", "ak-test", "admin-test"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"), aof=False).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def rclient(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def prefix() -> str:
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
def settings(redis_url: str, prefix: str, tmp_path: Path) -> Settings:
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
    )


def rees46_path() -> Path:
    """The first 6,000 rows of the REES46 sample, shipped in cli/data (tests do not depend on
    ../shared being present)."""
    return EXCERPT
