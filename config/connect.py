"""Redis clients for every nudge process: one Redis server, or a Redis Cluster.

`NUDGE_REDIS_CLUSTER=true` makes every process use redis-py's cluster client, seeded by
`NUDGE_REDIS_URL` (any node). The key layout (`models.keys`) is made for it: every per-customer
key carries the customer's ``{id}`` hash tag, each stream partition its own, and every script
and transaction touches keys of one slot; commands of a pipeline go to each key's node.

The cluster clients are typed as the plain ones: they take the same commands, and the few
places where the two differ (multi-key writes in the dataflow's sink, scripts queued on a
pipeline) ask `is_cluster`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterPipeline as AsyncClusterPipeline
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import ClusterPipeline, RedisCluster
from redis.commands.core import Script
from redis.exceptions import MovedError, RedisClusterException

from config.settings import ConfigError

_CLUSTER_TYPES = (RedisCluster, AsyncRedisCluster, ClusterPipeline, AsyncClusterPipeline)


def sync_client(url: str, *, cluster: bool = False, **options: Any) -> redis.Redis:
    """A synchronous client for `url` (`options`: redis-py connection options)."""
    if not cluster:
        return redis.Redis.from_url(url, **options)
    try:
        return cast(redis.Redis, RedisCluster.from_url(url, **options))
    except RedisClusterException as exc:
        raise ConfigError(cluster_unavailable(url, exc)) from exc


def async_client(url: str, *, cluster: bool = False, **options: Any) -> aioredis.Redis:
    """An asyncio client for `url`; a cluster client discovers the nodes on first use."""
    if not cluster:
        return aioredis.Redis.from_url(url, **options)
    return cast(aioredis.Redis, AsyncRedisCluster.from_url(url, **options))


def is_cluster(client_or_pipeline: object) -> bool:
    """Whether a client (or a pipeline of one) talks to a Redis Cluster."""
    return isinstance(client_or_pipeline, _CLUSTER_TYPES)


def queue_script(pipe: Any, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> None:
    """Queue a registered script on a pipeline: EVALSHA on one Redis (redis-py loads it
    first if needed), EVAL on a cluster pipeline (which refuses EVALSHA; the body is sent,
    and each node caches its compilation)."""
    if is_cluster(pipe):
        pipe.execute_command("EVAL", script.script, len(keys), *keys, *args)
    else:
        script(keys=keys, args=args, client=pipe)


def cluster_mismatch(exc: BaseException) -> str | None:
    """What to set when a plain client met a cluster node (a MOVED redirection), else None."""
    if isinstance(exc, MovedError):
        return (
            "NUDGE_REDIS_URL points at a node of a Redis Cluster (it answered MOVED): "
            "set NUDGE_REDIS_CLUSTER=true"
        )
    return None


def cluster_unavailable(url: str, exc: Exception) -> str:
    """What to do when the cluster client could not find a cluster at `url`."""
    return (
        f"NUDGE_REDIS_CLUSTER=true, but the cluster client could not start from {url} ({exc}): "
        "point NUDGE_REDIS_URL at a node of a Redis Cluster whose slots are all served, or "
        "unset NUDGE_REDIS_CLUSTER for a single Redis"
    )
