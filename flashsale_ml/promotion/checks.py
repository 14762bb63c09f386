"""Checks of a challenger's binary probabilities on their own, reusable by any binary kind."""

from __future__ import annotations

import numpy as np

from flashsale_ml.evaluation.binary import check_binary_inputs
from flashsale_ml.promotion.gates import CheckResult


def positive_rate_interval(positives: int, rows: int, confidence: float) -> tuple[float, float]:
    """Exact (Clopper-Pearson) two-sided interval of a binomial proportion ``positives / rows``.

    Exact rather than Wilson: its coverage is never below ``confidence``, so a gate built on it
    errs towards passing a model when the holdout is small.

    References:
        Clopper & Pearson (1934), "The use of confidence or fiducial limits illustrated in the
        case of the binomial", Biometrika 26(4); computed by
        ``scipy.stats.binomtest(...).proportion_ci(method="exact")``.
    """
    from scipy.stats import binomtest

    ci = binomtest(positives, rows).proportion_ci(confidence_level=confidence, method="exact")
    return float(ci.low), float(ci.high)


def calibration_in_the_large(
    labels: np.ndarray, scores: np.ndarray, confidence: float, tolerance: float
) -> tuple[CheckResult, dict[str, float]]:
    """Does the mean predicted probability agree with the observed positive rate?

    ECE averages absolute gaps per bin, so at a low base rate a model that over-predicts every
    row by a third still has a small ECE. This compares the overall level instead: the mean
    prediction must lie within ``[low · (1 − tolerance), high · (1 + tolerance)]``, where
    ``low..high`` is the exact ``confidence`` interval of the observed rate. The interval takes
    care of sampling noise (a tiny holdout cannot fail a calibrated model), the relative
    tolerance of drift between sales that no model can foresee.

    Returns:
        The check (named ``calibration_in_the_large``) and the interval as metrics.
    """
    y, p = check_binary_inputs(labels, scores)
    rows, positives = len(y), int(y.sum())
    observed, mean = positives / rows, float(p.mean())
    low, high = positive_rate_interval(positives, rows, confidence)
    if mean > high:
        where = f"{mean / high - 1:.1%} above the interval"
    elif mean < low:
        where = f"{1 - mean / low:.1%} below the interval"
    else:
        where = "inside the interval"
    passed = low * (1 - tolerance) <= mean <= high * (1 + tolerance)
    detail = (
        f"mean predicted {mean:.4f} vs observed {observed:.4f} ({confidence:.0%} CI "
        f"{low:.4f}..{high:.4f}, {positives}/{rows} rows): {where} (tolerance {tolerance:.0%})"
    )
    metrics = {"positive_rate_ci_low": low, "positive_rate_ci_high": high}
    return CheckResult("calibration_in_the_large", passed, detail), metrics
