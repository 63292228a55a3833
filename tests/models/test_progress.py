"""Lag arithmetic from what Redis and the dataflow's reports hold (`models.progress`)."""

from __future__ import annotations

from models.keys import Keys, progress_field
from models.progress import PartitionLag, parse


def lag(**kw: object) -> PartitionLag:
    base: dict[str, object] = dict(
        partition=0, stream="s", tip="0-0", added=0, length=0, read="0-0", read_n=None,
        event_ms=None, reported_ms=None, events=0, fresh_ms=None,
    )  # fmt: skip
    return PartitionLag(**{**base, **kw})  # type: ignore[arg-type]


def test_stream_lag_is_the_age_gap_and_the_entries_behind() -> None:
    p = lag(tip="5000-3", added=40, read="2000-0", read_n=25)
    assert not p.caught_up and p.lag_ms == 3000 and p.behind == 15
    assert lag(tip="5000-3", added=40, read="5000-3", read_n=None).behind == 0  # caught up
    assert lag(tip="5000-3", added=40, read="2000-0", read_n=None).behind is None  # unknown
    empty = lag()  # a stream nobody wrote to
    assert empty.caught_up and empty.lag_ms == 0 and empty.behind == 0


def test_an_unread_freshness_probe_at_the_tip_is_not_lag() -> None:
    # the reader appended the probe after its last report; it has read everything else
    p = lag(tip="9000-0", added=41, read="2000-0", read_n=40, before_probe="2000-0")
    assert p.caught_up and p.lag_ms == 0 and p.behind == 0
    # ... but not what came before the probe and is not read yet (the probe is no lag)
    p = lag(tip="9000-0", added=41, read="1000-0", read_n=39, before_probe="2000-0")
    assert not p.caught_up and p.lag_ms == 1000 and p.behind == 1


def test_event_time_lag_and_report_age_are_against_now() -> None:
    p = lag(event_ms=1_000, reported_ms=9_000)
    assert p.event_lag_ms(10_000) == 9_000 and p.report_age_ms(10_000) == 1_000
    assert lag().event_lag_ms(10_000) is None and lag().report_age_ms(10_000) is None


def test_parse_reads_the_pipeline_of_queue_reads() -> None:
    keys = Keys("x")
    s0, _s1 = keys.all_events(2)
    progress = {
        progress_field(s0, "read").encode(): b"100-0", progress_field(s0, "n").encode(): b"7",
        progress_field(s0, "ts").encode(): b"50", progress_field(s0, "at").encode(): b"990",
        progress_field(s0, "events").encode(): b"1200", progress_field(s0, "fresh").encode(): b"12",
        s0.encode(): b"90-0",  # the durable (trimmed-to) id: not a report field
    }  # fmt: skip
    results = [
        [b"150-0", 10, 9, None],
        [b"0-0", 0, 0, None],
        [b"77-0", 5, 5, None],  # the triggers stream
        progress,
        {b"triggers:abandoned_cart": b"4", b"triggers:browse_abandonment": b"1",
         b"decisions_served": b"9"},
        2,
        1,
    ]  # fmt: skip
    snap = parse(results, keys, 2)
    a, b = snap.partitions
    assert (a.tip, a.added, a.read, a.read_n, a.event_ms, a.reported_ms) == (
        "150-0", 10, "100-0", 7, 50, 990,
    )  # fmt: skip
    assert (a.events, a.fresh_ms, a.behind, a.lag_ms) == (1200, 12, 3, 50)
    assert b.reported_ms is None and b.caught_up
    assert snap.max_lag_ms() == 50 and snap.behind() == 3 and snap.events() == 1200
    assert snap.triggers() == 5 and snap.triggers_added == 5
    assert (snap.deadletter, snap.webhook_deadletter) == (2, 1)
    assert snap.report_age_ms(1000) is None  # one partition never reported
