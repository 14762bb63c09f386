"""Evaluation metrics for binary purchase-propensity predictions."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def check_binary_inputs(
    y_true: ArrayLike, y_prob: ArrayLike, both_classes: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """0/1 labels and probabilities as float arrays, or a ValueError saying what is wrong."""
    y = np.asarray(y_true, dtype=float)
    p = np.asarray(y_prob, dtype=float)
    if y.ndim != 1 or p.ndim != 1 or len(y) != len(p):
        raise ValueError(f"y_true and y_prob must be 1-d of equal length, got {y.shape}, {p.shape}")
    if len(y) == 0:
        raise ValueError("cannot evaluate an empty set")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("y_true must contain only 0 and 1")
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError("y_prob must be probabilities in [0, 1] without NaN")
    if both_classes and y.min() == y.max():
        raise ValueError("only one class present in y_true; AUC is undefined")
    return y, p


def expected_calibration_error(y_true: ArrayLike, y_prob: ArrayLike, bins: int = 15) -> float:
    """Expected calibration error with equal-mass bins.

    Args:
        y_true: 0/1 outcomes.
        y_prob: predicted probabilities.
        bins: number of quantile bins.

    Returns:
        Σ_b (n_b / n) · |mean(y)_b − mean(p)_b|.

    References:
        Naeini, Cooper & Hauskrecht (2015), "Obtaining Well Calibrated Probabilities Using
        Bayesian Binning", AAAI.
    """
    y, p = check_binary_inputs(y_true, y_prob)
    order = np.argsort(p, kind="stable")
    ece = 0.0
    for chunk in np.array_split(order, min(bins, len(p))):
        if len(chunk):
            ece += len(chunk) / len(p) * abs(y[chunk].mean() - p[chunk].mean())
    return float(ece)


def binary_metrics(y_true: ArrayLike, y_prob: ArrayLike) -> dict[str, float]:
    """AUC, PR-AUC (average precision), log loss, Brier score and calibration error.

    Raises:
        ValueError: inputs are not 0/1 labels and probabilities of equal length, or only
            one class is present (AUC is undefined).
    """
    from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

    y, p = check_binary_inputs(y_true, y_prob, both_classes=True)
    return {
        "auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "log_loss": float(log_loss(y, np.clip(p, 1e-7, 1 - 1e-7))),
        "brier": float(brier_score_loss(y, p)),
        "ece": expected_calibration_error(y, p),
        "positive_rate": float(y.mean()),
        "mean_prediction": float(p.mean()),
        "n": float(len(y)),
    }
