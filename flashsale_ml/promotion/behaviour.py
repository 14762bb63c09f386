"""Behavioural checks: what a scoring function must do whatever its metrics say."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from flashsale_ml.promotion.gates import CheckResult


def behavioural_checks(
    predict: Callable[[pd.DataFrame], np.ndarray],
    frame: pd.DataFrame,
    seed: int,
    monotone_increasing: Mapping[str, Sequence[float]] | None = None,
    monotone_tolerance: float = 0.002,
    invariance_tolerance: float = 1e-9,
) -> tuple[CheckResult, ...]:
    """Behaviour a propensity model must show whatever its metrics say.

    Args:
        predict: the scoring path under test (raw feature frame in, probabilities out).
        frame: a sample of holdout rows with the raw feature columns.
        seed: seed of the shuffles and noise.
        monotone_increasing: feature -> grid of values along which the mean prediction must
            not fall by more than ``monotone_tolerance`` (e.g. a deeper discount never makes a
            purchase less likely on average).
        monotone_tolerance: allowed fall of the mean prediction between grid steps (noise).
        invariance_tolerance: allowed absolute difference for the invariance checks.

    Returns:
        One result per check: ``row_order``, ``irrelevant_columns`` and ``monotone:<feature>``.
    """
    rng = np.random.default_rng(seed)
    base = np.asarray(predict(frame), dtype=float)
    results: list[CheckResult] = []

    perm = rng.permutation(len(frame))
    shuffled = np.asarray(predict(frame.iloc[perm]), dtype=float)
    gap = float(np.max(np.abs(shuffled - base[perm]))) if len(frame) else 0.0
    results.append(
        CheckResult(
            "row_order",
            gap <= invariance_tolerance,
            f"max |Δ| {gap:.2e} after shuffling {len(frame)} rows",
        )
    )

    noisy = frame.assign(
        zz_irrelevant_noise=rng.normal(size=len(frame)),
        zz_irrelevant_label="irrelevant",
    )
    noisy = noisy[list(reversed(noisy.columns))]
    gap = float(np.max(np.abs(np.asarray(predict(noisy), dtype=float) - base)))
    results.append(
        CheckResult(
            "irrelevant_columns",
            gap <= invariance_tolerance,
            f"max |Δ| {gap:.2e} with two extra columns and reversed column order",
        )
    )

    for feature, grid in (monotone_increasing or {}).items():
        means = [float(np.mean(predict(frame.assign(**{feature: value})))) for value in grid]
        drops = [means[i] - means[i + 1] for i in range(len(means) - 1)]
        worst = max(drops, default=0.0)
        curve = ", ".join(f"{v:g}:{m:.4f}" for v, m in zip(grid, means, strict=True))
        results.append(
            CheckResult(
                f"monotone:{feature}",
                worst <= monotone_tolerance,
                f"mean prediction along {feature} [{curve}]; largest fall {max(worst, 0):.4f} "
                f"(tolerance {monotone_tolerance})",
            )
        )
    return tuple(results)
