"""Metrics of quantile demand forecasts: units per SKU in a sale as P10, P50 and P90.

A demand model predicts, for each SKU of a sale, quantiles of the units it will sell (levels
:data:`QUANTILE_LEVELS`). Each metric here validates its inputs, then computes in pure numpy:

* :func:`wape` and :func:`bias`: accuracy and sign of a point forecast (the P50), both as a
  share of the units actually sold, so SKUs weigh by their volume;
* :func:`pinball_loss` and :func:`mean_pinball_loss`: the quantile (pinball) loss at one level
  and averaged over levels, a strictly consistent score for quantiles;
* :func:`interval_coverage`: the share of actuals inside a forecast interval (P10–P90);
* :func:`weighted_scaled_pinball_loss`: the WSPL of the M5 uncertainty competition, bottom
  level only, scale-free across series;
* :func:`demand_metrics`: the dictionary a demand model is reported and gated on.

The promotion gates score a holdout in which every (campaign, item) row is repeated once per
quantile level. The paired bootstrap carries one float label and one score per row, so the
label carries the level too (:func:`encode_quantile_labels`); :data:`PINBALL_STATISTIC` is the
pinball loss as a :class:`~flashsale_ml.evaluation.bootstrap.RowMean` on such rows, and
:func:`expanded_demand_metrics` turns them back into :func:`demand_metrics`.

Actuals are demand: finite and non-negative. Forecasts need only be finite (a negative
quantile is a poor forecast, not an invalid one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from flashsale_ml.evaluation.bootstrap import RowMean, check_finite_rows

QUANTILE_LEVELS: tuple[float, ...] = (0.1, 0.5, 0.9)
"""The quantile levels a demand model forecasts: P10, P50 and P90."""

QUANTILE_LABEL_STRIDE: float = 1e9
"""Label of an expanded holdout row: ``level_index · QUANTILE_LABEL_STRIDE + demand``."""

_WEIGHT_WINDOW = 28
"""History points per series whose sales weigh it in the WSPL (M5: the last 28 days)."""


# --- validation -------------------------------------------------------------------------------


def _check_actual(actual: ArrayLike, name: str = "actual") -> np.ndarray:
    """Observed demand as a 1-d float array: non-empty, finite and non-negative.

    Raises:
        ValueError: not 1-d, empty, NaN or infinite, or negative.
    """
    a = np.asarray(actual, dtype=float)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-d (one value per row), got shape {a.shape}")
    if len(a) == 0:
        raise ValueError(f"cannot evaluate an empty set ({name} has no rows)")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} must be finite (no NaN or infinity)")
    if (a < 0).any():
        raise ValueError(f"{name} must be non-negative (no negative demand)")
    return a


def _check_forecast(forecast: ArrayLike, rows: int, name: str) -> np.ndarray:
    """A 1-d finite forecast with one value per row of the actuals.

    Raises:
        ValueError: the shape is not ``(rows,)``, or a value is NaN or infinite.
    """
    f = np.asarray(forecast, dtype=float)
    if f.shape != (rows,):
        raise ValueError(
            f"{name} must be 1-d with one value per row of actual ({rows}), got shape {f.shape}"
        )
    if not np.isfinite(f).all():
        raise ValueError(f"{name} must be finite (no NaN or infinity)")
    return f


def _check_level(level: Any, name: str = "level") -> float:
    """A quantile level strictly between 0 and 1.

    Raises:
        ValueError: not a real number, or outside the open interval (0, 1).
    """
    if isinstance(level, bool) or not isinstance(level, int | float | np.integer | np.floating):
        raise ValueError(f"{name} must be a number in (0, 1), got {level!r}")
    if not 0.0 < float(level) < 1.0:
        raise ValueError(f"{name} must lie strictly between 0 and 1, got {level!r}")
    return float(level)


def _check_levels(levels: Sequence[float] | ArrayLike) -> np.ndarray:
    """Quantile levels: non-empty, each in (0, 1), strictly increasing.

    Raises:
        ValueError: not 1-d, empty, a level outside (0, 1), or not strictly increasing.
    """
    lv = np.asarray(levels, dtype=float)
    if lv.ndim != 1 or len(lv) == 0:
        raise ValueError(f"levels must be a non-empty 1-d sequence, got shape {lv.shape}")
    if not ((lv > 0.0) & (lv < 1.0)).all():
        raise ValueError(f"levels must lie strictly between 0 and 1, got {lv.tolist()}")
    if (np.diff(lv) <= 0).any():
        raise ValueError(f"levels must be strictly increasing, got {lv.tolist()}")
    return lv


def _check_quantiles(quantiles: ArrayLike, rows: int, n_levels: int) -> np.ndarray:
    """Quantile forecasts as a finite ``(rows, n_levels)`` float array.

    Raises:
        ValueError: the shape is not ``(rows, n_levels)``, or a value is NaN or infinite.
    """
    q = np.asarray(quantiles, dtype=float)
    if q.shape != (rows, n_levels):
        raise ValueError(
            f"quantiles must be 2-d of shape (rows of actual, levels) = ({rows}, {n_levels}), "
            f"got {q.shape}"
        )
    if not np.isfinite(q).all():
        raise ValueError("quantiles must be finite (no NaN or infinity)")
    return q


def _positive_total(a: np.ndarray, metric: str) -> float:
    total = float(a.sum())
    if not total > 0:
        raise ValueError(
            f"{metric} is undefined when actual sums to 0 (no demand to divide by); "
            "every actual is 0"
        )
    return total


# --- point and quantile metrics ---------------------------------------------------------------


def wape(actual: ArrayLike, forecast: ArrayLike) -> float:
    """Weighted absolute percentage error: ``Σ |a − f| / Σ a``.

    The mean absolute error divided by mean demand (the MAD/mean ratio), so a SKU weighs by its
    volume and zero-demand SKUs do not make it infinite as the MAPE does. 0 for a perfect
    forecast; 1 for forecasting 0 everywhere.

    Args:
        actual: observed demand per row, finite and ≥ 0.
        forecast: point forecast per row (the P50), finite.

    Returns:
        The WAPE, a share (0.25 = absolute errors sum to a quarter of demand).

    Raises:
        ValueError: ``actual`` not 1-d, empty, NaN or infinite, or negative; ``forecast`` not
            of the same shape or not finite; or ``actual`` summing to 0.

    References:
        Kolassa & Schütz (2007), "Advantages of the MAD/MEAN ratio over the MAPE", Foresight 6;
        Hyndman & Koehler (2006), "Another look at measures of forecast accuracy", IJF 22(4).
    """
    a = _check_actual(actual)
    f = _check_forecast(forecast, len(a), "forecast")
    return float(np.abs(a - f).sum() / _positive_total(a, "wape"))


def bias(actual: ArrayLike, forecast: ArrayLike) -> float:
    """Relative bias of a point forecast: ``(Σ f − Σ a) / Σ a``.

    Positive means over-forecast (more units predicted than sold), negative under-forecast;
    errors of opposite sign cancel, so read it next to :func:`wape`.

    Args:
        actual: observed demand per row, finite and ≥ 0.
        forecast: point forecast per row (the P50), finite.

    Returns:
        The bias as a share of total demand (0.1 = 10 % over-forecast).

    Raises:
        ValueError: as :func:`wape`.

    References:
        Hyndman & Athanasopoulos (2021), *Forecasting: Principles and Practice*, 3rd ed.,
        OTexts, §5.8 (forecast errors and their scale).
    """
    a = _check_actual(actual)
    f = _check_forecast(forecast, len(a), "forecast")
    total = _positive_total(a, "bias")
    return float((f.sum() - total) / total)


def _pinball_rows(a: np.ndarray, f: np.ndarray, level: np.ndarray | float) -> np.ndarray:
    """Per-row pinball loss ``max(q (a − f), (q − 1)(a − f))`` (``level`` broadcasts)."""
    residual = a - f
    return np.maximum(level * residual, (level - 1.0) * residual)


def pinball_loss(actual: ArrayLike, forecast: ArrayLike, level: float) -> float:
    """Mean pinball (quantile) loss of a forecast of the ``level`` quantile.

    Per row ``ρ_q(a − f) = q · (a − f)`` if the forecast is under the actual and
    ``(1 − q) · (f − a)`` if over: under-forecasting a P90 costs 9 times as much per unit as
    over-forecasting it. The expected loss is minimized by the true q-quantile (the score is
    strictly consistent for it), so a lower value is a better quantile forecast. At
    ``level = 0.5`` it is half the mean absolute error. Equals scikit-learn's
    ``mean_pinball_loss(actual, forecast, alpha=level)``.

    Args:
        actual: observed demand per row, finite and ≥ 0.
        forecast: forecast of the ``level`` quantile per row, finite.
        level: the quantile level, strictly between 0 and 1.

    Returns:
        The mean pinball loss, in units of demand.

    Raises:
        ValueError: ``actual`` not 1-d, empty, NaN or infinite, or negative; ``forecast`` not
            of the same shape or not finite; or ``level`` not in (0, 1).

    References:
        Koenker & Bassett (1978), "Regression Quantiles", Econometrica 46(1); Gneiting (2011),
        "Quantiles as optimal point forecasts", IJF 27(2).
    """
    a = _check_actual(actual)
    f = _check_forecast(forecast, len(a), "forecast")
    q = _check_level(level)
    return float(_pinball_rows(a, f, q).mean())


def mean_pinball_loss(
    actual: ArrayLike, quantiles: ArrayLike, levels: Sequence[float] = QUANTILE_LEVELS
) -> float:
    """Pinball loss averaged over the rows and the quantile levels.

    ``(1 / K) Σ_k pinball_loss(actual, quantiles[:, k], levels[k])``: a discrete approximation
    of the continuous ranked probability score (CRPS / 2 as the levels become dense).

    Args:
        actual: observed demand per row, finite and ≥ 0.
        quantiles: forecasts of shape ``(rows, len(levels))``, column k for ``levels[k]``.
        levels: the quantile levels, strictly increasing in (0, 1).

    Returns:
        The mean pinball loss, in units of demand.

    Raises:
        ValueError: ``actual`` as :func:`pinball_loss`; ``levels`` empty, outside (0, 1) or
            not strictly increasing; ``quantiles`` not of shape ``(rows, len(levels))`` or not
            finite.

    References:
        Gneiting & Raftery (2007), "Strictly Proper Scoring Rules, Prediction, and
        Estimation", JASA 102(477); Koenker & Bassett (1978), "Regression Quantiles",
        Econometrica 46(1).
    """
    a = _check_actual(actual)
    lv = _check_levels(levels)
    q = _check_quantiles(quantiles, len(a), len(lv))
    return float(_pinball_rows(a[:, None], q, lv[None, :]).mean())


def interval_coverage(actual: ArrayLike, lower: ArrayLike, upper: ArrayLike) -> float:
    """Share of actuals inside the forecast interval ``[lower, upper]``, bounds included.

    For a calibrated P10–P90 interval the expected coverage is 0.8. Integer demand often
    equals a bound, hence the closed interval. A row whose quantiles cross (``lower`` above
    ``upper``) has an empty interval and counts as not covered; :func:`demand_metrics` reports
    such rows as ``crossing_share``.

    Args:
        actual: observed demand per row, finite and ≥ 0.
        lower: lower bound per row (e.g. the P10), finite.
        upper: upper bound per row (e.g. the P90), finite.

    Returns:
        The covered share of rows, in [0, 1].

    Raises:
        ValueError: ``actual`` not 1-d, empty, NaN or infinite, or negative; ``lower`` or
            ``upper`` not of its shape or not finite.

    References:
        Gneiting, Balabdaoui & Raftery (2007), "Probabilistic forecasts, calibration and
        sharpness", JRSS B 69(2).
    """
    a = _check_actual(actual)
    lo = _check_forecast(lower, len(a), "lower")
    hi = _check_forecast(upper, len(a), "upper")
    return float(((lo <= a) & (a <= hi)).mean())


# --- WSPL (M5 uncertainty) --------------------------------------------------------------------


def _group_history(
    history_actual: ArrayLike,
    history_series_ids: ArrayLike,
    history_prices: ArrayLike | None,
) -> dict[Any, tuple[np.ndarray, np.ndarray | None]]:
    """History values (and prices) per series id, each in its input (time) order."""
    h = _check_actual(history_actual, "history_actual")
    h_ids = np.asarray(history_series_ids)
    if h_ids.shape != h.shape:
        raise ValueError(
            "history_series_ids must be 1-d with one id per value of history_actual "
            f"({len(h)}), got shape {h_ids.shape}"
        )
    prices = None
    if history_prices is not None:
        prices = np.asarray(history_prices, dtype=float)
        if prices.shape != h.shape:
            raise ValueError(
                "history_prices must be 1-d with one price per value of history_actual "
                f"({len(h)}), got shape {prices.shape}"
            )
        if not np.isfinite(prices).all() or (prices < 0).any():
            raise ValueError("history_prices must be finite and non-negative")
    unique, inverse = np.unique(h_ids, return_inverse=True)
    order = np.argsort(inverse, kind="stable")  # stable: each series keeps its time order
    bounds = np.cumsum(np.bincount(inverse, minlength=len(unique)))[:-1]
    values = np.split(h[order], bounds)
    price_parts = np.split(prices[order], bounds) if prices is not None else [None] * len(values)
    return {key: (v, p) for key, v, p in zip(unique.tolist(), values, price_parts, strict=True)}


def _m5_scale(history: np.ndarray) -> float:
    """Mean absolute one-step change from the first non-zero observation on; 0 where there is
    no non-zero observation or fewer than two points from it."""
    nonzero = np.flatnonzero(history != 0)
    if len(nonzero) == 0:
        return 0.0
    tail = history[nonzero[0] :]
    if len(tail) < 2:
        return 0.0
    return float(np.abs(np.diff(tail)).mean())


def weighted_scaled_pinball_loss(
    actual: ArrayLike,
    quantiles: ArrayLike,
    levels: Sequence[float],
    series_ids: ArrayLike,
    history_actual: ArrayLike,
    history_series_ids: ArrayLike,
    history_prices: ArrayLike | None = None,
    weights: Mapping[Any, float] | None = None,
) -> float:
    """Weighted scaled pinball loss (WSPL) of the M5 uncertainty competition, bottom level.

    For each series i (a SKU) among ``series_ids``:

    * ``loss_i`` is the pinball loss averaged over its forecast points and the levels;
    * ``scale_i`` is the mean absolute one-step change ``mean |y_t − y_{t−1}|`` of its
      history from its first non-zero observation on (the in-sample error of the naive
      forecast, as in the MASE), so ``SPL_i = loss_i / scale_i`` is free of the series' units;
    * ``w_i`` is its share of dollar sales (units × price) over the last 28 points of its
      history, or of units when ``history_prices`` is None; an explicit ``weights`` mapping
      replaces these. Weights are normalized to sum to 1 over the series evaluated.

    ``WSPL = Σ_i w_i · SPL_i``. Only the bottom level is computed: the M5 also aggregates the
    series into 11 higher levels (stores, departments, states, ...) and averages the 12 levels'
    WSPLs; no aggregation happens here. The last 28 points are taken per series, so they are
    the M5's last 28 days when every history ends on the same date at a daily grain.

    A series whose scale is 0 has no defined SPL: its history is all zeros, has a single point
    from its first non-zero one, or is constant from there. Such a series is left out and the
    weights of the others are renormalized (the M5 never met this case, as its series were
    selected to have sales). Series in the history but not in ``series_ids`` are ignored.

    Args:
        actual: observed demand per forecast row, finite and ≥ 0.
        quantiles: forecasts of shape ``(rows, len(levels))``, column k for ``levels[k]``.
        levels: the quantile levels, strictly increasing in (0, 1) (M5: 9 levels).
        series_ids: the series of each forecast row (hashable, comparable ids: str or int).
        history_actual: in-sample demand, finite and ≥ 0, each series' values in time order
            (series may be interleaved).
        history_series_ids: the series of each history value.
        history_prices: the price per unit of each history value (finite, ≥ 0), for dollar
            weights; None weighs by units.
        weights: weight per series id (finite, ≥ 0), overriding the sales weights; must cover
            every id in ``series_ids``; extra ids are ignored.

    Returns:
        The WSPL: 0 for a perfect forecast, about the loss relative to the naive forecast's
        in-sample mean absolute error otherwise.

    Raises:
        ValueError: ``actual`` or ``quantiles`` or ``levels`` as :func:`mean_pinball_loss`;
            ``series_ids`` not one per row; history arrays not aligned, NaN or infinite, or
            negative; a forecast series with no history; ``weights`` missing a series, or a
            weight NaN, infinite or negative; every series with scale 0; or the weights of the
            series evaluated summing to 0.

    References:
        Makridakis, Spiliotis & Assimakopoulos (2022), "The M5 uncertainty competition:
        Results, findings and conclusions", IJF 38(4); Hyndman & Koehler (2006), "Another look
        at measures of forecast accuracy", IJF 22(4) (the scaling).
    """
    a = _check_actual(actual)
    lv = _check_levels(levels)
    q = _check_quantiles(quantiles, len(a), len(lv))
    ids = np.asarray(series_ids)
    if ids.shape != a.shape:
        raise ValueError(
            f"series_ids must be 1-d with one id per row of actual ({len(a)}), "
            f"got shape {ids.shape}"
        )
    history = _group_history(history_actual, history_series_ids, history_prices)

    unique, inverse = np.unique(ids, return_inverse=True)
    keys = unique.tolist()
    missing = [key for key in keys if key not in history]
    if missing:
        raise ValueError(f"series without history (no scale): {missing[:10]}")
    if weights is not None:
        absent = [key for key in keys if key not in weights]
        if absent:
            raise ValueError(f"weights lacks series {absent[:10]}")
        raw = np.array([weights[key] for key in keys], dtype=float)
        if not np.isfinite(raw).all() or (raw < 0).any():
            raise ValueError("weights must be finite and non-negative")
    else:
        raw = np.empty(len(keys))
        for i, key in enumerate(keys):
            values, prices = history[key]
            recent = values[-_WEIGHT_WINDOW:]
            raw[i] = (
                (recent * prices[-_WEIGHT_WINDOW:]).sum() if prices is not None else recent.sum()
            )

    scales = np.array([_m5_scale(history[key][0]) for key in keys])
    kept = scales > 0
    if not kept.any():
        raise ValueError(
            "every series has scale 0 (history all zero, or constant from its first non-zero "
            "value): the scaled pinball loss is undefined"
        )
    kept_weight = raw[kept].sum()
    if not kept_weight > 0:
        raise ValueError(
            "the weights of the series evaluated sum to 0 (no sales in the weighting window "
            "or all-zero weights)"
        )
    row_loss = _pinball_rows(a[:, None], q, lv[None, :]).mean(axis=1)
    series_loss = np.bincount(inverse, weights=row_loss) / np.bincount(inverse)
    spl = series_loss[kept] / scales[kept]
    return float(raw[kept] @ spl / kept_weight)


# --- the dictionary of a demand model ---------------------------------------------------------


def _level_key(level: float) -> str:
    return f"p{level * 100:g}"


def demand_metrics(
    actual: ArrayLike, quantiles: ArrayLike, levels: Sequence[float] = QUANTILE_LEVELS
) -> dict[str, float]:
    """The metrics a demand model is reported and gated on.

    Keys (shown for the default levels 0.1, 0.5, 0.9):

    * ``wape_p50``, ``bias_p50``: :func:`wape` and :func:`bias` of the median forecast;
    * ``pinball``: :func:`mean_pinball_loss` over all levels;
    * ``pinball_p10``, ``pinball_p50``, ``pinball_p90``: :func:`pinball_loss` per level
      (``pinball_p<100·level>`` for other levels);
    * ``coverage_p10_p90``: :func:`interval_coverage` between the first and the last level;
    * ``crossing_share``: share of rows whose quantiles are not non-decreasing in the level
      (a valid forecast has none; a crossing row also fails coverage).

    Args:
        actual: observed demand per row, finite and ≥ 0.
        quantiles: forecasts of shape ``(rows, len(levels))``, column k for ``levels[k]``.
        levels: at least two strictly increasing levels in (0, 1), one of them 0.5.

    Returns:
        The metrics by name, as floats.

    Raises:
        ValueError: as :func:`mean_pinball_loss`; fewer than two levels or none equal to 0.5;
            or ``actual`` summing to 0 (the WAPE and bias are undefined).

    References:
        Gneiting & Raftery (2007), "Strictly Proper Scoring Rules, Prediction, and
        Estimation", JASA 102(477); Chernozhukov, Fernández-Val & Galichon (2010), "Quantile
        and probability curves without crossing", Econometrica 78(3).
    """
    a = _check_actual(actual)
    lv = _check_levels(levels)
    q = _check_quantiles(quantiles, len(a), len(lv))
    if len(lv) < 2:
        raise ValueError(
            f"levels must hold at least two levels (the coverage interval), got {lv.tolist()}"
        )
    median = np.flatnonzero(np.isclose(lv, 0.5, rtol=0.0, atol=1e-12))
    if len(median) == 0:
        raise ValueError(f"levels must include 0.5 (for wape_p50 and bias_p50), got {lv.tolist()}")
    keys = [_level_key(level) for level in lv]
    if len(set(keys)) < len(keys):
        raise ValueError(f"levels must differ in their percent names, got {keys}")
    p50 = q[:, median[0]]
    per_level = _pinball_rows(a[:, None], q, lv[None, :]).mean(axis=0)
    metrics = {
        "wape_p50": wape(a, p50),
        "bias_p50": bias(a, p50),
        "pinball": float(per_level.mean()),
    }
    metrics.update({f"pinball_{key}": float(v) for key, v in zip(keys, per_level, strict=True)})
    metrics[f"coverage_{keys[0]}_{keys[-1]}"] = interval_coverage(a, q[:, 0], q[:, -1])
    metrics["crossing_share"] = float((np.diff(q, axis=1) < 0).any(axis=1).mean())
    return metrics


# --- expanded holdouts: one row per (item, level) ---------------------------------------------


def encode_quantile_labels(demand: ArrayLike, level_index: ArrayLike) -> np.ndarray:
    """Labels of expanded holdout rows: ``level_index · QUANTILE_LABEL_STRIDE + demand``.

    The paired bootstrap carries one float label per row; this puts the row's quantile level
    (its index in :data:`QUANTILE_LEVELS`) into it. Integer demand round-trips exactly;
    fractional demand (corrected for stock-outs) comes back rounded to the float spacing at
    the label's size, about 2.4e-7 units at level index 2.

    Args:
        demand: observed demand per row, finite, ≥ 0 and below the stride (1e9).
        level_index: the level's index per row (or one for all rows), a non-negative integer.

    Returns:
        The float labels, one per row.

    Raises:
        ValueError: ``demand`` not 1-d or empty, NaN or infinite, negative or not below the
            stride; ``level_index`` not broadcastable to it or not non-negative integers.
    """
    d = _check_actual(demand, "demanded units")
    if (d >= QUANTILE_LABEL_STRIDE).any():
        raise ValueError(
            f"demand must be below QUANTILE_LABEL_STRIDE ({QUANTILE_LABEL_STRIDE:g}) to be "
            "encoded with its level"
        )
    raw = np.asarray(level_index)
    if raw.dtype == bool or not np.issubdtype(raw.dtype, np.number):
        raise ValueError(f"level_index must hold non-negative integers, got dtype {raw.dtype}")
    index = raw.astype(float)
    if index.ndim > 1 or (index.ndim == 1 and index.shape != d.shape):
        raise ValueError(
            f"level_index must be one integer or one per row of demand ({len(d)}), "
            f"got shape {index.shape}"
        )
    if not np.isfinite(index).all() or (index < 0).any() or (index != np.round(index)).any():
        raise ValueError("level_index must hold non-negative integers")
    labels = np.broadcast_to(index, d.shape) * QUANTILE_LABEL_STRIDE + d
    if (np.floor(labels / QUANTILE_LABEL_STRIDE) != index).any():  # rounded onto the next level
        raise ValueError("demand too close to QUANTILE_LABEL_STRIDE to be encoded exactly")
    return labels


def decode_quantile_labels(labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Demand and level index of labels made by :func:`encode_quantile_labels`.

    Args:
        labels: the encoded labels, finite and ≥ 0.

    Returns:
        ``(demand, level_index)``: float demand and integer level indices, one per label.

    Raises:
        ValueError: labels not 1-d or empty, NaN or infinite, or negative.
    """
    codes = _check_actual(labels, "labels")
    index = np.floor(codes / QUANTILE_LABEL_STRIDE)
    return codes - index * QUANTILE_LABEL_STRIDE, index.astype(np.int64)


def _decode_known_levels(labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    demand, index = decode_quantile_labels(labels)
    if (index >= len(QUANTILE_LEVELS)).any():
        raise ValueError(
            f"labels encode a level index of {int(index.max())}, but QUANTILE_LEVELS has only "
            f"{len(QUANTILE_LEVELS)} levels (indices 0 to {len(QUANTILE_LEVELS) - 1})"
        )
    return demand, index


def _check_quantile_rows(labels: np.ndarray, scores: np.ndarray) -> None:
    """Finite aligned rows whose labels decode to demand at a level of QUANTILE_LEVELS."""
    check_finite_rows(labels, scores)
    _decode_known_levels(labels)


def _pinball_of_expanded_rows(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    demand, index = _decode_known_levels(labels)
    level = np.asarray(QUANTILE_LEVELS, dtype=float)[index]
    return _pinball_rows(demand, np.asarray(scores, dtype=float), level)


PINBALL_STATISTIC = RowMean(
    "pinball",
    _pinball_of_expanded_rows,
    higher_is_better=False,
    check=_check_quantile_rows,
)
"""Pinball loss of expanded holdout rows for the paired bootstrap: each row's label encodes
its level and demand (:func:`encode_quantile_labels`), its score is the forecast at that level.
With every level equally represented the mean equals ``demand_metrics(...)["pinball"]``."""


def expanded_demand_metrics(labels: ArrayLike, scores: ArrayLike) -> dict[str, float]:
    """:func:`demand_metrics` of an expanded holdout (one row per item and quantile level).

    The rows of each level are taken in their order, so they must list the items in the same
    order for every level (level-major or item-major layouts both work).

    Args:
        labels: :func:`encode_quantile_labels` of each row's demand and level index in
            :data:`QUANTILE_LEVELS`.
        scores: each row's forecast at its level.

    Returns:
        :func:`demand_metrics` with the default levels.

    Raises:
        ValueError: labels and scores not 1-d of equal, non-zero length or not finite; a label
            negative or of a level index outside :data:`QUANTILE_LEVELS`; the levels not
            equally represented; the demand of the k-th row differing between levels (items
            not in the same order); or as :func:`demand_metrics`.
    """
    y = np.asarray(labels, dtype=float)
    s = np.asarray(scores, dtype=float)
    check_finite_rows(y, s)
    demand, index = _decode_known_levels(y)
    n_levels = len(QUANTILE_LEVELS)
    counts = np.bincount(index, minlength=n_levels)
    if (counts != counts[0]).any():
        raise ValueError(
            f"every quantile level must have the same number of rows, got {counts.tolist()} "
            f"rows for levels {list(QUANTILE_LEVELS)}"
        )
    rows = [np.flatnonzero(index == k) for k in range(n_levels)]
    demand_by_level = np.stack([demand[r] for r in rows], axis=1)
    tolerance = np.spacing(n_levels * QUANTILE_LABEL_STRIDE)  # rounding of the encoding
    if (np.abs(demand_by_level - demand_by_level[:, :1]) > tolerance).any():
        raise ValueError(
            "the demand of the k-th row differs between quantile levels: the rows of each "
            "level must list the items in the same order"
        )
    quantiles = np.stack([s[r] for r in rows], axis=1)
    return demand_metrics(demand_by_level[:, 0], quantiles, QUANTILE_LEVELS)
