"""`nudge`: the one front door.

nudge up         embedded Redis (unless NUDGE_REDIS_URL), dataflow and API, in the foreground
nudge demo       `up`, then the REES46 sample replayed, a few profiles and curl examples
nudge api        the HTTP API (uvicorn, uvloop, httptools)
nudge dataflow   the Bytewax dataflow, with recovery
nudge replay F   a REES46/Taobao CSV or Segment JSONL file through the ingest API
nudge lag        a live table of the dataflow's lag, events/s and triggers/s
nudge status     a one-shot summary; exit code 1 when the lag breaks the SLO
nudge webhooks   deliver triggers to NUDGE_WEBHOOK_URLS
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from config.logs import setup_logging
from config.settings import ConfigError, Settings, load_settings

log = logging.getLogger("nudge")
app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console(stderr=True)

HERE = Path(__file__).resolve().parent
SAMPLE_NAMES = ("rees46_oct2019_head/events.csv.gz",)


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc


def _fail(exc: Exception) -> typer.Exit:
    console.print(f"[red]error:[/red] {exc}")
    return typer.Exit(2)


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="Bind address [NUDGE_API_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="Port [NUDGE_API_PORT]")] = None,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes")] = 1,
) -> None:
    """Serve the HTTP API."""
    import uvicorn

    s = _settings()
    try:
        s.require_keys()
        s.require_redis()
    except ConfigError as exc:
        raise _fail(exc) from exc
    uvicorn.run(
        "api.main:create_app",
        factory=True,
        host=host or s.api_host,
        port=port or s.api_port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


@app.command()
def dataflow(
    workers: Annotated[int, typer.Option("-w", "--workers", help="Workers in this process")] = 1,
    process_id: Annotated[
        int | None, typer.Option("-i", "--process-id", help="This process's index in a cluster")
    ] = None,
    addresses: Annotated[
        str | None,
        typer.Option("-a", "--addresses", help="host:port of every process, ';'-separated"),
    ] = None,
    recovery: Annotated[bool, typer.Option(help="Snapshot state for crash recovery")] = True,
    processes: Annotated[
        int, typer.Option("-p", "--processes", help="Run a cluster of this many processes here")
    ] = 1,
) -> None:
    """Run the dataflow (recovery store initialised on first start)."""
    from bytewax.recovery import RecoveryConfig, init_db_dir
    from bytewax.run import cli_main

    from config.runtime import DATAFLOW_YOUNG, tune_gc
    from dataflows.flow import build_flow
    from dataflows.redis_io import RecoveryStoreError

    s = _settings()
    if processes > 1:
        from cli import cluster

        if process_id is not None or addresses:
            raise _fail(ConfigError("--processes starts its own cluster: drop -i and -a"))
        try:
            s.require_redis()
            code = cluster.run(processes, workers, recovery, s.recovery_dir,
                               s.recovery_partitions, s.metrics_port)  # fmt: skip
        except ConfigError as exc:
            raise _fail(exc) from exc
        raise typer.Exit(code)
    try:
        flow = build_flow(s, recovery=recovery)
    except ConfigError as exc:
        raise _fail(exc) from exc
    recovery_config = None
    if recovery:
        db = s.recovery_dir
        if not db.exists() or not any(db.glob("part-*.sqlite3")):
            db.mkdir(parents=True, exist_ok=True)
            if addresses:
                # one process of a cluster: its own share of a store that every process
                # makes the same way (each partition exactly once in the whole cluster)
                from cli.cluster import init_share

                n = len(addresses.split(";"))
                mine = init_share(db, process_id or 0, n, s.recovery_partitions)
                console.print(f"initialised {mine} recovery partition(s) of {n} processes in {db}")
            else:
                init_db_dir(db, s.recovery_partitions)
                console.print(f"initialised {s.recovery_partitions} recovery partition(s) in {db}")
        recovery_config = RecoveryConfig(str(db))
    setup_logging(s.log_format, s.log_level)
    if s.metrics_port:
        from dataflows import metrics

        try:
            port = metrics.serve(s.metrics_port, s.metrics_host)
            console.print(f"dataflow metrics on http://{s.metrics_host}:{port}/metrics")
        except OSError as exc:  # the dataflow matters more than its metrics
            log.warning("dataflow metrics not served on port %d: %s", s.metrics_port, exc)
    tune_gc(DATAFLOW_YOUNG)
    signal.signal(signal.SIGINT, _one_interrupt())
    try:
        cli_main(
            flow,
            workers_per_process=workers,
            process_id=process_id,
            addresses=addresses.split(";") if addresses else None,
            epoch_interval=timedelta(seconds=s.epoch_s),
            recovery_config=recovery_config,
        )
    except (KeyboardInterrupt, RuntimeError) as exc:
        if not _interrupted(exc):
            cause = _cause(exc, RecoveryStoreError, ConfigError)
            if cause is not None:
                raise _fail(cause) from exc
            raise
        console.print("dataflow stopped")


@app.command()
def webhooks() -> None:
    """Deliver every trigger to NUDGE_WEBHOOK_URLS, signed, retried, at least once."""
    from config.connect import async_client
    from dataflows.webhooks import WebhookParams, serve
    from models.keys import Keys

    s = _settings()
    try:
        url = s.require_redis()
        if not s.webhook_urls:
            raise ConfigError("set NUDGE_WEBHOOK_URLS (comma-separated http(s) URLs)")
        if s.webhook_secret is None or not s.webhook_secret.get_secret_value():
            raise ConfigError("set NUDGE_WEBHOOK_SECRET: every delivery is signed with it")
    except ConfigError as exc:
        raise _fail(exc) from exc
    setup_logging(s.log_format, s.log_level)
    params = WebhookParams(
        s.webhook_secret.get_secret_value().encode(),
        s.webhook_max_attempts,
        s.webhook_timeout_s,
        s.webhook_backoff_s,
        s.webhook_backoff_cap_s,
        s.webhook_concurrency,
    )

    async def main() -> None:
        client = async_client(url, cluster=s.redis_cluster)
        stop = asyncio.Event()
        try:
            await serve(client, Keys(s.key_prefix), list(s.webhook_urls), params, stop)
        finally:
            await client.aclose()

    console.print(f"delivering triggers to {', '.join(s.webhook_urls)} (Ctrl-C stops)")
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        console.print("webhooks stopped")


_E = TypeVar("_E", bound=BaseException)


def _interrupted(exc: BaseException) -> bool:
    """Whether what stopped Bytewax's run was a SIGINT (a clean stop: recovery resumes from
    the last epoch). Bytewax turns one it sees between steps into a RuntimeError("...
    signal received"); one that lands while a step's Python code runs (a source's XREAD,
    say) is raised there and reaches us wrapped in the step's error, caused by the
    KeyboardInterrupt."""
    return (
        isinstance(exc, KeyboardInterrupt)
        or "signal received" in str(exc)
        or _cause(exc, KeyboardInterrupt) is not None
    )


def _one_interrupt(window_s: float = 5.0) -> Any:
    """A SIGINT handler that interrupts once per `window_s`: a second KeyboardInterrupt while
    Bytewax is unwinding from the first (a Ctrl-C pressed twice) could stop it with a
    traceback ("failed to import exception ... KeyboardInterrupt") and exit code 1. (Bytewax
    still prints a three-line "panicked at src/run.rs" message when a signal stops it.)"""
    last = [-window_s]

    def on_interrupt(signum: int, frame: Any) -> None:
        now = time.monotonic()
        if now - last[0] < window_s:
            return  # the same Ctrl-C, delivered twice
        last[0] = now
        raise KeyboardInterrupt

    return on_interrupt


def _cause(exc: BaseException, *types: type[_E]) -> _E | None:
    """The first exception of `types` in the chain of causes of `exc` (Bytewax wraps what a
    step raised in its own errors), or None."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, types):
            return seen
        seen = seen.__cause__
    return None


def _write_key(s: Settings, given: str | None) -> str:
    if given:
        return given
    if s.write_keys:
        return s.write_keys[0].get_secret_value()
    console.print("[red]error:[/red] give --write-key or set NUDGE_WRITE_KEYS")
    raise typer.Exit(2)


def _run_replay(path: Path, url: str, write_key: str, speed: float, limit: int | None) -> None:
    from cli.datasets import DatasetError, read_calls
    from cli.replay import replay as do_replay

    try:
        total = limit or sum(1 for _ in read_calls(path))
    except (DatasetError, OSError) as exc:
        raise _fail(exc) from exc
    with Progress(
        TextColumn(f"replay {path.name}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[rate]}"),
        console=console,
    ) as bar:
        task = bar.add_task("replay", total=total, rate="")
        started = time.perf_counter()

        def progress(n: int) -> None:
            done = bar.tasks[0].completed + n
            rate = done / max(1e-9, time.perf_counter() - started)
            bar.update(task, advance=n, rate=f"{rate:,.0f} events/s")

        stats = asyncio.run(
            do_replay(
                read_calls(path, limit), url=url, write_key=write_key, speed=speed,
                on_progress=progress,
            )
        )  # fmt: skip
    console.print(
        f"sent {stats.sent:,} events in {stats.seconds:.1f} s ({stats.rate:,.0f}/s): "
        f"{stats.accepted:,} accepted, {stats.rejected:,} rejected"
    )
    for err in stats.errors[:5]:
        console.print(f"[red]{err}[/red]")
    if stats.errors:
        raise typer.Exit(1)


@app.command()
def replay(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV(.gz) or JSONL")],
    speed: Annotated[
        float, typer.Option(help="Event-time seconds per wall second; 0 = as fast as possible")
    ] = 0.0,
    url: Annotated[str | None, typer.Option(help="API base URL")] = None,
    write_key: Annotated[str | None, typer.Option(help="Write key [NUDGE_WRITE_KEYS]")] = None,
    limit: Annotated[int | None, typer.Option(help="Send at most this many events")] = None,
) -> None:
    """Send a dataset through the ingest API with a progress bar."""
    s = _settings()
    base = url or f"http://{s.api_host}:{s.api_port}"
    _run_replay(file, base, _write_key(s, write_key), speed, limit)


def _redis(s: Settings) -> Any:
    from config.connect import sync_client

    try:
        return sync_client(s.require_redis(), cluster=s.redis_cluster, socket_timeout=5)
    except ConfigError as exc:
        raise _fail(exc) from exc


@app.command("lag")
def lag_cmd(
    once: Annotated[bool, typer.Option("--once", help="Print the table once and exit")] = False,
    every: Annotated[float, typer.Option(help="Seconds between refreshes")] = 1.0,
) -> None:
    """A live table of the dataflow's lag per stream partition, events/s and triggers/s."""
    from rich.live import Live

    from cli.status import Rates, lag_table, snapshot
    from models.keys import Keys

    s = _settings()
    client, keys = _redis(s), Keys(s.key_prefix)
    before, at = snapshot(client, keys, s.partitions), time.monotonic()
    if once:
        time.sleep(min(every, 1.0))  # two reads make the rates
    else:
        time.sleep(0.2)
    out = Console() if sys.stdout.isatty() else Console(width=160)  # piped: no wrapping

    def table() -> Any:
        nonlocal before, at
        snap, now = snapshot(client, keys, s.partitions), time.monotonic()
        rates = Rates.between(before, snap, now - at)
        before, at = snap, now
        return lag_table(snap, rates, time.time_ns() // 1_000_000, s.lag_slo_s)

    if once:
        out.print(table())
        return
    try:
        with Live(table(), console=out, refresh_per_second=4) as live:
            while True:
                time.sleep(every)
                live.update(table())
    except KeyboardInterrupt:
        pass


@app.command()
def status() -> None:
    """A one-shot summary; exits 1 when the lag exceeds NUDGE_LAG_SLO_S or the dataflow has
    stopped reporting (NUDGE_READY_PROGRESS_S), 2 when Redis cannot be reached."""
    import redis

    from cli.status import problems, snapshot, summary
    from models.keys import Keys

    s = _settings()
    try:
        snap = snapshot(_redis(s), Keys(s.key_prefix), s.partitions)
    except redis.RedisError as exc:
        raise _fail(RuntimeError(f"redis: {exc}")) from exc
    now = time.time_ns() // 1_000_000
    for line in summary(snap, now, s.lag_slo_s, s.ready_progress_s):
        print(line)
    wrong = problems(snap, now, s.lag_slo_s, s.ready_progress_s)
    for line in wrong:
        print(f"NOT OK          {line}")
    if wrong:
        raise typer.Exit(1)
    print("OK              the dataflow keeps up")


def _start_engine(port: int, data_dir: Path) -> Any:
    from cli.engine import Engine, interrupt_on_sigterm

    s = _settings()
    interrupt_on_sigterm()
    engine = Engine(s, data_dir=data_dir, host=s.api_host, port=port or s.api_port)
    try:
        engine.start()  # stops what it started if it fails or is interrupted
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
    except Exception as exc:
        raise _fail(exc) from exc
    where = "embedded, " + engine.redis.url if engine.redis else "NUDGE_REDIS_URL"
    console.print(
        f"\n[bold]nudge is up[/bold]\n  API        {engine.url}  (docs: {engine.url}/docs)\n"
        f"  ops page   {engine.url}/ops   metrics: {engine.url}/metrics, dataflow "
        f"{engine.metrics_url}\n"
        f"  Redis      {where}\n  write key  {engine.write_key}\n"
        f"  API key    {engine.api_key}\n  admin key  {engine.admin_key}\n"
    )
    return engine


@app.command()
def up(
    port: Annotated[int, typer.Option(help="API port [NUDGE_API_PORT]")] = 0,
    data_dir: Annotated[Path, typer.Option(help="Embedded Redis and recovery data")] = Path(
        ".nudge"
    ),
) -> None:
    """Embedded Redis (unless NUDGE_REDIS_URL is set), the dataflow and the API. Ctrl-C stops."""
    engine = _start_engine(port, data_dir)
    console.print("Ctrl-C stops everything.")
    engine.wait()


def find_sample() -> Path:
    """The REES46 sample: ../shared/data next to the checkout, else the excerpt we ship."""
    for root in (Path.cwd(), HERE.parent):
        for parent in (root, *root.parents):
            for name in SAMPLE_NAMES:
                candidate = parent / "shared" / "data" / name
                if candidate.exists():
                    return candidate
    return HERE / "data" / "rees46_excerpt.csv.gz"


@app.command()
def demo(
    port: Annotated[int, typer.Option(help="API port [NUDGE_API_PORT]")] = 0,
    data_dir: Annotated[Path, typer.Option(help="Embedded Redis and recovery data")] = Path(
        ".nudge/demo"
    ),
    sample: Annotated[Path | None, typer.Option(help="Dataset to replay")] = None,
    exit_after: Annotated[
        bool, typer.Option("--exit", help="Stop after the replay instead of serving")
    ] = False,
) -> None:
    """`up`, plus a replay of the REES46 sample; prints profiles and example curl calls."""
    import httpx

    from cli.status import wait_caught_up
    from config.connect import sync_client
    from models.keys import Keys

    path = sample or find_sample()
    engine = _start_engine(port, data_dir)
    try:
        _run_replay(path, engine.url, engine.write_key, 0.0, None)
        s = engine.settings
        client = sync_client(engine.env["NUDGE_REDIS_URL"], cluster=s.redis_cluster)
        if not wait_caught_up(client, Keys(s.key_prefix), s.partitions):
            console.print("[yellow]the dataflow has not caught up after 120 s[/yellow]")
        time.sleep(1.0)
        top = _showcase(path)
        auth = {"Authorization": f"Bearer {engine.api_key}"}
        for cid in top:
            prof = httpx.get(f"{engine.url}/v1/customers/{cid}", headers=auth, timeout=5).json()
            print(json.dumps(_summary(prof), indent=2))
        cid = top[0]
        print(
            "\nTry it:\n"
            f"  curl -s {engine.url}/healthz\n"
            f"  curl -s -H 'Authorization: Bearer {engine.api_key}' "
            f"{engine.url}/v1/customers/{cid}\n"
            f"  curl -s -H 'Authorization: Bearer {engine.api_key}' "
            f"'{engine.url}/v1/decide?customer_id={cid}&channel=web'\n"
            f"  curl -s -u {engine.write_key}: {engine.url}/v1/track -H 'Content-Type: "
            'application/json\' -d \'{"userId":"' + cid + '","event":"Product Added",'
            '"properties":{"product_id":"1004856","price":130.76}}\'\n'
        )
        sys.stdout.flush()
        if not exit_after:
            console.print("Serving. Ctrl-C stops everything.")
            engine.wait()
    except KeyboardInterrupt:
        pass
    finally:
        engine.stop()


def _showcase(path: Path) -> list[str]:
    """Three customers worth a look: the most active, one with an order, one with a cart."""
    from cli.datasets import read_calls

    counts: dict[str, int] = {}
    buyers: list[str] = []
    carts: list[str] = []
    for _, call in read_calls(path):
        user = call["userId"]
        counts[user] = counts.get(user, 0) + 1
        event = call.get("event")
        if event == "Order Completed":
            buyers.append(user)
        elif event == "Product Added":
            carts.append(user)
    picks = [max(counts, key=lambda u: (counts[u], u))]
    for group in (buyers, [u for u in carts if u not in buyers]):
        best = max(group, key=lambda u: (counts[u], u), default=None)
        if best is not None and best not in picks:
            picks.append(best)
    return picks


def _summary(prof: dict[str, Any]) -> dict[str, Any]:
    if "customer_id" not in prof:
        return prof
    return {
        "customer_id": prof["customer_id"],
        "ids": prof["ids"],
        "events": prof["events"]["total"],
        "sessions": prof["sessions"]["count"],
        "recent_products": prof["recent_products"][:5],
        "top_categories": list(prof["affinity"]["categories"])[:3],
        "cart": {"items": len(prof["cart"]["items"]), "value": prof["cart"]["value"]},
        "orders": prof["orders"],
    }


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()


if __name__ == "__main__":
    main()
