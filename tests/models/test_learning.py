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
