"""Figures of an uplift model's test campaign: Qini curves per arm, decile calibration."""

from __future__ import annotations

import numpy as np
import pandas as pd

from flashsale_ml.training.plots import _figure


def _arm_blocks(holdout: pd.DataFrame, scores: np.ndarray, label: str):
    """Per arm with treated and control rows: (arm, y, treated, scores); and the arms without
    both (a targeted campaign's plan may give a promotion to a few users and hold none out)."""
    blocks, unmeasured = [], []
    for arm in sorted(holdout["scored_arm"].unique()):
        mask = (holdout["scored_arm"] == arm).to_numpy()
        y = holdout.loc[mask, label].to_numpy(dtype=float)
        t = holdout.loc[mask, "treated"].to_numpy(dtype=float)
        if 0 < t.sum() < len(t):
            blocks.append((arm, y, t, scores[mask]))
        else:
            unmeasured.append(f"{arm} ({int(t.sum())} treated, {int(len(t) - t.sum())} control)")
    return blocks, unmeasured


def _note_unmeasured(ax, unmeasured: list[str]) -> None:
    if unmeasured:
        ax.text(
            0.01,
            0.99,
            "not measurable (needs treated and control users): " + ", ".join(unmeasured),
            transform=ax.transAxes,
            fontsize=7,
            va="top",
        )


def qini_figure(holdout: pd.DataFrame, scores: np.ndarray, label: str, model: str):
    """The Qini curve of each promotion arm (its treated users against control), with the
    random line, on the test campaign."""
    from flashsale_ml.errors import DataError
    from flashsale_ml.evaluation.uplift import qini_coefficient, qini_curve

    fig, ax = _figure(f"{model}: Qini curves on the test campaign")
    blocks, unmeasured = _arm_blocks(holdout, scores, label)
    for arm, y, t, s in blocks:
        curve = qini_curve(y, t, s)
        try:
            normalized = f"normalized Qini {qini_coefficient(y, t, s):+.3f}"
        except DataError:
            normalized = "normalized Qini undefined: no buyers"
        line = ax.plot(curve.fraction, curve.qini, label=f"{arm} ({normalized})")[0]
        ax.plot(curve.fraction, curve.random, linestyle=":", color=line.get_color(), alpha=0.7)
    _note_unmeasured(ax, unmeasured)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xlabel("share of users targeted (highest predicted uplift first)")
    ax.set_ylabel("incremental buyers (Qini); dotted: random")
    ax.legend(fontsize=8)
    return fig


def uplift_calibration_figure(holdout: pd.DataFrame, scores: np.ndarray, label: str, model: str):
    """Mean predicted against realized uplift per decile of predicted uplift, per arm."""
    from flashsale_ml.evaluation.uplift import uplift_decile_calibration

    fig, ax = _figure(f"{model}: predicted vs realized uplift (deciles)")
    lows, highs = [], []
    blocks, unmeasured = _arm_blocks(holdout, scores, label)
    for arm, y, t, s in blocks:
        bins = uplift_decile_calibration(y, t, s)
        ax.plot(bins.mean_predicted, bins.realized_uplift, marker="o", label=arm)
        lows.append(np.nanmin([bins.mean_predicted.min(), np.nanmin(bins.realized_uplift)]))
        highs.append(np.nanmax([bins.mean_predicted.max(), np.nanmax(bins.realized_uplift)]))
    _note_unmeasured(ax, unmeasured)
    if lows:
        low, high = min(lows), max(highs)
        ax.plot([low, high], [low, high], linestyle="--", color="grey", label="perfect")
    ax.set_xlabel("mean predicted uplift")
    ax.set_ylabel("realized uplift\n(treated rate − control rate)")
    ax.legend(fontsize=8)
    return fig


def cost_value_figure(curve, model: str, costs: dict[str, float]):
    """Incremental buyers against spend when each user gets the arm with the best predicted
    uplift per unit of cost (the budgeted allocation a campaign plan makes)."""
    fig, ax = _figure(f"{model}: incremental buyers against promotion spend")
    ax.plot(curve.spend, curve.value, label="best arm per unit of cost, by predicted uplift")
    ax.plot(curve.spend, curve.random_value, linestyle=":", label="same users, random order")
    ax.axhline(0, color="black", linewidth=0.8)
    if len(set(costs.values())) == 1:
        ax.set_xlabel(f"spend ({next(iter(costs.values())):g} per treated user, every arm)")
    else:
        ax.set_xlabel("spend (" + ", ".join(f"{a} {c:g}" for a, c in costs.items()) + ")")
    ax.set_ylabel("estimated incremental buyers")
    ax.legend(fontsize=8)
    return fig
