"""Figures people would rather look at than read: ROC, PR, calibration, importance, loss."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

from flashsale_ml.evaluation.binary import (
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

    Drawn from :func:`~flashsale_ml.evaluation.binary.evaluate_scores`, so the scores of a
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


# MLflow's artifact preview shows a figure at its pixel size in a pane about 700 px high:
# taller figures are cut off there. At the figures' 110 dpi, 6 inches are 660 px.
MAX_FIGURE_HEIGHT_IN = 6.0
# Bars that fit that height with 9-point labels (about a quarter inch each).
MAX_IMPORTANCE_BARS = 20


def importance_figure(names: Sequence[str], gains: ArrayLike, top: int = MAX_IMPORTANCE_BARS):
    """Horizontal bars of the ``top`` features by total gain (at most
    :data:`MAX_IMPORTANCE_BARS`), the largest on top, each labelled with its share of the
    total gain; wide rather than tall, so it fits the preview (:data:`MAX_FIGURE_HEIGHT_IN`)."""
    gains = np.asarray(gains, dtype=float)
    if len(names) != len(gains):
        raise ValueError(f"{len(names)} feature names for {len(gains)} importances")
    shown = max(1, min(top, MAX_IMPORTANCE_BARS, len(gains)))
    # ascending, because barh draws the first bar at the bottom
    order = np.argsort(gains, kind="stable")[-shown:]
    title = "Feature importance (total gain)"
    if shown < len(gains):
        title += f": top {shown} of {len(gains)} features"
    fig, ax = _figure(title)
    fig.set_size_inches(8.0, min(MAX_FIGURE_HEIGHT_IN, 1.3 + 0.24 * shown))
    positions = np.arange(shown)
    bars = ax.barh(positions, gains[order], height=0.7, color="#4c72b0")
    ax.set_yticks(positions, [names[i] for i in order], fontsize=9)
    ax.set_ylim(-0.6, shown - 0.4)
    total = gains.sum()
    if total > 0:
        ax.bar_label(bars, [f"{g / total:.1%}" for g in gains[order]], padding=3, fontsize=8)
        ax.margins(x=0.1)
    ax.set_xlabel("total gain (bar labels: share of the total)")
    ax.tick_params(axis="x", labelsize=9)
    ax.grid(axis="y", visible=False)
    fig.tight_layout()
    return fig


def curves_figure(
    history: Mapping[str, Sequence[float]],
    title: str,
    ylabel: str,
    *,
    xlabel: str = "iteration / epoch",
    best: int | None = None,
    best_label: str = "best",
):
    """One line per curve, over rounds (epochs) 1, 2, ... of each; ``best`` (1-based) draws a
    vertical line at the round kept, labelled ``"<best_label> <best>"`` in the legend."""
    fig, ax = _figure(title)
    for name, values in history.items():
        rounds = np.arange(1, len(values) + 1)
        ax.plot(rounds, values, label=name, marker="o" if len(values) <= 30 else None)
    if best is not None:
        ax.axvline(best, color="#c44e52", ls="--", lw=1.2, label=f"{best_label} {best}")
    if any(len(values) <= 30 for values in history.values()):
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend()
    return fig


def lgbm_learning_curves_figure(history: Mapping[str, Sequence[float]], best_iteration: int):
    """The LightGBM trainer's log loss per boosting round (its ``history``): train on its
    fixed sample, validation on the whole validation campaign, over the same rounds (up to
    where early stopping gave up), and the best round early stopping kept."""
    return curves_figure(
        {
            "train (sample)": history["curve_train_binary_logloss"],
            "validation": history["curve_valid_binary_logloss"],
        },
        "LightGBM learning curves",
        "log loss",
        xlabel="boosting round",
        best=best_iteration,
        best_label="best iteration (early stopping):",
    )


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
