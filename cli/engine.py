"""`nudge up`: an embedded Redis (unless NUDGE_REDIS_URL is set), the dataflow and the API,
as child processes in the foreground; stopping it stops them all."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import types
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from pydantic import SecretStr

from cli.embedded import RedisServer, free_port
from config import Settings


@dataclass
class Engine:
    settings: Settings
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8000
    redis: RedisServer | None = None
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    metrics_url: str = ""
    write_key: str = ""
    api_key: str = ""
    admin_key: str = ""

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Engine:
        """Start everything; on any failure or interrupt, stop what was started and re-raise."""
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> Engine:
        s = self.settings
        redis_url = s.redis_url
        if redis_url is None:
            self.redis = RedisServer(self.data_dir / "redis").start()
            redis_url = self.redis.url
        # Keys from the environment when given, else fresh ones for this run.
        self.write_key = _first(s.write_keys) or secrets.token_hex(12)
        self.api_key = _first(s.api_keys) or secrets.token_hex(16)
        self.admin_key = _first(s.admin_keys) or secrets.token_hex(16)
        self.env = {
            **os.environ,
            "NUDGE_REDIS_URL": redis_url,
            "NUDGE_WRITE_KEYS": ",".join([self.write_key, *_rest(s.write_keys)]),
            "NUDGE_API_KEYS": ",".join([self.api_key, *_rest(s.api_keys)]),
            "NUDGE_ADMIN_KEYS": ",".join([self.admin_key, *_rest(s.admin_keys)]),
            "NUDGE_RECOVERY_DIR": str(
                s.recovery_dir if "NUDGE_RECOVERY_DIR" in os.environ else self.data_dir / "recovery"
            ),
            # the dataflow's /metrics: as configured, else a free port (several `up`s coexist)
            "NUDGE_METRICS_PORT": os.environ.get("NUDGE_METRICS_PORT", str(free_port())),
        }
        self.metrics_url = f"http://{self.host}:{self.env['NUDGE_METRICS_PORT']}/metrics"
        me = [sys.executable, "-m", "cli.main"]
        # each child in a process group of its own: a Ctrl-C in the terminal reaches this
        # process only, which stops them with one SIGINT each, in order (the terminal's and
        # then ours made two: the second could stop Bytewax with a traceback and exit code 1,
        # and made uvicorn log one)
        self.procs["dataflow"] = subprocess.Popen([*me, "dataflow"], env=self.env, process_group=0)
        self.procs["api"] = subprocess.Popen(
            [*me, "api", "--host", self.host, "--port", str(self.port)], env=self.env,
            process_group=0,
        )  # fmt: skip
        self._wait_api()
        return self

    def _wait_api(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check()
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the API did not answer on {self.url} within {timeout:.0f} s")

    def check(self) -> None:
        """Raise if a child has died (the engine is only up with all of them)."""
        for name, proc in self.procs.items():
            code = proc.poll()
            if code is not None:
                self.stop()
                raise RuntimeError(f"the {name} process exited with code {code}")

    def wait(self) -> None:
        """Block until Ctrl-C or a child exits."""
        try:
            while True:
                self.check()
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop the children (SIGINT, then SIGKILL after 15 s) and the embedded Redis. A second
        Ctrl-C while stopping does not cut this short and leave orphans behind."""
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            for proc in self.procs.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)
            for proc in self.procs.values():
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            self.procs.clear()
            if self.redis is not None:
                self.redis.stop()
                self.redis = None
        finally:
            signal.signal(signal.SIGINT, previous)


def interrupt_on_sigterm() -> None:
    """Treat SIGTERM (docker stop, kill, systemd) and SIGHUP (the terminal closed: the
    children, in groups of their own, do not get it) like Ctrl-C: a clean stop of
    everything."""

    def handler(signum: int, frame: types.FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)


def _first(keys: tuple[SecretStr, ...]) -> str | None:
    return keys[0].get_secret_value() if keys else None


def _rest(keys: tuple[SecretStr, ...]) -> list[str]:
    return [k.get_secret_value() for k in keys[1:]]
