"""Figures people would rather look at than read: ROC, PR, calibration, importance, loss."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

from flashsale_ml.training.metrics import (
    CalibrationBins,
    RankingCurves,
    ScoreEvaluation,
    ranking_curves,
)


def _figure(title: str):
    # A pyplot-free Figure: nothing is registered in pyplot's global state (so nothing leaks in
    # long-running workers and threads cannot race on it), and pyplot is never imported.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 4.5), dpi=110)
    ax = fig.subplots()
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return fig, ax


def close(fig) -> None:
    """Release a logged figure's artists (figures here are not registered with pyplot)."""
    fig.clear()


def roc_curves_figure(
    y_true: ArrayLike, scores: Mapping[str, ArrayLike], title: str = "ROC curve (test window)"
):
    """One ROC curve per model on the same rows (e.g. champion vs challenger on the holdout)."""
    return _roc_plot({label: ranking_curves(y_true, p) for label, p in scores.items()}, title)


def test_window_figures(evaluation: ScoreEvaluation, label: str) -> dict[str, object]:
    """ROC, PR and calibration figures of one model's test-window scores, by file name.

    Drawn from :func:`~flashsale_ml.training.metrics.evaluate_scores`, so the scores of a
    test window (millions of rows) are sorted once for its metrics and all three figures.
    """
    return {
        "roc_test.png": _roc_plot({label: evaluation.curves}, "ROC curve (test window)"),
        "pr_test.png": _pr_plot(evaluation.curves, label, evaluation.metrics["positive_rate"]),
        "calibration_test.png": calibration_figure(evaluation.calibration, label),
    }


def _roc_plot(curves: Mapping[str, RankingCurves], title: str):
    fig, ax = _figure(title)
    for label, curve in curves.items():
        ax.plot(
            curve.false_positive_rate,
            curve.true_positive_rate,
            label=f"{label} (AUC {curve.auc:.3f})",
        )
    ax.plot([0, 1], [0, 1], "--", color="grey", label="chance")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(loc="lower right")
    return fig


def _pr_plot(curves: RankingCurves, label: str, base_rate: float):
    fig, ax = _figure("Precision-recall curve (test window)")
    ax.plot(curves.recall, curves.precision, label=f"{label} (AP {curves.average_precision:.3f})")
    ax.axhline(base_rate, ls="--", color="grey", label="base rate")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.legend(loc="upper right")
    return fig


def calibration_figure(bins: CalibrationBins, label: str = "model"):
    mean_p, mean_y = bins.mean_prediction, bins.observed_rate
    fig, ax = _figure("Calibration (equal-mass bins)")
    hi = max(mean_p.max(), mean_y.max()) * 1.05
    ax.plot([0, hi], [0, hi], "--", color="grey", label="perfect")
    ax.plot(mean_p, mean_y, "o-", label=label)
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed purchase rate")
    ax.legend(loc="upper left")
    return fig


def importance_figure(names: Sequence[str], gains: ArrayLike, top: int = 25):
    gains = np.asarray(gains, dtype=float)
    order = np.argsort(gains)[-top:]
    fig, ax = _figure("Feature importance (total gain)")
    fig.set_size_inches(6.5, max(3.0, 0.28 * len(order) + 1))
    ax.barh([names[i] for i in order], gains[order])
    ax.set_xlabel("total gain")
    fig.tight_layout()
    return fig


def curves_figure(history: Mapping[str, Sequence[float]], title: str, ylabel: str):
    fig, ax = _figure(title)
    for name, values in history.items():
        ax.plot(range(1, len(values) + 1), values, label=name)
    ax.set_xlabel("iteration / epoch")
    ax.set_ylabel(ylabel)
    ax.legend()
    return fig


def bootstrap_figure(
    distribution: ArrayLike, point: float, low: float, high: float, metric: str, margin: float
):
    """Paired bootstrap distribution of challenger − champion with its interval and zero."""
    fig, ax = _figure(f"Challenger − champion: {metric} (paired bootstrap)")
    ax.hist(np.asarray(distribution), bins=40, color="#4c72b0", alpha=0.8)
    ax.axvline(0.0, color="black", lw=1, label="no difference")
    if margin:
        ax.axvline(margin, color="grey", ls=":", label=f"margin {margin:g}")
    ax.axvline(point, color="#c44e52", label=f"observed {point:+.4f}")
    ax.axvspan(low, high, color="#c44e52", alpha=0.15, label=f"interval {low:+.4f}..{high:+.4f}")
    ax.set_xlabel(f"{metric} gain of the challenger (positive = better)")
    ax.set_ylabel("replicates")
    ax.legend(loc="upper left", fontsize=8)
    return fig
