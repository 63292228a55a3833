"""Response models: cold start, learning, and the msgpack round trip the API relies on."""

from __future__ import annotations

import random

import msgpack
import pytest

from models.learning import Learner, LearnerError, decode_learner, encode_learner


def x(cart: float, buyer: float) -> dict[str, float]:
    return {"cart_items": cart, "buyer": buyer}


def test_cold_start_is_the_prior() -> None:
    learner = Learner(prior=0.05)
    assert learner.propensity("cart_reminder", "email", x(1, 0)) == 0.05


def test_it_learns_who_responds() -> None:
    rng = random.Random(3)
    learner = Learner(prior=0.05, min_examples=100, lr=0.1)
    for _ in range(5000):
        cart = float(rng.random() < 0.5)
        learner.learn("cart_reminder", "email", x(cart, 0), rng.random() < (0.3 if cart else 0.02))
    with_cart = learner.propensity("cart_reminder", "email", x(1, 0))
    without = learner.propensity("cart_reminder", "email", x(0, 0))
    assert with_cart > 0.2 > 0.05 > without
    report = learner.report()["cart_reminder|email"]
    assert report["examples"] == 5000 and report["roc_auc"] > 0.7  # progressive validation


def test_the_api_scores_what_the_dataflow_learned() -> None:
    rng = random.Random(5)
    learner = Learner()
    for _ in range(500):
        learner.learn("welcome", "web", x(rng.random(), rng.random()), rng.random() < 0.2)
    served = decode_learner(encode_learner(learner))
    for probe in (x(0, 0), x(1, 1), x(0.3, 0.7)):
        assert served.propensity("welcome", "web", probe) == pytest.approx(
            learner.propensity("welcome", "web", probe), rel=1e-12
        )
    assert served.arms["welcome|web"].n == 500


def test_bad_blobs_are_refused() -> None:
    with pytest.raises(LearnerError, match="unknown learner version"):
        decode_learner(msgpack.packb([99, 0.05, 200, 0.05, {}]))
    with pytest.raises(LearnerError, match="not a learner blob"):
        decode_learner(msgpack.packb([1, 2]))


def test_thompson_draws_widely_until_an_arm_is_known_then_near_its_estimate() -> None:
    rng = random.Random(11)
    learner = Learner(prior=0.05, min_examples=100, lr=0.1)
    probe = x(1, 0)
    cold = [learner.sample("cart_reminder", "email", probe, rng) for _ in range(2000)]
    assert all(0 < p < 1 for p in cold)
    # around the prior, and wide: a message nobody has answered yet still gets tried
    assert sum(p > 0.2 for p in cold) > 100 and sum(p < 0.05 for p in cold) > 500
    for _ in range(5000):
        learner.learn("cart_reminder", "email", probe, rng.random() < 0.3)
    mean = learner.propensity("cart_reminder", "email", probe)
    warm = sorted(learner.sample("cart_reminder", "email", probe, rng) for _ in range(2000))
    assert 0.2 < mean < 0.4
    assert warm[100] > mean - 0.1 and warm[1900] < mean + 0.1  # 90% within ±0.1 of it
    # the precisions reach the API with the weights (and blobs without them still read)
    served = decode_learner(encode_learner(learner))
    assert served.arms["cart_reminder|email"].precision == pytest.approx(
        learner.arms["cart_reminder|email"].precision
    )
    a, b = random.Random(1), random.Random(1)
    assert served.sample("cart_reminder", "email", probe, a) == pytest.approx(
        learner.sample("cart_reminder", "email", probe, b)
    )
    _, prior, n_min, lr, arms = msgpack.unpackb(encode_learner(learner))
    old = {k: row[:6] for k, row in arms.items()}  # version 1: no precisions
    before = decode_learner(msgpack.packb([1, prior, n_min, lr, old]))
    assert before.propensity("cart_reminder", "email", probe) == pytest.approx(mean)
    assert before.arms["cart_reminder|email"].precision == {}  # the prior's: draws widely
