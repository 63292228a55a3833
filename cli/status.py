"""Where the dataflow is and whether it keeps up: `nudge lag` (a live table), `nudge status`
(a one-shot summary with an exit code), and the demo's wait for the dataflow."""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis
from rich.table import Table

from models.keys import Keys
from models.progress import OpsSnapshot, parse, queue_reads


def snapshot(client: redis.Redis, keys: Keys, partitions: int) -> OpsSnapshot:
    """Everything `models.progress` watches, in one round trip."""
    pipe = client.pipeline(transaction=False)
    queue_reads(pipe, keys, partitions)
    return parse(pipe.execute(), keys, partitions)


def wait_caught_up(
    client: redis.Redis, keys: Keys, partitions: int, timeout: float = 120.0
) -> bool:
    """Block until the dataflow has read every partition to its tip (or the timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(p.caught_up for p in snapshot(client, keys, partitions).partitions):
            return True
        time.sleep(0.1)
    return False


def _s(ms: int | None) -> str:
    return "-" if ms is None else f"{ms / 1000:.1f} s"


def _n(n: int | None) -> str:
    return "?" if n is None else f"{n:,}"


@dataclass
class Rates:
    """Events and triggers per second between two snapshots."""

    events_per_s: list[float]
    triggers_per_s: float

    @staticmethod
    def between(before: OpsSnapshot, after: OpsSnapshot, dt_s: float) -> Rates:
        return Rates(after.events_per_s(before, dt_s), after.triggers_per_s(before, dt_s))


def lag_table(snap: OpsSnapshot, rates: Rates, now_ms: int, slo_s: float) -> Table:
    """One row per stream partition, and the totals."""
    table = Table(title="nudge: dataflow lag per stream partition", title_justify="left")
    for name in ("partition", "behind (entries)", "stream lag", "event-time lag", "events/s",
                 "freshness", "last report"):  # fmt: skip
        table.add_column(name, justify="left" if name == "partition" else "right")
    for p, rate in zip(snap.partitions, rates.events_per_s, strict=True):
        late = p.lag_ms > slo_s * 1000
        table.add_row(
            p.stream,
            _n(p.behind),
            f"[red]{_s(p.lag_ms)}[/red]" if late else _s(p.lag_ms),
            _s(p.event_lag_ms(now_ms)),
            f"{rate:,.0f}",
            _s(p.fresh_ms),
            _s(p.report_age_ms(now_ms)) + " ago" if p.reported_ms else "never",
        )
    table.add_section()
    table.add_row(
        "all", _n(snap.behind()), _s(snap.max_lag_ms()), "", f"{sum(rates.events_per_s):,.0f}",
        "", "",
    )  # fmt: skip
    table.caption = (
        f"triggers/s {rates.triggers_per_s:,.1f}   triggers {snap.triggers():,}   "
        f"dead letters {snap.deadletter:,} ingest, {snap.webhook_deadletter:,} webhooks   "
        f"SLO {slo_s:g} s"
    )
    return table


def problems(snap: OpsSnapshot, now_ms: int, slo_s: float, stale_s: float) -> list[str]:
    """What breaks the SLO (empty: all is well)."""
    out = [
        f"{p.stream}: stream lag {_s(p.lag_ms)} above the SLO of {slo_s:g} s"
        for p in snap.partitions
        if p.lag_ms > slo_s * 1000
    ]
    for p, age in snap.silent(now_ms, stale_s if stale_s > 0 else float("inf")):
        if age is None:
            out.append(f"{p.stream}: the dataflow has never reported")
        else:
            out.append(f"{p.stream}: no report from the dataflow for {_s(age)}")
    return out


def summary(snap: OpsSnapshot, now_ms: int, slo_s: float, stale_s: float) -> list[str]:
    """The lines `nudge status` prints."""
    ages = [p.report_age_ms(now_ms) for p in snap.partitions]
    fresh = [p.fresh_ms for p in snap.partitions if p.fresh_ms is not None]
    stats = snap.stats
    lines = [
        f"partitions      {len(snap.partitions)}",
        f"stream lag      max {_s(snap.max_lag_ms())} (SLO {slo_s:g} s), "
        f"{_n(snap.behind())} entries behind",
        "event-time lag  max "
        + _s(max((p.event_lag_ms(now_ms) or 0 for p in snap.partitions), default=None)),
        f"freshness       last probes: max {_s(max(fresh)) if fresh else '-'}",
        "dataflow        "
        + (
            "never reported"
            if any(a is None for a in ages)
            else f"last report {_s(max(a for a in ages if a is not None))} ago"
        ),
        f"events read     {snap.events():,}",
        f"triggers        {snap.triggers():,} fired",
        f"decisions       {stats.get('decisions_served', 0):,} served, "
        f"{stats.get('decisions_explored', 0):,} explored",
        f"webhooks        {stats.get('webhooks:delivered', 0):,} delivered, "
        f"{stats.get('webhooks:failed', 0):,} failed attempts, "
        f"{snap.webhook_deadletter:,} dead-lettered",
        f"dead letters    {snap.deadletter:,} rejected events",
    ]
    return lines
