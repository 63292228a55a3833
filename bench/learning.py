"""The learning loop in a simulator with known response probabilities: does the learned
policy find the best message for each kind of customer?

``python -m bench.learning [--decisions 100000] [--seed 1] [--png bench/learning_curve.png]
[--strategy epsilon-greedy|thompson]``

Customers come from four segments (cart abandoners, loyal buyers, browsers, lapsed buyers),
each with its own feature distribution (the `models.features` view, with noise). Every
decision offers the seven messages of the default catalog on one channel; the true response
probability depends on (segment, message) and is unknown to the policies. Reward = the
message's value x lever if the customer responds. Policies, on the same customers and the same
random draws (common random numbers):

- oracle: the best expected reward, knowing the true probabilities;
- learned: `models.learning.Learner` (River logistic regression per arm, cold-start prior,
  learning from every outcome), arbitrated as `/v1/decide` does (propensity x value x lever)
  with the catalog's exploration: epsilon-greedy, or Thompson sampling (``--strategy
  thompson``: propensities drawn from each arm's posterior, `Learner.sample`);
- fixed priority: the highest value x lever, always;
- uniform random.

Printed: cumulative reward of each policy as a share of the oracle's, the learning curve (share
of the oracle's reward per window), the exploration share, and the learned arms' progressive
ROC AUC. The curve is saved as a PNG when matplotlib is installed (``pip install -e .[bench]``).
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path
from typing import Any, Final

from bench.machine import header, table
from config.catalog import STRATEGIES, THOMPSON, load_catalog
from models.learning import Learner, vector

TARGET: Final = 0.90
CHANNEL: Final = "email"

# true response probability per segment and message (unknown to the policies)
TRUTH: Final = {
    "cart_abandoner": {"cart_reminder": 0.12, "checkout_help": 0.22, "browse_reminder": 0.02,
                       "cross_sell": 0.01, "welcome": 0.03, "win_back": 0.01, "loyalty": 0.01},
    "loyal": {"cart_reminder": 0.02, "checkout_help": 0.02, "browse_reminder": 0.03,
              "cross_sell": 0.18, "welcome": 0.01, "win_back": 0.02, "loyalty": 0.30},
    "browser": {"cart_reminder": 0.01, "checkout_help": 0.01, "browse_reminder": 0.15,
                "cross_sell": 0.02, "welcome": 0.20, "win_back": 0.01, "loyalty": 0.01},
    "lapsed": {"cart_reminder": 0.02, "checkout_help": 0.01, "browse_reminder": 0.03,
               "cross_sell": 0.03, "welcome": 0.02, "win_back": 0.09, "loyalty": 0.02},
}  # fmt: skip
SHARES: Final = {"cart_abandoner": 0.3, "loyal": 0.2, "browser": 0.35, "lapsed": 0.15}


def customer(segment: str, rng: random.Random) -> dict[str, Any]:
    """A `models.features.features`-shaped view of a customer of `segment`."""
    g = rng.gauss
    cart = segment == "cart_abandoner"
    buyer = segment in ("loyal", "lapsed")
    return {
        "cart": {"items": max(1, int(g(2, 1))) if cart else 0,
                 "value": max(5.0, g(80, 30)) if cart else 0.0,
                 "age_s": rng.uniform(1800, 20_000) if cart else -1.0},
        "orders": max(1, int(g(6, 2))) if segment == "loyal" else 1 if buyer else 0,
        "days_since_order": rng.uniform(0, 20) if segment == "loyal"
        else rng.uniform(60, 200) if buyer else -1.0,
        "views": max(0, int(g(25 if segment == "browser" else 6, 5))),
        "sessions": max(1, int(g(8 if buyer else 3, 2))),
        "days_since_seen": rng.uniform(40, 120) if segment == "lapsed" else rng.uniform(0, 2),
        "hour": rng.randrange(24),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.learning", description=__doc__.split("\n")[0])
    p.add_argument("--decisions", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--png", type=Path, default=Path("bench/learning_curve.png"))
    p.add_argument(
        "--epsilon", type=float, default=None, help="exploration share (default: the catalog's)"
    )
    p.add_argument("--strategy", choices=STRATEGIES, default=None,
                   help="how the learned policy explores (default: the catalog's)")  # fmt: skip
    args = p.parse_args(argv)
    print(header("nudge bench: learning loop in a simulator (known response rates)",
                 "bench.learning"))  # fmt: skip
    catalog = load_catalog()
    messages = [m for m in catalog.messages if m.id in TRUTH["loyal"]]
    worth = {m.id: m.value * m.lever for m in messages}
    epsilon = catalog.policy.exploration if args.epsilon is None else args.epsilon
    strategy = args.strategy or catalog.policy.exploration_strategy
    rng = random.Random(args.seed)
    draw = random.Random(args.seed + 1)  # Thompson sampling's draws
    learner = Learner()
    segments, weights = list(SHARES), list(SHARES.values())
    totals = dict.fromkeys(("oracle", "learned", "fixed", "random"), 0.0)
    window = max(1, args.decisions // 50)
    curve: list[tuple[int, float]] = []
    win = dict.fromkeys(totals, 0.0)
    explored = 0
    fixed_pick = max(worth, key=lambda m: (worth[m], m))
    for i in range(1, args.decisions + 1):
        seg = rng.choices(segments, weights)[0]
        x = vector(customer(seg, rng))
        truth = TRUTH[seg]
        draws = {m: rng.random() for m in worth}  # common random numbers for every policy

        def reward(
            m: str, truth: dict[str, float] = truth, draws: dict[str, float] = draws
        ) -> float:
            return worth[m] if draws[m] < truth[m] else 0.0

        oracle = max(worth, key=lambda m: (truth[m] * worth[m], m))
        best = max(worth, key=lambda m: (learner.propensity(m, CHANNEL, x) * worth[m], m))
        if strategy == THOMPSON:
            pick = max(worth, key=lambda m: (learner.sample(m, CHANNEL, x, draw) * worth[m], m))
            explored += pick != best
        elif rng.random() < epsilon:
            pick = rng.choice(list(worth))
            explored += 1
        else:
            pick = best
        got = reward(pick)
        learner.learn(pick, CHANNEL, x, got > 0)
        for name, m in (("oracle", oracle), ("learned", pick), ("fixed", fixed_pick),
                        ("random", rng.choice(list(worth)))):  # fmt: skip
            r = reward(m)
            totals[name] += r
            win[name] += r
        if i % window == 0:
            curve.append((i, win["learned"] / win["oracle"] if win["oracle"] else 0.0))
            win = dict.fromkeys(totals, 0.0)
    share = {k: v / totals["oracle"] for k, v in totals.items()}
    how = "Thompson sampling" if strategy == THOMPSON else f"epsilon-greedy, {epsilon:g}"
    print(f"decisions {args.decisions:,}, {len(worth)} messages on {CHANNEL}, 4 segments; "
          f"exploration {explored / args.decisions:.1%} ({how})")  # fmt: skip
    print(table([[k, f"{totals[k]:,.0f}", f"{share[k]:.3f}"] for k in totals],
                ["policy", "cumulative reward", "share of oracle"]))  # fmt: skip
    print("learning curve (learned / oracle reward per window of "
          f"{window:,} decisions): " + " ".join(f"{r:.2f}" for _, r in curve))  # fmt: skip
    rep = learner.report()
    arms = [
        [k, f"{v['examples']:,}", f"{v['response_rate']:.3f}", f"{v['roc_auc']:.3f}",
         f"{v['log_loss']:.3f}"]
        for k, v in rep.items()
    ]  # fmt: skip
    print(table(arms, ["arm", "examples", "response rate", "progressive ROC AUC", "log loss"]))
    ok = share["learned"] >= TARGET and share["learned"] > max(share["fixed"], share["random"])
    print(f"target    learned ≥ {TARGET:.0%} of the oracle and above both baselines: "
          f"{'met' if ok else 'NOT met'} ({share['learned']:.1%}; fixed "
          f"{share['fixed']:.1%}, random {share['random']:.1%})")  # fmt: skip
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("png       matplotlib is not installed (pip install -e .[bench]): no PNG")
        return 0
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot([n for n, _ in curve], [r for _, r in curve], label="learned / oracle (per window)")
    ax.axhline(TARGET, color="grey", linestyle="--", label=f"target {TARGET:.0%}")
    ax.axhline(share["fixed"], color="tab:orange", linestyle=":", label="fixed priority (overall)")
    ax.axhline(share["random"], color="tab:red", linestyle=":", label="uniform random (overall)")
    ax.set_xlabel("decisions")
    ax.set_ylabel("share of the oracle's reward")
    ax.set_ylim(0, 1.05)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    args.png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.png, dpi=120)
    print(f"png       learning curve saved to {args.png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
