"""Customer value segments and per-segment metrics, shared by promotion and campaign
evaluation."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from flashsale_ml.evaluation.binary import roc_auc

ArrayLikeFloat = Sequence[float] | np.ndarray | pd.Series
VALUE_TIERS = ("high", "mid", "low")


def value_tiers(monetary: ArrayLikeFloat) -> np.ndarray:
    """High/mid/low value tier of each customer from spend before the cutoff.

    Percentile ranks with ties averaged: the top 20 % of spend are ``high``, the next 30 %
    ``mid`` and the rest ``low``. Customers who never bought share one (low) rank, so a shop
    where most accounts never bought puts all of them in ``low``.
    """
    from scipy.stats import rankdata

    values = np.nan_to_num(np.asarray(monetary, dtype=float), nan=0.0)
    if values.size == 0:
        return np.array([], dtype=object)
    percentile = rankdata(values, method="average") / values.size
    return np.where(percentile > 0.8, "high", np.where(percentile > 0.5, "mid", "low"))


def segment_aucs(
    labels: np.ndarray, scores: np.ndarray, segments: np.ndarray, min_rows: int
) -> dict[str, float]:
    """AUC within each value tier that has at least ``min_rows`` rows and both classes."""
    out: dict[str, float] = {}
    for tier in VALUE_TIERS:
        mask = segments == tier
        y = labels[mask]
        if mask.sum() >= min_rows and 0 < y.sum() < len(y):
            out[tier] = roc_auc(y, scores[mask])
    return out
