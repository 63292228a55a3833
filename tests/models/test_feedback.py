"""Labelled examples from served decisions and what the customer did next."""

from __future__ import annotations

from typing import Any

import msgpack

from models.codec import decode_entry, encode_entry
from models.deadlines import SLACK
from models.events import Event, decision_event
from models.feedback import FeedbackParams, Waiting, expire, observe, watch
from models.learning import vector

H = 3_600_000
P = FeedbackParams(attribution_ms=24 * H, timeout_ms=72 * H)


def served(did: str, mid: str, t: int) -> Event:
    return decision_event("u1", did, mid, "email", 1.0, False, t, {"cart_items": 0.1})


def track(name: str, t: int, **props: Any) -> Event:
    return Event("track", f"{name}{t}", t, t, "email", user_id="u1", event=name, properties=props)


def run(*evs: Event) -> list[tuple[str, bool, str]]:
    w = Waiting()
    out = []
    for ev in evs:
        out += [(e.decision_id, e.y, e.why) for e in observe(w, ev, P)]
    return out


def test_clicks_dismissals_and_views() -> None:
    out = run(served("d1", "m", 0), track("Message Viewed", H, decision_id="d1"),
              track("Message Clicked", 2 * H, decision_id="d1"))  # fmt: skip
    assert out == [("d1", True, "clicked")]
    assert run(served("d1", "m", 0), track("Message Dismissed", H, decision_id="d1")) == [
        ("d1", False, "dismissed")
    ]


def test_a_conversion_credits_the_latest_waiting_decision_in_its_window() -> None:
    out = run(served("d1", "a", 0), served("d2", "b", H), track("Order Completed", 2 * H))
    assert out == [("d2", True, "converted")]
    # an order after the attribution window credits nothing
    assert run(served("d1", "a", 0), track("Order Completed", 30 * H)) == []


def test_no_outcome_by_the_timeout_is_a_negative() -> None:
    out = run(served("d1", "a", 0), track("Product Viewed", 73 * H))
    assert out == [("d1", False, "timeout")]
    w = Waiting()
    observe(w, served("d2", "a", 0), P)
    assert [e.why for e in expire(w, 80 * H, P)] == ["timeout"]


def test_one_example_per_decision() -> None:
    out = run(served("d1", "a", 0), served("d1", "a", 0),  # logged twice
              track("Message Clicked", H, decision_id="d1"),
              track("Message Clicked", H + 1, decision_id="d1"),
              track("Order Completed", 2 * H))  # fmt: skip
    assert out == [("d1", True, "clicked")]


def test_the_waiting_list_is_bounded() -> None:
    w = Waiting()
    out = []
    for i in range(20):
        out += observe(w, served(f"d{i}", "a", i), P)
    assert len(w.decisions) == P.max_waiting and [e.decision_id for e in out] == [
        "d0",
        "d1",
        "d2",
        "d3",
    ]


def test_waiting_decisions_are_kept_compact_and_read_back_exactly() -> None:
    # a customer served often keeps up to 16 decisions and 64 outcome ids: in the dataflow's
    # cache and in its stored state, for every such customer
    cart = {"items": 2, "value": 31.5, "age_s": 90.0}
    feats = {"cart": cart, "days_since_order": 3.0, "hour": 13, "orders": 1, "views": 7,
             "sessions": 2, "days_since_seen": 0.1}  # fmt: skip
    x = vector(feats)
    w = Waiting()
    labelled = []
    for i in range(80):
        ev = decision_event("u1", f"0b7e3c1e-4a5f-4d2b-9c1d-{i:012d}", "m", "web", 1.0, False,
                            i, x)  # fmt: skip
        (through_the_stream,) = decode_entry(encode_entry([ev]))
        labelled += observe(w, through_the_stream, P)
    assert len(w.decisions) == P.max_waiting and all(e.x == x for e in labelled)
    row = msgpack.packb(w.to_row(), use_bin_type=True)
    assert len(row) <= 200 * P.max_waiting + 8 * 64 + 16  # ~90 bytes of features a decision
    back = Waiting.from_row(msgpack.unpackb(row))
    out = observe(back, track("Message Clicked", 100, decision_id=w.decisions[-1][0]), P)
    assert [(e.y, e.x) for e in out] == [(True, x)]  # its features exactly as served
    assert observe(back, served(labelled[0].decision_id, "m", 101), P) == []  # done: once


def test_waiting_rows_of_the_previous_format_are_read() -> None:
    old = [[["d1", "m", "email", 0, {"views": 0.5}]], ["d0"], []]
    w = Waiting.from_row(msgpack.unpackb(msgpack.packb(old)))
    assert w.is_done("d0") and not w.is_done("d1")
    assert [(e.decision_id, e.x) for e in expire(w, 73 * H, P)] == [("d1", {"views": 0.5})]


def test_a_response_that_arrives_before_its_decision_still_labels_it() -> None:
    # decisions are logged in batches (and by several API replicas): a click can come first
    out = run(track("Message Clicked", 5, decision_id="d1"), served("d1", "m", 0),
              track("Message Dismissed", 10, decision_id="d2"), served("d2", "m", 1),
              served("d3", "m", 2), track("Message Clicked", 20, decision_id="d3"))  # fmt: skip
    assert out == [("d1", True, "clicked"), ("d2", False, "dismissed"), ("d3", True, "clicked")]


def test_an_early_response_whose_decision_never_comes_is_dropped() -> None:
    w = Waiting()
    observe(w, track("Message Clicked", 0, decision_id="lost"), P)
    assert w.early
    observe(w, track("Product Viewed", P.early_ms + 1), P)
    assert w.early == []
    # and the decision arriving after that waits for an outcome like any other
    assert observe(w, served("lost", "m", P.early_ms + 2), P) == []


def test_watch_keeps_state_only_while_something_waits() -> None:
    w, _ = watch(None, track("Product Viewed", 0), P)
    assert w is None
    w, _ = watch(None, track("Message Clicked", 1, decision_id="d1"), P)
    assert w is not None and w.early
    w, out = watch(w, served("d1", "m", 0), P)
    assert w is None and [e.why for e in out] == ["clicked"]


def test_the_book_times_out_decisions_of_customers_who_never_come_back() -> None:
    from models.feedback import FeedbackBook

    book = FeedbackBook(P)
    assert book.add("u1", served("d1", "m", 0)) == []
    assert book.add("u2", served("d2", "m", H)) == []
    assert [e.why for e in book.add("u2", track("Message Clicked", 2 * H, decision_id="d2"))] == [
        "clicked"
    ]
    assert book.advance(72 * H) == []  # not yet past d1's timeout (72 h)
    back = FeedbackBook(P)  # a restart in between: each customer's row read back
    for cid, w in book.waiting.items():
        back.adopt(cid, Waiting.from_row(msgpack.unpackb(msgpack.packb(w.to_row()))))
    out = back.advance(72 * H + 1)
    assert [(e.decision_id, e.y, e.why) for e in out] == [("d1", False, "timeout")]
    assert back.waiting == {} and back.advance(10**15) == []  # each decision once
    # an answer whose decision never arrives is forgotten after early_ms
    back.add("u3", track("Message Clicked", 0, decision_id="lost"))
    assert "u3" in back.waiting
    back.advance(P.early_ms + 1)
    assert back.waiting == {}


def test_the_books_queue_grows_with_the_customers_waiting_not_the_decisions() -> None:
    from models.feedback import FeedbackBook

    book = FeedbackBook(P)
    labelled: list[str] = []
    for n in range(5_000):  # 50 customers, 100 decisions each, a click now and then
        cid = f"u{n % 50}"
        ev = decision_event(cid, f"d{n}", "m", "email", 1.0, False, n * 1_000, {})
        labelled += [e.decision_id for e in book.add(cid, ev)]
        if n % 7 == 0:
            click = Event("track", f"c{n}", n * 1_000 + 1, n * 1_000 + 1, "email", user_id=cid,
                          event="Message Clicked", properties={"decision_id": f"d{n}"})  # fmt: skip
            labelled += [e.decision_id for e in book.add(cid, click)]
    assert len(book.waiting) == 50
    assert book._deadlines.entries <= 2 * 50 + SLACK  # not one entry per decision served
    assert book.advance(72 * H) == []  # nothing due yet: the last decisions are recent
    labelled += [e.decision_id for e in book.advance(10**15)]
    assert sorted(labelled) == sorted(f"d{n}" for n in range(5_000))  # each exactly once
    assert book.waiting == {} and book.advance(10**16) == []


def test_what_waits_under_an_id_that_joins_another_moves_with_it() -> None:
    """A visitor served a message who then logs in: the order or the click that comes
    under the account afterwards still finds the decision (`merge`)."""
    from models.feedback import FeedbackBook, merge

    book = FeedbackBook(P)
    book.add("anon", served("d1", "cart", 0))
    book.add("anon", served("d2", "welcome", H))
    book.add("user", served("d3", "loyalty", 2 * H))
    moved = book.take("anon")
    assert moved is not None and "anon" not in book.waiting
    assert book.merge("user", moved) == []
    assert [d[0] for d in book.waiting["user"].decisions] == ["d1", "d2", "d3"]  # oldest first
    # the order under the account credits the latest decision in its window, whichever id
    # it was served to; the click labels the visitor's first
    order = book.add("user", track("Order Completed", 2 * H + 5))
    assert [(e.decision_id, e.why) for e in order] == [("d3", "converted")]
    click = book.add("user", track("Message Clicked", 2 * H + 6, decision_id="d1"))
    assert [(e.decision_id, e.why) for e in click] == [("d1", "clicked")]
    # d2 times out once, on the account's deadline; the visitor's id has nothing left
    assert [(e.decision_id, e.why) for e in book.advance(73 * H + 1)] == [("d2", "timeout")]
    assert book.waiting == {} and book.advance(10**15) == []

    # an answer that came early on one side labels the other side's decision; what either
    # side labelled stays labelled; taking the same thing twice changes nothing
    a, b = Waiting(), Waiting()
    observe(a, track("Message Dismissed", 5, decision_id="d9"), P)
    observe(a, served("d8", "m", 1), P)
    observe(a, track("Message Clicked", 6, decision_id="d8"), P)  # d8 done on a's side
    observe(b, served("d9", "m", 0), P)
    observe(b, served("d8", "m", 1), P)  # (the same decision logged under the other id)
    b_row = b.to_row()
    out = merge(a, b, P)
    assert [(e.decision_id, e.y, e.why) for e in out] == [("d9", False, "dismissed")]
    assert a.decisions == [] and a.early == [] and a.is_done("d8") and a.is_done("d9")
    assert merge(a, Waiting.from_row(b_row), P) == [] and a.decisions == []

    # past max_waiting the oldest give up their place, as when served
    many, more = Waiting(), Waiting()
    for i in range(10):
        observe(many, served(f"m{i}", "m", 2 * i), P)
        observe(more, served(f"n{i}", "m", 2 * i + 1), P)
    out = merge(many, more, P)
    assert [e.decision_id for e in out] == ["m0", "n0", "m1", "n1"]
    assert all(e.why == "timeout" for e in out) and len(many.decisions) == P.max_waiting
