"""From demand quantiles to decisions: a discount depth and a stock quantity per SKU.

The demand kind forecasts, per SKU and flash-sale window, three quantiles of demand (P10, P50,
P90) at each candidate discount depth (the what-if frame of
:meth:`~flashsale_ml.models.demand.quantile.QuantileDemandModel.what_if`). Two decisions need
more than three numbers: the units a sale can sell, ``E[min(D, stock)]``, and a quantity at a
service level. Both come from one distribution built on the three quantiles.

**The distribution.** A quantile function ``Q(u)`` on ``[0, 1)``, piecewise linear through the
knots ``(0.1, P10)``, ``(0.5, P50)``, ``(0.9, P90)`` (a uniform density between knots):

* below 0.1, the P10-P50 line continued down to ``u = 0``, floored at 0
  (``Q(0) = max(0, P10 - (P50 - P10) / 4)``): demand is never negative;
* above 0.9, an exponential tail ``Q(u) = P90 + s · ln(0.1 / (1 - u))`` with
  ``s = (P90 - P50) / ln 5``: the spacing between an exponential distribution's median and its
  P90 is ``ln 5`` times its scale, so ``s`` is the scale of the exponential whose median-to-P90
  gap matches the forecast. Every level below 1 has a finite quantity, and the tail's mean
  beyond P90 is ``P90 + s`` (memoryless), so ``E[D]`` is finite.

``E[min(D, S)] = ∫₀¹ min(Q(u), S) du`` is then exact in closed form: a trapezoid (cut at the
crossing with ``S``) per linear segment, and ``0.1 · (min(S, P90) + s · (1 - exp(-(S -
P90)⁺ / s)))`` for the tail (an exponential's limited expectation).

**Its limits.** Three quantiles pin down three points and nothing else:

* the lower tail is a guess; it only matters when the stock is below P10;
* the exponential tail is lighter than heavy-tailed demand (lognormal, a negative binomial of
  large dispersion) and heavier than a Poisson of large mean: quantities above P90 (service
  levels above 0.9) and expected sales at stocks far above P90 are extrapolations;
* demand is treated as continuous: for SKUs selling a handful of units the expected sales are
  off by a fraction of a unit against any integer-valued distribution with the same quantiles;
* the quantiles are estimates: their own error is not carried into the decisions;
* ``Q`` is not monotone in P50 everywhere (a higher P50 lowers ``Q(0)`` and the tail scale), so
  quantiles that never fall with the depth do not by themselves promise expected sales that
  never fall with it; they do when the depth scales all three quantiles by one factor.

**The decisions.** :func:`depth_margins` prices every allowed depth of every SKU
(``price = list_price · (1 - depth)``, expected margin ``(price - cost) · E[min(D, stock)]``);
:func:`pick_depths` takes each SKU's best (ties to the smaller depth); :func:`recommend_depth`
does both. :func:`stock_plan` turns one set of quantiles per SKU (e.g. those at the
recommended depth, which :func:`recommend_depth` returns) into integer quantities at a service
level. The depth is chosen under the stock given to it (unlimited where unknown); the plan then
sizes the stock for that depth.

Pure: frames and arrays in, frames and arrays out; no I/O, no MLflow, no LightGBM.

References:
    Keefer, D. L. & Bodily, S. E. (1983). Three-point approximations for continuous random
    variables. Management Science 29(5), 595-609.
    Keelin, T. W. & Powley, B. W. (2011). Quantile-parameterized distributions. Decision
    Analysis 8(3), 206-219.
    Porteus, E. L. (2002). Foundations of Stochastic Inventory Theory, ch. 1 (the newsvendor).
    Stanford University Press.
    Silver, E. A., Pyke, D. F. & Thomas, D. J. (2017). Inventory and Production Management in
    Supply Chains, 4th ed., ch. 6 (expected units short, fill rate). CRC Press.
    Topkis, D. M. (1998). Supermodularity and Complementarity. Princeton University Press.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from pydantic import BaseModel, field_validator

from flashsale_ml.errors import DataError
from flashsale_ml.models.demand.quantile import DEPTH, QUANTILE_COLUMNS, QUANTILE_LEVELS

# The levels of the three forecast quantiles and their columns: the model's own.
LEVELS = QUANTILE_LEVELS
ITEM = "item_id"

_LN5 = math.log(5.0)
_TAIL = 1.0 - LEVELS[2]  # the probability mass of the exponential tail
# Depths match across frames and arguments after rounding to this many decimals (0.1 from a
# linspace and a literal 0.1 are one depth).
_DEPTH_DECIMALS = 9
# Margins this close (relative) to an item's best count as tied: the smaller depth wins.
_TIE_TOLERANCE = 1e-9
# Float noise removed before rounding a quantity up (Q(0.9) = P90 = 30 must plan 30, not 31).
_CEIL_TOLERANCE = 1e-9
_SHOWN = 5  # offending ids named in an error message


class DemandDecisionConfig(BaseModel):
    """The depths a sale may use and the service level its stock is planned for.

    Attributes:
        allowed_depths: candidate discount depths, each in [0, 1); the smallest is the
            "no discount" reference of :func:`recommend_depth`.
        service_level: the probability that the planned stock covers the demand, in (0, 1).
    """

    model_config = {"frozen": True, "extra": "forbid"}

    allowed_depths: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
    service_level: float = 0.9

    @field_validator("allowed_depths")
    @classmethod
    def _depths_in_range(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value:
            raise ValueError("allowed_depths must name at least one depth")
        bad = [d for d in value if not (math.isfinite(d) and 0.0 <= d < 1.0)]
        if bad:
            raise ValueError(f"allowed_depths must lie in [0, 1), got {bad}")
        return tuple(sorted(set(value)))

    @field_validator("service_level")
    @classmethod
    def _level_in_range(cls, value: float) -> float:
        if not (0.0 < value < 1.0):
            raise ValueError(f"service_level must lie in (0, 1), got {value}")
        return value


# --- the distribution -------------------------------------------------------------------


def _quantile_arrays(
    p10: ArrayLike, p50: ArrayLike, p90: ArrayLike, ids: np.ndarray | None = None, table: str = ""
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three quantiles as float arrays of one shape, checked: finite, >= 0, not crossing.

    Raises:
        DataError: a quantile is not finite or negative, or P10 > P50 or P50 > P90; the message
            names the column (``table.p10`` ...) and the first offending ids (or positions).
    """
    try:
        arrays = np.broadcast_arrays(*(np.asarray(q, dtype=np.float64) for q in (p10, p50, p90)))
    except ValueError as error:
        raise ValueError(f"p10, p50 and p90 must broadcast to one shape: {error}") from None
    prefix = f"{table}." if table else ""

    def where(mask: np.ndarray) -> str:
        positions = np.flatnonzero(mask.reshape(-1))[:_SHOWN]
        if ids is not None:
            return f"item_id {ids.reshape(-1)[positions].tolist()}"
        return f"position {positions.tolist()}"

    for column, values in zip(QUANTILE_COLUMNS, arrays, strict=True):
        bad = ~np.isfinite(values)
        if bad.any():
            raise DataError(
                f"{prefix}{column} must be finite, {int(bad.sum())} value(s) are NaN or "
                f"infinite (at {where(bad)})"
            )
        bad = values < 0
        if bad.any():
            raise DataError(
                f"{prefix}{column} must be >= 0 (demand is never negative), "
                f"{int(bad.sum())} value(s) are not (at {where(bad)})"
            )
    for low, high, (lo_name, hi_name) in (
        (arrays[0], arrays[1], QUANTILE_COLUMNS[:2]),
        (arrays[1], arrays[2], QUANTILE_COLUMNS[1:]),
    ):
        bad = low > high
        if bad.any():
            raise DataError(
                f"{prefix}{lo_name} must not exceed {prefix}{hi_name} (quantiles never cross), "
                f"{int(bad.sum())} row(s) do (at {where(bad)})"
            )
    a, b, c = (np.array(x, dtype=np.float64) for x in arrays)
    return a, b, c


def _floor_and_scale(
    p10: np.ndarray, p50: np.ndarray, p90: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``Q(0)`` (the P10-P50 line at 0, floored at 0) and the exponential tail's scale."""
    q0 = np.maximum(0.0, p10 - (p50 - p10) * (LEVELS[0] / (LEVELS[1] - LEVELS[0])))
    return q0, (p90 - p50) / _LN5


def quantile_function(
    levels_u: ArrayLike, p10: ArrayLike, p50: ArrayLike, p90: ArrayLike
) -> np.ndarray:
    """The demand quantity at each level ``u``: the quantile function of the module docstring.

    Args:
        levels_u: levels in [0, 1).
        p10, p50, p90: the forecast quantiles (one value per SKU, or anything that broadcasts
            with ``levels_u``: a column ``levels[:, None]`` against SKUs gives levels x SKUs).

    Returns:
        ``Q(u)`` in the broadcast shape; exactly P10, P50, P90 at 0.1, 0.5, 0.9.

    Raises:
        ValueError: a level outside [0, 1) (``Q(1)`` is infinite), or shapes that do not
            broadcast.
        DataError: a quantile not finite or negative, or crossing quantiles.
    """
    u = np.asarray(levels_u, dtype=np.float64)
    bad = ~(np.isfinite(u) & (u >= 0.0) & (u < 1.0))
    if bad.any():
        raise ValueError(f"levels_u must lie in [0, 1), got {u[bad].reshape(-1)[:_SHOWN].tolist()}")
    a, b, c = _quantile_arrays(p10, p50, p90)
    try:
        u, a, b, c = np.broadcast_arrays(u, a, b, c)
    except ValueError as error:
        raise ValueError(f"levels_u must broadcast with the quantiles: {error}") from None
    q0, s = _floor_and_scale(a, b, c)
    u10, u50, u90 = LEVELS
    with np.errstate(divide="ignore", invalid="ignore"):
        tail = c + s * np.log(_TAIL / (1.0 - np.maximum(u, u90)))
    return np.select(
        [u < u10, u < u50, u < u90],
        [
            q0 + (u / u10) * (a - q0),
            a + ((u - u10) / (u50 - u10)) * (b - a),
            b + ((u - u50) / (u90 - u50)) * (c - b),
        ],
        # At exactly 0.9 the logarithm's rounding would lift P90 by an ulp: pin the knot.
        default=np.where(u == u90, c, tail),
    )


def _capped_segment(width: float, low: np.ndarray, high: np.ndarray, cap: np.ndarray) -> np.ndarray:
    """``∫ min(q(x), cap)`` over a segment of ``width`` where ``q`` runs linearly from ``low``
    to ``high``; ``cap`` may be infinite."""
    rise = high - low
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (cap - low) / np.where(rise > 0, rise, 1.0)
    # t: the share of the segment below the cap (0 or 1 on a flat segment).
    t = np.where(rise > 0, np.clip(ratio, 0.0, 1.0), (cap >= low).astype(np.float64))
    # Below the crossing: the trapezoid from low to low + t·rise; above it: the cap. At t = 1
    # nothing lies above; min(cap, high) keeps 0 · cap finite when the cap is infinite.
    return width * (t * (low + 0.5 * t * rise) + (1.0 - t) * np.minimum(cap, high))


def _stock_array(stock: ArrayLike | None) -> np.ndarray:
    if stock is None:
        return np.asarray(np.inf)
    cap = np.asarray(stock, dtype=np.float64)
    cap = np.where(np.isnan(cap), np.inf, cap)
    bad = cap < 0
    if bad.any():
        positions = np.flatnonzero(bad.reshape(-1))[:_SHOWN].tolist()
        raise DataError(
            f"stock must be >= 0 (NaN or inf for unlimited), {int(bad.sum())} value(s) are "
            f"negative (at position {positions})"
        )
    return cap


def _expected_sales(a: np.ndarray, b: np.ndarray, c: np.ndarray, cap: np.ndarray) -> np.ndarray:
    """The closed form of :func:`expected_sales` on checked arrays (``cap`` may be inf)."""
    a, b, c, cap = np.broadcast_arrays(a, b, c, cap)
    q0, s = _floor_and_scale(a, b, c)
    u10, u50, u90 = LEVELS
    body = (
        _capped_segment(u10, q0, a, cap)
        + _capped_segment(u50 - u10, a, b, cap)
        + _capped_segment(u90 - u50, b, c, cap)
    )
    above = cap > c
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        excess = np.where(above & (s > 0), (cap - c) / np.where(s > 0, s, 1.0), 0.0)
    # An exponential of scale s capped at cap - P90 has mean s · (1 - exp(-(cap - P90) / s)).
    tail = _TAIL * (np.minimum(cap, c) + s * -np.expm1(-excess))
    return body + tail


def expected_sales(
    p10: ArrayLike, p50: ArrayLike, p90: ArrayLike, stock: ArrayLike | None = None
) -> np.ndarray:
    """Expected units sold with ``stock`` on hand: ``E[min(D, stock)] = ∫₀¹ min(Q(u), stock) du``.

    Exact (closed form per segment and for the tail, see the module docstring), vectorised.

    Args:
        p10, p50, p90: the forecast quantiles, one per SKU (or anything that broadcasts).
        stock: units available per SKU (broadcasts with the quantiles); NaN, ``np.inf`` or
            ``None`` mean unlimited, which gives the expected demand ``E[D]``.

    Returns:
        The expected units sold, in the broadcast shape; never above ``E[D]`` nor ``stock``,
        and non-decreasing in ``stock``.

    Raises:
        ValueError: shapes that do not broadcast.
        DataError: a quantile not finite or negative, crossing quantiles, or a negative stock.
    """
    a, b, c = _quantile_arrays(p10, p50, p90)
    cap = _stock_array(stock)
    try:
        return _expected_sales(a, b, c, cap)
    except ValueError as error:
        raise ValueError(f"stock must broadcast with the quantiles: {error}") from None


# --- the discount depth -----------------------------------------------------------------


def _depth_key(depths: ArrayLike) -> np.ndarray:
    return np.round(np.asarray(depths, dtype=np.float64), _DEPTH_DECIMALS)


def _require(frame: pd.DataFrame, columns: Sequence[str], table: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{table} lacks column(s) {missing} (has {list(frame.columns)})")


def _numeric(frame: pd.DataFrame, column: str, table: str) -> np.ndarray:
    try:
        return pd.to_numeric(frame[column]).to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as error:
        raise DataError(f"{table}.{column} must be numeric: {error}") from None


def _ids_where(ids: np.ndarray, mask: np.ndarray) -> list:
    return ids[np.flatnonzero(mask)[:_SHOWN]].tolist()


def _check_items(items: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``item_id``, list price, cost and stock (inf where null) of a checked items frame."""
    _require(items, (ITEM, "list_price", "cost", "stock"), "items")
    if items[ITEM].isna().any():
        raise DataError(f"items.{ITEM} must not be null ({int(items[ITEM].isna().sum())} are)")
    ids = items[ITEM].to_numpy()
    repeated = items[ITEM].duplicated().to_numpy()
    if repeated.any():
        raise DataError(
            f"items.{ITEM} must be unique (one price and cost per SKU), repeated: "
            f"{_ids_where(ids, repeated)}"
        )
    price = _numeric(items, "list_price", "items")
    bad = ~(np.isfinite(price) & (price > 0))
    if bad.any():
        raise DataError(
            f"items.list_price must be a finite number > 0, {int(bad.sum())} are not "
            f"(item_id {_ids_where(ids, bad)})"
        )
    cost = _numeric(items, "cost", "items")
    if np.isnan(cost).any():
        raise DataError(
            f"items.cost must not be null (a margin needs the unit cost), "
            f"{int(np.isnan(cost).sum())} are (item_id {_ids_where(ids, np.isnan(cost))})"
        )
    bad = ~(np.isfinite(cost) & (cost >= 0))
    if bad.any():
        raise DataError(
            f"items.cost must be a finite number >= 0, {int(bad.sum())} are not "
            f"(item_id {_ids_where(ids, bad)})"
        )
    stock = _numeric(items, "stock", "items")
    stock = np.where(np.isnan(stock), np.inf, stock)
    bad = stock < 0
    if bad.any():
        raise DataError(
            f"items.stock must be >= 0 (null for unlimited), {int(bad.sum())} are negative "
            f"(item_id {_ids_where(ids, bad)})"
        )
    return ids, price, cost, stock


def _check_allowed(allowed_depths: Sequence[float] | None, present: np.ndarray) -> np.ndarray:
    """The allowed depths, sorted and deduplicated (all depths ``present`` when None)."""
    if allowed_depths is None:
        return np.unique(present)
    depths = np.asarray(list(allowed_depths), dtype=np.float64)
    if depths.size == 0:
        raise DataError("allowed_depths must name at least one depth")
    bad = ~(np.isfinite(depths) & (depths >= 0) & (depths < 1))
    if bad.any():
        raise DataError(f"allowed_depths must lie in [0, 1), got {depths[bad].tolist()}")
    return np.unique(_depth_key(depths))


def depth_margins(
    what_if: pd.DataFrame, items: pd.DataFrame, allowed_depths: Sequence[float] | None = None
) -> pd.DataFrame:
    """The expected units, revenue and margin of every item at every allowed depth.

    Args:
        what_if: ``item_id``, ``discount_depth``, ``p10``, ``p50``, ``p90``: one row per item
            and depth for one sale window (other columns are ignored; a multi-day or
            multi-horizon what-if must be reduced to one window first, or its rows are
            duplicates). Depths not allowed are ignored.
        items: ``item_id``, ``list_price``, ``cost``, ``stock``: one row per item to decide
            for; a null stock means unlimited.
        allowed_depths: the candidate depths, each in [0, 1); None takes every depth of
            ``what_if``. Depths match after rounding to 9 decimals.

    Returns:
        A long frame, one row per item (in ``items`` order) and allowed depth (ascending):
        ``item_id``, ``discount_depth``, ``p10``, ``p50``, ``p90``, ``price`` (``list_price ·
        (1 - depth)``), ``unit_margin`` (``price - cost``), ``expected_units``
        (``E[min(D, stock)]``), ``expected_revenue`` (``price · expected_units``) and
        ``expected_margin`` (``unit_margin · expected_units``).

    Raises:
        DataError: a column is missing; ``items``: an id null or repeated, a list price not
            > 0, a cost null or negative, a stock negative; ``what_if``: an id null, a depth
            outside [0, 1), a repeated (item, depth) row, a quantile not finite or negative,
            crossing quantiles, an item not in ``items``, or an item lacking an allowed
            depth; an allowed depth outside [0, 1).
    """
    ids, list_price, cost, stock = _check_items(items)
    _require(what_if, (ITEM, DEPTH, *QUANTILE_COLUMNS), "what_if")
    if what_if[ITEM].isna().any():
        raise DataError(f"what_if.{ITEM} must not be null ({int(what_if[ITEM].isna().sum())} are)")
    frame_ids = what_if[ITEM].to_numpy()
    depth = _numeric(what_if, DEPTH, "what_if")
    bad = ~(np.isfinite(depth) & (depth >= 0) & (depth < 1))
    if bad.any():
        raise DataError(
            f"what_if.{DEPTH} must lie in [0, 1), {int(bad.sum())} row(s) do not "
            f"(item_id {_ids_where(frame_ids, bad)}, depths {depth[bad][:_SHOWN].tolist()})"
        )
    key = _depth_key(depth)
    rows = pd.DataFrame({ITEM: frame_ids, DEPTH: key})
    repeated = rows.duplicated().to_numpy()
    if repeated.any():
        pairs = rows[repeated].head(_SHOWN).itertuples(index=False, name=None)
        raise DataError(
            f"what_if must hold one row per ({ITEM}, {DEPTH}) (one sale window), repeated: "
            f"{list(pairs)}"
        )
    quantiles = [_numeric(what_if, column, "what_if") for column in QUANTILE_COLUMNS]
    p10, p50, p90 = _quantile_arrays(*quantiles, ids=frame_ids, table="what_if")
    unknown = pd.Index(ids).get_indexer(frame_ids) < 0
    if unknown.any():
        raise DataError(
            f"what_if.{ITEM} has item(s) missing from items (no price or cost to weigh): "
            f"{pd.unique(frame_ids[unknown])[:_SHOWN].tolist()}"
        )
    allowed = _check_allowed(allowed_depths, key)

    rows = rows.assign(p10=p10, p50=p50, p90=p90)
    rows = rows[np.isin(key, allowed)]
    grid = pd.DataFrame(
        {ITEM: np.repeat(ids, len(allowed)), DEPTH: np.tile(allowed, len(ids))}
    ).merge(rows, on=[ITEM, DEPTH], how="left", validate="one_to_one")
    missing = grid["p10"].isna().to_numpy()
    if missing.any():
        pairs = grid.loc[missing, [ITEM, DEPTH]].head(_SHOWN).itertuples(index=False, name=None)
        raise DataError(
            f"what_if lacks {int(missing.sum())} (item, allowed depth) row(s), e.g. "
            f"{list(pairs)}: every item needs a forecast at every allowed depth"
        )

    n_depths = len(allowed)
    price = np.repeat(list_price, n_depths) * (1.0 - grid[DEPTH].to_numpy())
    unit_margin = price - np.repeat(cost, n_depths)
    units = _expected_sales(
        grid["p10"].to_numpy(),
        grid["p50"].to_numpy(),
        grid["p90"].to_numpy(),
        np.repeat(stock, n_depths),
    )
    return grid.assign(
        price=price,
        unit_margin=unit_margin,
        expected_units=units,
        expected_revenue=price * units,
        expected_margin=unit_margin * units,
    )


def pick_depths(margins: pd.DataFrame) -> pd.DataFrame:
    """Each item's depth of the highest expected margin, from :func:`depth_margins`'s frame.

    Ties (margins within a relative 1e-9 of the item's best) go to the smaller depth: the same
    margin for less discount is the safer offer. An item whose every margin is negative (a cost
    above every price) still gets its least bad depth; its negative ``expected_margin`` says
    the sale loses money on it, a decision this function leaves to its caller.

    Args:
        margins: :func:`depth_margins`'s output (or a frame with its columns).

    Returns:
        One row per item, in first-appearance order: ``item_id``, ``recommended_depth``,
        ``p10``, ``p50``, ``p90``, ``price``, ``unit_margin``, ``expected_units``,
        ``expected_revenue``, ``expected_margin`` (all at the recommended depth) and
        ``margin_at_no_discount`` (the expected margin at the item's smallest depth).

    Raises:
        DataError: a column is missing.
    """
    columns = (ITEM, DEPTH, *QUANTILE_COLUMNS, "price", "unit_margin", "expected_units")
    _require(margins, (*columns, "expected_revenue", "expected_margin"), "margins")
    order = pd.Index(pd.unique(margins[ITEM]))
    frame = margins.assign(_order=order.get_indexer(margins[ITEM])).sort_values(
        ["_order", DEPTH], kind="stable"
    )
    margin = frame["expected_margin"]
    best = margin.groupby(frame["_order"]).transform("max")
    tied = margin >= best - _TIE_TOLERANCE * np.maximum(1.0, best.abs())
    chosen = frame[tied.to_numpy()].groupby("_order", sort=True).head(1)
    at_zero = frame.groupby("_order", sort=True)["expected_margin"].first()
    out = chosen.drop(columns="_order").rename(columns={DEPTH: "recommended_depth"})
    out = out.reset_index(drop=True)
    out["margin_at_no_discount"] = at_zero.to_numpy()
    return out[
        [
            ITEM,
            "recommended_depth",
            *QUANTILE_COLUMNS,
            "price",
            "unit_margin",
            "expected_units",
            "expected_revenue",
            "expected_margin",
            "margin_at_no_discount",
        ]
    ]


def recommend_depth(
    what_if: pd.DataFrame, items: pd.DataFrame, allowed_depths: Sequence[float] | None = None
) -> pd.DataFrame:
    """The discount depth per item that maximises the expected margin
    ``(list_price · (1 - depth) - cost) · E[min(D, stock)]`` over the allowed depths.

    ``pick_depths(depth_margins(what_if, items, allowed_depths))``: call the two yourself to
    keep the margin at every depth (the long frame of :func:`depth_margins`).

    Where expected units never fall as the depth grows (e.g. a depth that scales all three
    quantiles by one factor), a higher unit cost never recommends a deeper discount: the margin
    has decreasing differences in (depth, cost) (Topkis 1998), and the smallest maximiser
    follows. Three quantiles that each never fall with the depth do not promise that (see the
    module docstring), so neither does this function in general.

    Args:
        what_if: ``item_id``, ``discount_depth``, ``p10``, ``p50``, ``p90``, one row per item
            and depth (see :func:`depth_margins`).
        items: ``item_id``, ``list_price``, ``cost``, ``stock`` (null: unlimited).
        allowed_depths: candidate depths in [0, 1); None takes every depth of ``what_if``.

    Returns:
        One row per item of ``items``, in its order; the columns of :func:`pick_depths`
        (``item_id``, ``recommended_depth``, ``p10``, ``p50``, ``p90``, ``price``,
        ``unit_margin``, ``expected_units``, ``expected_revenue``, ``expected_margin``,
        ``margin_at_no_discount``). Its quantiles feed :func:`stock_plan` directly.

    Raises:
        DataError: as :func:`depth_margins`.
    """
    return pick_depths(depth_margins(what_if, items, allowed_depths))


# --- the stock plan ---------------------------------------------------------------------


def stock_plan(
    quantiles: pd.DataFrame, service_level: float, on_hand: pd.Series | None = None
) -> pd.DataFrame:
    """The integer stock per item that covers its demand with probability ``service_level``.

    ``quantity = ceil(Q(service_level))`` (float noise of a relative 1e-9 removed first), so
    ``P(D <= quantity) >= service_level`` under the distribution of the module docstring; at
    0.9 it is ``ceil(P90)``, above 0.9 it comes from the exponential tail.

    Args:
        quantiles: ``item_id``, ``p10``, ``p50``, ``p90``, one row per item (e.g. the output of
            :func:`recommend_depth`: the quantiles at the chosen depth); other columns ignored.
        service_level: the probability of covering the demand, in (0, 1).
        on_hand: units already held, indexed by ``item_id``; every planned item must appear
            (0 for none); other items are ignored.

    Returns:
        One row per item, in ``quantiles`` order: ``item_id``, ``demand_at_level``
        (``Q(service_level)``, unrounded), ``quantity`` (int64), ``expected_sales``
        (``E[min(D, quantity)]``), ``expected_demand`` (``E[D]``), ``fill_rate``
        (``expected_sales / expected_demand``; 1 where no demand is expected) and, with
        ``on_hand``, ``on_hand`` and ``shortfall`` (``ceil(max(0, quantity - on_hand))``,
        int64: the units to bring in).

    Raises:
        ValueError: ``service_level`` not in (0, 1).
        DataError: a column is missing, an id null or repeated, a quantile not finite or
            negative, crossing quantiles; ``on_hand``: an index repeated, a planned item
            absent, a value null, infinite or negative.
    """
    if (
        isinstance(service_level, bool)
        or not isinstance(service_level, int | float | np.number)
        or not (0.0 < float(service_level) < 1.0)
    ):
        raise ValueError(f"service_level must be a number in (0, 1), got {service_level!r}")
    _require(quantiles, (ITEM, *QUANTILE_COLUMNS), "quantiles")
    if quantiles[ITEM].isna().any():
        raise DataError(
            f"quantiles.{ITEM} must not be null ({int(quantiles[ITEM].isna().sum())} are)"
        )
    ids = quantiles[ITEM].to_numpy()
    repeated = quantiles[ITEM].duplicated().to_numpy()
    if repeated.any():
        raise DataError(
            f"quantiles.{ITEM} must be unique (one plan per item), repeated: "
            f"{_ids_where(ids, repeated)}"
        )
    columns = [_numeric(quantiles, column, "quantiles") for column in QUANTILE_COLUMNS]
    a, b, c = _quantile_arrays(*columns, ids=ids, table="quantiles")

    level = quantile_function(float(service_level), a, b, c)
    quantity = np.maximum(np.ceil(level - _CEIL_TOLERANCE * np.maximum(1.0, level)), 0.0)
    sales = _expected_sales(a, b, c, quantity)
    demand = _expected_sales(a, b, c, np.asarray(np.inf))
    fill = np.divide(sales, demand, out=np.ones_like(sales), where=demand > 0)
    out = pd.DataFrame(
        {
            ITEM: ids,
            "demand_at_level": level,
            "quantity": quantity.astype(np.int64),
            "expected_sales": sales,
            "expected_demand": demand,
            "fill_rate": fill,
        }
    )
    if on_hand is None:
        return out
    if on_hand.index.duplicated().any():
        raise DataError(
            f"on_hand must have one value per item_id, repeated: "
            f"{on_hand.index[on_hand.index.duplicated()][:_SHOWN].tolist()}"
        )
    position = on_hand.index.get_indexer(ids)
    absent = position < 0
    if absent.any():
        raise DataError(
            f"on_hand lacks {int(absent.sum())} planned item(s) (give 0 for none held): "
            f"{_ids_where(ids, absent)}"
        )
    try:
        held = pd.to_numeric(on_hand).to_numpy(dtype=np.float64, na_value=np.nan)[position]
    except (TypeError, ValueError) as error:
        raise DataError(f"on_hand must be numeric: {error}") from None
    bad = ~(np.isfinite(held) & (held >= 0))
    if bad.any():
        raise DataError(
            f"on_hand must be a finite number >= 0 per item, {int(bad.sum())} are not "
            f"(item_id {_ids_where(ids, bad)})"
        )
    out["on_hand"] = held
    out["shortfall"] = np.ceil(np.maximum(0.0, quantity - held)).astype(np.int64)
    return out
