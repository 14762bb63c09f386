"""Figures of a demand run, logged to MLflow under ``plots/``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def forecast_vs_actual_figure(
    actual: np.ndarray,
    quantiles: np.ndarray,
    sold_out: np.ndarray,
    title: str,
    sold_out_label: str = "demand (sold out, corrected)",
):
    """Each SKU of the test sale, sorted by P50: its P10–P90 interval, its P50 and the demand
    it had (sold-out SKUs marked: their demand is the censoring-corrected estimate)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = np.argsort(quantiles[:, 1], kind="stable")
    x = np.arange(len(order))
    q = quantiles[order]
    a = np.asarray(actual, dtype=float)[order]
    out = np.asarray(sold_out, dtype=bool)[order]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.fill_between(x, q[:, 0], q[:, 2], color="tab:blue", alpha=0.2, label="P10–P90", step="mid")
    ax.plot(x, q[:, 1], color="tab:blue", lw=1.2, label="P50")
    ax.scatter(x[~out], a[~out], s=9, color="black", label="demand (sold)", zorder=3)
    ax.scatter(x[out], a[out], s=22, marker="x", color="tab:red", label=sold_out_label)
    inside = float(np.mean((a >= q[:, 0]) & (a <= q[:, 2]))) if len(a) else float("nan")
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_xlabel("SKUs of the test sale, by P50")
    ax.set_ylabel("units in the sale window")
    ax.set_title(f"{title}: forecast against demand (P10–P90 coverage {inside:.0%})")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def what_if_figure(what_if: pd.DataFrame, labels: Sequence[str], title: str):
    """P50 and P10–P90 against the discount depth, one panel per SKU (up to six)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(what_if["row"].unique())[:6]
    fig, axes = plt.subplots(2, 3, figsize=(11, 6), squeeze=False)
    for ax, row in zip(axes.ravel(), rows, strict=False):
        part = what_if[what_if["row"] == row].sort_values("discount_depth")
        ax.fill_between(part["discount_depth"], part["p10"], part["p90"], alpha=0.25)
        ax.plot(part["discount_depth"], part["p50"], marker="o", ms=3)
        ax.set_title(str(labels[row]), fontsize=9)
        ax.set_xlabel("discount depth")
        ax.set_ylabel("units")
    for ax in axes.ravel()[len(rows) :]:
        ax.axis("off")
    fig.suptitle(f"{title}: demand against discount (never falls as the depth grows)")
    fig.tight_layout()
    return fig
