"""Product suggestions replayed on the REES46 and Taobao samples: hit rate@10 of the next
viewed or carted product, beside the trending baseline, in one run.

``python -m bench.products``

Each dataset is replayed in event-time order through `models.products.Catalogue` (learning
online, as the dataflow would). Before each view or add-to-cart of a customer who has looked
at another product before, both recommenders answer from the state *so far* (nothing from the
future): `models.products.suggest` (co-occurrence with the customer's recent products, then
trending in their top categories, then trending overall) and the baseline (trending overall).
A hit: the product acted on is among the 10. Products just bought are excluded from both, and
so is the product the customer is on (the target is always a different product).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.machine import REES46, TAOBAO, data_path, header, table
from cli.datasets import read_calls
from models.products import Catalogue, suggest, top_of, trending_only

ACTIONS = {"Product Viewed": "view", "Product Added": "cart", "Order Completed": "order"}


def interactions(path: Path) -> Iterator[tuple[int, str, str, str, str | None]]:
    """(time, customer, action, product, category) in event-time order."""
    rows: list[tuple[int, str, str, str, str | None]] = []
    for ts, call in read_calls(path):
        action = ACTIONS.get(call.get("event", ""))
        if action is None or ts is None:
            continue
        props: dict[str, Any] = call.get("properties") or {}
        items = props.get("products") if action == "order" else [props]
        for item in items or []:
            pid = item.get("product_id")
            if pid:
                rows.append((ts, call["userId"], action, str(pid), item.get("category")))
    rows.sort(key=lambda r: r[0])
    yield from rows


def replay(path: Path) -> dict[str, Any]:
    cat = Catalogue()
    recent: dict[str, list[str]] = {}
    bought: dict[str, set[str]] = {}
    cats: dict[str, dict[str, float]] = {}
    evaluated = hits = base_hits = 0
    spent = 0.0
    for ts, cid, action, pid, category in interactions(path):
        history = recent.setdefault(cid, [])
        mine = bought.setdefault(cid, set())
        if action != "order" and history and pid != history[-1]:
            t = time.perf_counter()
            preds = suggest(cat, history, top_of(cats.get(cid, {}), 2), mine, 10)
            spent += time.perf_counter() - t
            evaluated += 1
            hits += pid in preds
            base_hits += pid in trending_only(cat, mine | {history[-1]}, 10)
        cat.observe(history, pid, action, ts, category)
        if action == "order":
            mine.add(pid)
        if category:
            c = cats.setdefault(cid, {})
            c[category] = c.get(category, 0.0) + 1.0
        if pid in history:
            history.remove(pid)
        history.append(pid)
        del history[:-20]
    return {
        "evaluated": evaluated,
        "hit": hits / evaluated if evaluated else 0.0,
        "base": base_hits / evaluated if evaluated else 0.0,
        "us": spent / evaluated * 1e6 if evaluated else 0.0,
        "products": len(cat.trend),
    }


def main() -> int:
    print(header("nudge bench: product suggestions, hit rate@10 (replay)", "bench.products"))
    rows = []
    for name, path in (("REES46", REES46), ("Taobao", TAOBAO)):
        r = replay(data_path(path))
        rows.append([
            name, f"{r['evaluated']:,}", f"{r['products']:,}", f"{r['hit']:.3f}",
            f"{r['base']:.3f}", f"{r['hit'] / r['base']:.1f}" if r["base"] else "-",
            f"{r['us']:.0f}",
        ])  # fmt: skip
    print(table(rows, ["dataset", "predictions", "products", "hit@10 co-occurrence",
                       "hit@10 trending", "ratio", "µs/suggest"]))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
