"""Abandoned-cart triggers on the REES46 sample, against the sessions that abandoned a cart.

``python -m bench.triggers [--window-s 600]``

The sample is replayed through the real dataflow (`dataflows.flow.build_flow`, in-process,
one worker) in log order, with the watermark ticks the Redis source would send (every
`--tick-every` events, the newest event time read before them; at the end, the wall clock:
caught up), and only the abandoned-cart rule on, with a short window.

The reference is computed directly from the CSV: a session (the dataset's ``user_session``)
*abandoned a cart* if it has a ``cart`` row and no ``purchase`` row. A trigger is *right* if
the cart change it follows (its ``since``) is a ``cart`` row of an abandoned session of that
user. Printed: triggers, abandoned sessions, precision (right triggers / triggers) and recall
(abandoned sessions with a trigger / abandoned sessions), and where the misses come from.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bytewax.testing import TestingSink, TestingSource, run_main

from bench.machine import REES46, data_path, header, table
from cli.datasets import read_calls
from config.settings import Settings
from dataflows.flow import build_flow
from dataflows.redis_io import TICK_KEY, TRIGGER
from models.segment import normalize
from models.triggers import Tick


@dataclass
class Sessions:
    at: dict[tuple[str, int], str]  # (user, cart time ms) -> session
    carted: set[str]
    bought: set[str]
    # session -> (user, last cart time ms); user -> [(time ms, session)] of cart/purchase rows
    last_cart: dict[str, tuple[str, int]]
    moves: dict[str, list[tuple[int, str]]]


def sessions(path: Path) -> Sessions:
    s = Sessions({}, set(), set(), {}, {})
    with gzip.open(path, "rt", newline="") as f:
        rows = csv.reader(f)
        next(rows)
        for event_time, kind, _, _, _, _, _, user, sess in rows:
            if kind not in ("cart", "purchase"):
                continue
            t = datetime.strptime(event_time, "%Y-%m-%d %H:%M:%S UTC").replace(tzinfo=UTC)
            ms = int(t.timestamp()) * 1000
            s.moves.setdefault(user, []).append((ms, sess))
            if kind == "cart":
                s.at[(user, ms)] = sess
                s.carted.add(sess)
                s.last_cart[sess] = (user, max(ms, s.last_cart.get(sess, (user, 0))[1]))
            else:
                s.bought.add(sess)
    return s


def moved_on(s: Sessions, sess: str, window_ms: int) -> bool:
    """Did the user change or buy the cart in another session within the window after this
    session's last cart change? (nudge's cart outlives sessions: the clock restarted.)"""
    user, last = s.last_cart[sess]
    return any(other != sess and last <= t < last + window_ms for t, other in s.moves[user])


def replay(path: Path, window_s: int, tick_every: int) -> tuple[list[dict[str, Any]], int]:
    now = time.time_ns() // 1_000_000
    items: list[tuple[str, Any]] = []
    newest = -(2**62)
    for n, (_, call) in enumerate(read_calls(path)):
        ev = normalize(call, received_at=now, new_id=lambda: "x")
        if n % tick_every == 0 and n:
            items.append((TICK_KEY, Tick(0, newest)))  # what was read before this read
        items.append((ev.customer_key, ev))
        newest = max(newest, ev.timestamp)
    items.append((TICK_KEY, Tick(0, now)))  # caught up: the wall clock
    settings = Settings(partitions=1, trigger_cart_s=(window_s,), trigger_checkout_s=(),
                        trigger_browse_s=(), products=False)  # fmt: skip
    out: list[tuple[str, Any]] = []
    run_main(build_flow(settings, TestingSource(items, 500), TestingSink(out)))
    fired = [v[1] for _, v in out if v[0] == TRIGGER]
    return [{"customer": t.customer_id, "since": t.at_ms, "due": t.due_ms} for t in fired], len(
        items
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.triggers", description=__doc__.split("\n")[0])
    p.add_argument("--window-s", type=int, default=600, help="abandoned-cart window (600)")
    p.add_argument("--tick-every", type=int, default=500, help="events per source read (500)")
    args = p.parse_args(argv)
    path = data_path(REES46)
    print(header("nudge bench: abandoned-cart triggers vs abandoned sessions", "bench.triggers"))
    t0 = time.perf_counter()
    fired, n_items = replay(path, args.window_s, args.tick_every)
    spent = time.perf_counter() - t0
    ref = sessions(path)
    cart_session, abandoned = ref.at, ref.carted - ref.bought
    right = 0
    hit: set[str] = set()
    why: Counter[str] = Counter()
    for t in fired:
        sess = cart_session.get((t["customer"], t["since"]))
        if sess is None:
            why["since is not a cart row"] += 1
        elif sess in abandoned:
            right += 1
            hit.add(sess)
        else:
            why["its session ended in a purchase"] += 1
    missed = abandoned - hit
    print(f"data      {path} ({n_items:,} items replayed in {spent:.1f} s)")
    print(f"rule      abandoned_cart, window {args.window_s} s; checkout and browse rules off")
    rows = [
        ("triggers fired", f"{len(fired):,}"),
        ("sessions with a cart", f"{len(ref.carted):,}"),
        ("... and no purchase (abandoned)", f"{len(abandoned):,}"),
        ("right triggers", f"{right:,}"),
        ("precision", f"{right / len(fired):.3f}" if fired else "-"),
        ("recall", f"{len(hit) / len(abandoned):.3f}" if abandoned else "-"),
    ]
    print(table(rows, ("measure", "value")))
    if why:
        print("wrong     " + "; ".join(f"{n} {k}" for k, n in why.most_common()))
    if missed:
        later = sum(1 for m in missed if moved_on(ref, m, args.window_s * 1000))
        print(f"missed    {len(missed)} abandoned sessions without a trigger; in {later} of them "
              "the same user changed or bought the cart in a new session within the window "
              "(the cart outlives the session: its clock restarted there)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
