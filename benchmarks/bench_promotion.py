"""Cost of the promotion decision: the paired bootstrap grows with the holdout's size.

    python benchmarks/bench_promotion.py [--rows 100000 1000000] [--samples 1000]

Synthetic scores with a known gap (a clean and a noisy scorer of the same outcomes); prints
wall time of ``paired_bootstrap`` and of the whole ``decide_promotion`` per holdout size.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--samples", type=int, default=1000)
    args = parser.parse_args()

    from flashsale_ml.evaluation.bootstrap import paired_bootstrap
    from flashsale_ml.evaluation.segments import value_tiers
    from flashsale_ml.models.propensity.gates import PropensityGates
    from flashsale_ml.promotion.decision import ModelEvaluation, decide_promotion
    from flashsale_ml.promotion.holdout import HoldoutWindow

    gates = PropensityGates(bootstrap_samples=args.samples)
    for rows in args.rows:
        rng = np.random.default_rng(0)
        signal = rng.normal(size=rows)
        truth = 1 / (1 + np.exp(-(-2.5 + 1.5 * signal)))
        labels = (rng.random(rows) < truth).astype(int)
        noisy = 1 / (1 + np.exp(-(-2.5 + 1.5 * (signal + rng.normal(scale=1.0, size=rows)) / 1.4)))
        started = time.perf_counter()
        interval = paired_bootstrap(labels, truth, noisy, "auc", args.samples, 0.95, seed=1)
        bootstrap_s = time.perf_counter() - started

        window = HoldoutWindow("bench", ("sale",), "2026-01-01", rows, "digest")
        tiers = value_tiers(rng.lognormal(size=rows) * (rng.random(rows) < 0.4))
        challenger, champion = (
            ModelEvaluation(name, window, frozenset(), labels, scores, tiers)
            for name, scores in (("new", truth), ("old", noisy))
        )
        started = time.perf_counter()
        decision = decide_promotion(challenger, champion, gates, 1)
        print(
            json.dumps(
                {
                    "rows": rows,
                    "bootstrap_samples": args.samples,
                    "bootstrap_s": round(bootstrap_s, 2),
                    "decide_promotion_s": round(time.perf_counter() - started, 2),
                    "auc_gain": round(interval.difference, 4),
                    "ci": [round(interval.low, 4), round(interval.high, 4)],
                    "promote": decision.promote,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
