"""Online response models: for each (message, channel) arm, the probability that a customer
responds, learned with River from labelled decisions (pure; the dataflow trains, the API
scores, with this same code).

- An arm is a River `LogisticRegression` over `vector(features)`, a small numeric view of
  `models.features.features`. Until it has seen `min_examples` labels, its propensity blends
  the prior with the model's estimate in proportion to the examples seen (cold start).
- Progressive validation: every label is first predicted, then learned; ROC AUC and log loss
  per arm are kept (River's metrics).
- Thompson sampling (the catalog's ``exploration_strategy = "thompson"``): each arm also
  keeps a diagonal Gaussian posterior over its logit's weights, the Laplace approximation of
  online Bayesian logistic regression (Chapelle & Li, "An Empirical Evaluation of Thompson
  Sampling", 2011): a weight's precision starts at `PRIOR_PRECISION` and grows by
  ``x_i² p (1 - p)`` with every label. `Learner.sample` draws a propensity from it: the
  logit's mean (that of `propensity`) plus its standard deviation ``sqrt(Σ x_i² / q_i)``
  times one normal draw (exact for a diagonal Gaussian: one draw per message, not one per
  weight). Arms with few labels draw widely, and explore; well-known arms draw near their mean.
- The models reach the API as versioned msgpack (`encode_learner` / `decode_learner`): the
  weights, intercept, precisions and counts; never pickle.
"""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import msgpack
from river import linear_model, metrics, optim
from river.utils import VectorDict

from models import NudgeError

LEARNER_VERSION: Final = 2  # 2: with each arm's precisions (Thompson sampling)
PRIOR_PRECISION: Final = 1.0  # of each weight and the intercept, before any label
_BIAS: Final = ""  # the intercept's key among an arm's precisions
_packer = msgpack.Packer(use_bin_type=True)


class LearnerError(NudgeError):
    """Model state this version cannot read."""


FEATURES: Final = (
    "cart_items", "cart_value", "cart_fresh", "buyer", "orders", "recent_order", "views",
    "sessions", "seen_today", "hour_sin", "hour_cos",
)  # fmt: skip
_VECTOR: Final = struct.Struct(f"<{len(FEATURES)}d")


def pack_vector(x: Mapping[str, float]) -> bytes | Mapping[str, float]:
    """`x` as 8 bytes per feature when it holds exactly `FEATURES`, in order (what `vector`
    makes): a decision's features kept while it waits for an outcome take ~120 bytes
    instead of ~900 as a dict, and ~90 instead of ~200 in msgpack. Anything else comes back
    as it is.

    >>> x = dict.fromkeys(FEATURES, 0.5)
    >>> len(pack_vector(x)), unpack_vector(pack_vector(x)) == x
    (88, True)
    """
    if len(x) != len(FEATURES) or tuple(x) != FEATURES:
        return x
    return _VECTOR.pack(*x.values())


def unpack_vector(v: bytes | Mapping[str, float]) -> dict[str, float]:
    """A `pack_vector` result as the dict the models read (bytes of another length, from a
    version with other features: none of them)."""
    if isinstance(v, bytes):
        return dict(zip(FEATURES, _VECTOR.unpack(v), strict=True)) if len(v) == _VECTOR.size else {}
    return dict(v)


def vector(feats: Mapping[str, Any]) -> dict[str, float]:
    """The numeric features the response models read (bounded, roughly unit-scaled)."""
    cart = feats["cart"]
    dso = feats["days_since_order"]
    hour = feats["hour"] * (2 * math.pi / 24)
    return {
        "cart_items": min(cart["items"], 10) / 10,
        "cart_value": math.log1p(max(cart["value"], 0.0)) / 10,
        "cart_fresh": 1.0 if 0 <= cart["age_s"] <= 86_400 else 0.0,
        "buyer": 1.0 if feats["orders"] > 0 else 0.0,
        "orders": min(feats["orders"], 20) / 20,
        "recent_order": 1.0 if 0 <= dso <= 30 else 0.0,
        "views": min(feats["views"], 50) / 50,
        "sessions": min(feats["sessions"], 20) / 20,
        "seen_today": 1.0 if feats["days_since_seen"] <= 1 else 0.0,
        "hour_sin": math.sin(hour),
        "hour_cos": math.cos(hour),
    }


@dataclass(slots=True)
class Arm:
    model: Any  # a river LogisticRegression (untyped)
    n: int = 0
    positives: int = 0
    auc: Any = field(default_factory=metrics.ROCAUC)
    logloss: Any = field(default_factory=metrics.LogLoss)
    published: tuple[float, float] | None = None  # (ROC AUC, log loss) as decoded: frozen
    # the posterior precision of each weight (`_BIAS`: the intercept's), for Thompson sampling
    precision: dict[str, float] = field(default_factory=dict)


def _model(lr: float) -> linear_model.LogisticRegression:
    return linear_model.LogisticRegression(optimizer=optim.SGD(lr), intercept_lr=lr)


@dataclass(slots=True)
class Learner:
    prior: float = 0.05
    min_examples: int = 200
    lr: float = 0.05
    arms: dict[str, Arm] = field(default_factory=dict)

    @staticmethod
    def key(message_id: str, channel: str) -> str:
        return f"{message_id}|{channel}"

    def _arm(self, message_id: str, channel: str) -> Arm:
        k = self.key(message_id, channel)
        arm = self.arms.get(k)
        if arm is None:
            arm = self.arms[k] = Arm(_model(self.lr))
            arm.model.intercept = math.log(self.prior / (1 - self.prior))  # start at the prior
        return arm

    def propensity(self, message_id: str, channel: str, x: Mapping[str, float]) -> float:
        arm = self.arms.get(self.key(message_id, channel))
        if arm is None or arm.n == 0:
            return self.prior
        p = float(arm.model.predict_proba_one(x).get(True, self.prior))
        trust = min(1.0, arm.n / self.min_examples)
        return trust * p + (1 - trust) * self.prior

    def sample(
        self, message_id: str, channel: str, x: Mapping[str, float], rng: random.Random
    ) -> float:
        """A propensity drawn from the arm's posterior (Thompson sampling; see the module's
        docstring): around `propensity`, as widely as the arm's labels leave it uncertain."""
        mean = min(max(self.propensity(message_id, channel, x), 1e-9), 1 - 1e-9)
        arm = self.arms.get(self.key(message_id, channel))
        q = arm.precision if arm is not None else {}
        var = 1 / q.get(_BIAS, PRIOR_PRECISION)
        for f, v in x.items():
            if v:
                var += v * v / q.get(f, PRIOR_PRECISION)
        z = math.log(mean / (1 - mean)) + math.sqrt(var) * rng.gauss(0.0, 1.0)
        return 1 / (1 + math.exp(-z)) if z > -700 else 0.0

    def learn(self, message_id: str, channel: str, x: Mapping[str, float], y: bool) -> None:
        """One label: predicted first (progressive validation), then learned."""
        arm = self._arm(message_id, channel)
        p = float(arm.model.predict_proba_one(x).get(True, self.prior))
        _update(arm.auc, y, p)
        _update(arm.logloss, y, p)
        arm.model.learn_one(x, y)
        arm.n += 1
        arm.positives += int(y)
        # the posterior's precision (Laplace, diagonal): the curvature of the log loss at p
        w = p * (1 - p)
        q = arm.precision
        q[_BIAS] = q.get(_BIAS, PRIOR_PRECISION) + w
        for f, v in x.items():
            if v:
                q[f] = q.get(f, PRIOR_PRECISION) + v * v * w

    def report(self) -> dict[str, dict[str, float]]:
        """Per arm: examples, response rate, progressive ROC AUC and log loss."""
        return {
            k: {
                "examples": a.n,
                "response_rate": a.positives / a.n if a.n else 0.0,
                "roc_auc": a.published[0] if a.published else _metric(a.auc),
                "log_loss": a.published[1] if a.published else _metric(a.logloss),
                "trust": min(1.0, a.n / self.min_examples),
            }
            for k, a in sorted(self.arms.items())
        }


def encode_learner(learner: Learner) -> bytes:
    """What the API needs to score: versioned msgpack of each arm's weights and counts."""
    arms = {
        k: [
            dict(a.model._weights),
            a.model.intercept,
            a.n,
            a.positives,
            _metric(a.auc),
            _metric(a.logloss),
            a.precision,
        ]
        for k, a in learner.arms.items()
    }
    return _packer.pack([LEARNER_VERSION, learner.prior, learner.min_examples, learner.lr, arms])


def _update(m: Any, y: bool, p: float) -> None:
    m.update(y, p)  # River's metrics are untyped


def _metric(m: Any) -> float:
    return float(m.get())


def decode_learner(data: bytes) -> Learner:
    """The scoring half of a learner (its metrics are the published figures, frozen)."""
    try:
        row = msgpack.unpackb(data, raw=False)
        version, prior, min_examples, lr, arms = row
    except (ValueError, TypeError) as exc:
        raise LearnerError(f"not a learner blob: {exc}") from exc
    if version not in (1, LEARNER_VERSION):  # (1: without the precisions)
        raise LearnerError(f"unknown learner version {version!r}")
    learner = Learner(prior, min_examples, lr)
    for k, (weights, intercept, n, positives, auc, logloss, *precision) in arms.items():
        model = _model(lr)
        model._weights = VectorDict(weights)
        model.intercept = intercept
        learner.arms[k] = Arm(model, n, positives, published=(auc, logloss),
                              precision=dict(precision[0]) if precision else {})  # fmt: skip
    return learner


class Scorer:
    """`learner` as `models.decision.decide` reads it: called, the propensity (`propensity`);
    `sample`, a draw for Thompson sampling. The features are turned into the model's vector
    once per decision, not once per message."""

    __slots__ = ("_feats", "_x", "learner")

    def __init__(self, learner: Learner) -> None:
        self.learner = learner
        self._feats: Mapping[str, Any] | None = None
        self._x: dict[str, float] = {}

    def _vector(self, feats: Mapping[str, Any]) -> dict[str, float]:
        if self._feats is not feats:
            self._feats, self._x = feats, vector(feats)
        return self._x

    def __call__(self, message_id: str, channel: str, feats: Mapping[str, Any]) -> float:
        return self.learner.propensity(message_id, channel, self._vector(feats))

    def sample(
        self, message_id: str, channel: str, feats: Mapping[str, Any], rng: random.Random
    ) -> float:
        return self.learner.sample(message_id, channel, self._vector(feats), rng)


def scorer(learner: Learner) -> Scorer:
    """`learner` as the `propensity` (and `sample`) of `models.decision.decide`."""
    return Scorer(learner)
