"""The daily-series face of the demand kind: a shop's own daily SKU demand (e.g. UCI Online
Retail) turned into point-in-time feature panels, fitted by :class:`QuantileDemandModel` and
forecast a few days ahead as P10/P50/P90 per SKU and day.

One panel row is one item x target day in ``(origin, origin + horizon_days]``. Every feature
is computed from the history on or before the origin only (point in time); the target day
contributes only what is known in advance (its calendar and how many days ahead it lies):

* **history** (trading days on or before the origin, see below): lags 1-7, rolling means over
  7/14/28/56 trading days, the mean of the days with a sale and the maximum over 56, the
  standard deviation over 28, the share of zero days over 56, the mean of the same weekday
  as the target day over its last 4 and 8 trading occurrences, calendar days since the last
  sale and since the first (item age), trend ratios (7 vs 28, 28 vs 56), and the whole
  shop's 7 vs 28 trend;
* **horizon**: ``horizon`` (calendar days ahead, 1..horizon_days) and ``trading_horizon``
  (the target's rank among the trading target days of that origin);
* **calendar of the target day**: weekday, day of month, month, ISO week, days to the next
  shopping holiday (:func:`flashsale_ml.features.calendar.shopping_holidays`);
* **item attributes** (``items``, optional): ``category`` and ``price_band`` as categoricals,
  ``title`` as :data:`TITLE_BUCKETS` hashed token indicators (CRC32 of upper-case words, so
  stable across processes), and ``price_level`` = log1p(reference price);
* ``discount_depth``: the item's relative discount vs its reference (list) price as known at
  the origin: ``1 - price / reference`` per day with a sale (the day's revenue-weighted unit
  price), averaged over the days with a sale in the 28 calendar days up to the origin, clipped
  to [0, 0.95]; 0 where the item sold nothing in those days (no known discount: list price).
  Never the target day's own realized price: it exists only where a sale happened, so it
  would leak the target. In a what-if (:func:`what_if_daily`) it is replaced by candidate
  depths. Without a ``price`` column every depth is 0.

**Trading days.** A day on which no item at all sold is a *closed* day (Online Retail never
trades on Saturdays, nor over Christmas and some bank holidays): closed days are dropped from
the series the lags and rolling means run over, and are neither forecast nor scored. Which
days count as trading is ``trading_days`` where the caller knows the calendar (a shop knows
its own opening days in advance); otherwise it is inferred: on or before the origin, days
with any sale in ``history``; after it, :func:`daily_panel` assumes every weekday that traded
in the 8 weeks up to the origin trades (point in time), and :func:`training_panel` (whose
targets are realized anyway) uses the days with a sale in the history. Pass ``trading_days``
computed from the whole shop when ``history`` holds only some of its items.

Pure pandas/numpy: frames in, frames out; no I/O, no MLflow.
"""

from __future__ import annotations

import dataclasses
import re
import zlib
from collections.abc import Iterable, Sequence
from datetime import date

import numpy as np
import pandas as pd

from flashsale_ml.features.calendar import shopping_holidays
from flashsale_ml.models.demand.quantile import (
    DEPTH,
    QUANTILE_COLUMNS,
    QuantileConfig,
    QuantileDemandModel,
)

LAGS = tuple(range(1, 8))
WINDOWS = (7, 14, 28, 56)
SAME_WEEKDAY_WEEKS = (4, 8)
DEPTH_WINDOW_DAYS = 28
MAX_DEPTH = 0.95
TITLE_BUCKETS = 8
KEYS = ("item_id", "day", "origin", "horizon")
TARGET = "target"

HISTORY_FEATURES = (
    *(f"lag_{k}" for k in LAGS),
    *(f"mean_{w}" for w in WINDOWS),
    "mean_nonzero_56",
    "max_56",
    "std_28",
    "zero_share_56",
    *(f"same_weekday_mean_{w}" for w in SAME_WEEKDAY_WEEKS),
    "days_since_sale",
    "item_age_days",
    "trend_7_28",
    "trend_28_56",
    "shop_trend_7_28",
)
CALENDAR_FEATURES = (
    "horizon",
    "trading_horizon",
    "weekday",
    "day_of_month",
    "month",
    "week_of_year",
    "days_to_holiday",
)


@dataclasses.dataclass(frozen=True)
class _Series:
    """The history as a dense items x trading days matrix of units, and what else the
    features read."""

    items: pd.Index
    trading: pd.DatetimeIndex  # sorted trading days (past days with a sale, or as given)
    qty: np.ndarray  # (items, len(trading)) units per trading day
    calendar_start: pd.Timestamp
    first_row: np.ndarray  # calendar day offset of each item's first history row (or +inf)
    first_sale: np.ndarray  # calendar day offset of each item's first sale (or +inf)
    realized: pd.DatetimeIndex  # days with any sale in the history
    sold: pd.DataFrame  # the history's rows with a sale (item_id, day, qty[, price])


def _day(value) -> pd.Timestamp:
    return pd.Timestamp(value).normalize()


def _check_history(history: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in ("item_id", "day", "qty") if c not in history.columns]
    if missing:
        raise ValueError(f"the history lacks columns {missing}")
    frame = history[[c for c in ("item_id", "day", "qty", "price") if c in history.columns]]
    frame = frame.assign(day=pd.to_datetime(frame["day"]).dt.normalize())
    qty = pd.to_numeric(frame["qty"], errors="coerce")
    if qty.isna().any() or (qty < 0).any():
        raise ValueError("history qty must be a non-negative number in every row")
    return frame.assign(qty=qty.astype(float))


def _build(history: pd.DataFrame, trading_days: Iterable | None, extra_items: Iterable) -> _Series:
    frame = _check_history(history)
    sold = frame[frame["qty"] > 0]
    items = pd.Index(pd.unique(pd.concat([frame["item_id"], pd.Series(list(extra_items))])))
    realized = pd.DatetimeIndex(np.sort(sold["day"].unique()))
    if trading_days is None:
        trading = realized
    else:
        trading = pd.DatetimeIndex(sorted({_day(d) for d in trading_days}))
    start = frame["day"].min()
    if len(trading):
        start = min(start, trading.min())

    daily = sold.groupby(["item_id", "day"], sort=False)["qty"].sum()
    row = items.get_indexer(daily.index.get_level_values(0))
    col = trading.get_indexer(daily.index.get_level_values(1))
    qty = np.zeros((len(items), len(trading)))
    keep = col >= 0  # sales on a day declared closed are left out of the series
    qty[row[keep], col[keep]] = daily.to_numpy()[keep]

    first_sale = np.full(len(items), np.inf)
    cal = (daily.index.get_level_values(1) - start).days.to_numpy().astype(float)
    np.minimum.at(first_sale, row, cal)
    first_row = np.full(len(items), np.inf)
    all_cal = (frame["day"] - start).dt.days.to_numpy().astype(float)
    np.minimum.at(first_row, items.get_indexer(frame["item_id"]), all_cal)
    return _Series(items, trading, qty, start, first_row, first_sale, realized, sold)


def _reference_at(
    sold: pd.DataFrame, items: pd.Index, reference_price: pd.Series | None
) -> np.ndarray:
    """List price per item: ``reference_price`` where given, else the median of the item's
    positive unit prices in ``sold`` (the sales on or before the origin); NaN: unknown."""
    if reference_price is not None:
        ref = pd.Series(reference_price).reindex(items).to_numpy(dtype=float)
    elif "price" in sold.columns:
        prices = pd.to_numeric(sold["price"], errors="coerce")
        positive = prices > 0
        ref = prices[positive].groupby(sold.loc[positive, "item_id"]).median().reindex(items)
        ref = ref.to_numpy(dtype=float)
    else:
        ref = np.full(len(items), np.nan)
    return np.where(ref > 0, ref, np.nan)


def _depth_at(
    sold: pd.DataFrame, origin: pd.Timestamp, items: pd.Index, ref: np.ndarray
) -> np.ndarray:
    """Relative discount known at ``origin``: per item, ``1 - unit price / reference`` of each
    day with a sale in the last :data:`DEPTH_WINDOW_DAYS` days (the day's revenue-weighted unit
    price), clipped to [0, MAX_DEPTH] and averaged over those days; 0 where none."""
    out = np.zeros(len(items))
    if "price" not in sold.columns:
        return out
    lo = origin - pd.Timedelta(days=DEPTH_WINDOW_DAYS - 1)
    window = sold[(sold["day"] >= lo) & (sold["day"] <= origin)]
    if window.empty:
        return out
    price = pd.to_numeric(window["price"], errors="coerce")
    keys = [window["item_id"], window["day"]]
    qty = window["qty"].groupby(keys, sort=False).sum()
    unit = (window["qty"] * price).groupby(keys, sort=False).sum() / qty
    row = items.get_indexer(unit.index.get_level_values(0))
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = 1.0 - unit.to_numpy() / ref[row]
    ok = np.isfinite(depth) & (row >= 0)
    per_item = pd.Series(np.clip(depth[ok], 0.0, MAX_DEPTH)).groupby(row[ok]).mean()
    out[per_item.index.to_numpy()] = per_item.to_numpy()
    return out


def _days_to_holiday(days: pd.DatetimeIndex) -> np.ndarray:
    years = sorted({d.year for d in days} | {d.year + 1 for d in days})
    holidays = np.array(
        sorted(np.datetime64(h, "D") for y in years for h in shopping_holidays(y)),
        dtype="datetime64[D]",
    )
    values = days.to_numpy().astype("datetime64[D]")
    nxt = holidays[np.searchsorted(holidays, values, side="left")]
    return (nxt - values).astype(int).astype(float)


def _safe_ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a + 0.1) / (b + 0.1)


def _item_frame(items: pd.DataFrame | None, index: pd.Index) -> tuple[pd.DataFrame, list[str]]:
    """Item attributes aligned to ``index``: categoricals as strings, title token buckets."""
    out = pd.DataFrame(index=np.arange(len(index)))
    categorical: list[str] = []
    if items is None:
        return out, categorical
    attrs = items.drop_duplicates("item_id").set_index("item_id").reindex(index)
    for column in ("category", "price_band"):
        if column in attrs.columns:
            out[column] = attrs[column].astype("string").fillna("unknown").to_numpy(dtype=object)
            categorical.append(column)
    if "title" in attrs.columns:
        buckets = np.zeros((len(index), TITLE_BUCKETS))
        for i, title in enumerate(attrs["title"].fillna("").astype(str)):
            for token in set(re.findall(r"[A-Z]{3,}", title.upper())):
                buckets[i, zlib.crc32(token.encode()) % TITLE_BUCKETS] = 1.0
        for k in range(TITLE_BUCKETS):
            out[f"title_h{k}"] = buckets[:, k]
    return out, categorical


def _panel_at(
    series: _Series,
    origin: pd.Timestamp,
    horizon_days: int,
    targets: pd.DatetimeIndex,
    universe: np.ndarray,
    reference: np.ndarray,
    depth: np.ndarray,
    attrs: pd.DataFrame,
) -> pd.DataFrame:
    """Features of the items ``universe`` (row positions in ``series``) at ``origin`` for the
    target days ``targets``. Only columns on or before the origin are ever read."""
    t = int(series.trading.searchsorted(origin, side="right"))  # trading days <= origin
    past = series.qty[universe, :t]
    past_days = series.trading[:t]
    n = len(universe)
    origin_off = int((origin - series.calendar_start).days)
    feats: dict[str, np.ndarray] = {}

    for k in LAGS:
        feats[f"lag_{k}"] = past[:, t - k] if t >= k else np.full(n, np.nan)
    csum = np.concatenate([np.zeros((n, 1)), np.cumsum(past, axis=1)], axis=1)
    means = {}
    for w in WINDOWS:
        m = min(w, t)
        means[w] = (csum[:, t] - csum[:, t - m]) / m if m else np.full(n, np.nan)
        feats[f"mean_{w}"] = means[w]
    window56 = past[:, max(0, t - 56) :]
    if window56.shape[1]:
        nonzero = (window56 > 0).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            feats["mean_nonzero_56"] = np.where(nonzero > 0, window56.sum(axis=1) / nonzero, 0.0)
        feats["max_56"] = window56.max(axis=1)
        feats["zero_share_56"] = 1.0 - nonzero / window56.shape[1]
        feats["std_28"] = past[:, max(0, t - 28) :].std(axis=1)
    else:
        for name in ("mean_nonzero_56", "max_56", "zero_share_56", "std_28"):
            feats[name] = np.full(n, np.nan)

    # Calendar days since the last sale / the first sale, on or before the origin.
    sold_any = past > 0
    if t:
        last_pos = t - 1 - np.argmax(sold_any[:, ::-1], axis=1)
        last_day = (past_days[last_pos] - series.calendar_start).days.to_numpy()
        feats["days_since_sale"] = np.where(
            sold_any.any(axis=1), origin_off - last_day, np.nan
        ).astype(float)
    else:
        feats["days_since_sale"] = np.full(n, np.nan)
    first = series.first_sale[universe]
    first = np.where(first <= origin_off, first, np.nan)
    feats["item_age_days"] = origin_off - first
    feats["trend_7_28"] = _safe_ratio(means[7], means[28])
    feats["trend_28_56"] = _safe_ratio(means[28], means[56])
    shop = series.qty[:, :t].sum(axis=0)
    shop7, shop28 = shop[max(0, t - 7) :].mean(), shop[max(0, t - 28) :].mean()
    feats["shop_trend_7_28"] = np.full(n, (shop7 + 1.0) / (shop28 + 1.0) if t else np.nan)

    feats[DEPTH] = depth
    feats["price_level"] = np.log1p(reference)

    per_item = pd.DataFrame(feats)
    per_item = pd.concat([per_item, attrs.iloc[universe].reset_index(drop=True)], axis=1)

    # One block per target day: item features + what is known in advance about that day.
    weekday_of_past = past_days.day_of_week.to_numpy()
    to_holiday = _days_to_holiday(targets) if len(targets) else np.array([])
    blocks = []
    for rank, day in enumerate(targets, start=1):
        block = per_item.copy()
        same = np.flatnonzero(weekday_of_past == day.weekday())
        for w in SAME_WEEKDAY_WEEKS:
            cols = same[-w:]
            block[f"same_weekday_mean_{w}"] = (
                past[:, cols].mean(axis=1) if len(cols) else np.full(n, np.nan)
            )
        block["horizon"] = int((day - origin).days)
        block["trading_horizon"] = rank
        block["weekday"] = day.weekday()
        block["day_of_month"] = day.day
        block["month"] = day.month
        block["week_of_year"] = int(day.isocalendar()[1])
        block["days_to_holiday"] = to_holiday[rank - 1]
        block.insert(0, "item_id", series.items[universe])
        block.insert(1, "day", day)
        block.insert(2, "origin", origin)
        blocks.append(block)
    if not blocks:
        return pd.DataFrame(columns=[*KEYS, *HISTORY_FEATURES, *CALENDAR_FEATURES, DEPTH])
    return pd.concat(blocks, ignore_index=True)


def _target_days(
    series: _Series, origin: pd.Timestamp, horizon_days: int, given: bool, realized: bool
) -> pd.DatetimeIndex:
    window = pd.date_range(origin + pd.Timedelta(days=1), periods=horizon_days, freq="D")
    if given:
        return window[window.isin(series.trading)]
    if realized:
        return window[window.isin(series.realized)]
    recent = series.realized[
        (series.realized <= origin) & (series.realized > origin - pd.Timedelta(days=56))
    ]
    open_weekdays = set(recent.day_of_week) if len(recent) else set(range(7))
    return window[np.isin(window.day_of_week, sorted(open_weekdays))]


def _universe(series: _Series, origin: pd.Timestamp, items: pd.DataFrame | None) -> np.ndarray:
    """Items forecast at ``origin``: those with a history row on or before it, plus every
    item of ``items`` (a catalogue may list items that have not sold yet)."""
    known = series.first_row <= (origin - series.calendar_start).days
    if items is not None:
        known |= series.items.isin(items["item_id"])
    return np.flatnonzero(known)


def feature_columns(panel: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The model's features in a panel (everything but the keys and the target) and which
    of them are categorical."""
    features = [c for c in panel.columns if c not in (*KEYS, TARGET)]
    categorical = [c for c in ("category", "price_band") if c in features]
    return features, categorical


def _panels(
    history: pd.DataFrame,
    origins: Sequence,
    horizon_days: int,
    reference_price: pd.Series | None,
    items: pd.DataFrame | None,
    trading_days: Iterable | None,
    with_target: bool,
) -> pd.DataFrame:
    if horizon_days < 1:
        raise ValueError(f"horizon_days must be >= 1, got {horizon_days}")
    given = trading_days is not None
    extra = () if items is None else items["item_id"]
    series = _build(history, trading_days, extra)
    attrs, _ = _item_frame(items, series.items)
    last_day = series.sold["day"].max() if len(series.sold) else None
    frames = []
    for origin in sorted({_day(o) for o in origins}):
        universe = _universe(series, origin, items)
        sold = series.sold[series.sold["day"] <= origin]
        ref = _reference_at(sold, series.items, reference_price)
        depth = _depth_at(sold, origin, series.items, ref)
        targets = _target_days(series, origin, horizon_days, given, realized=with_target)
        panel = _panel_at(
            series, origin, horizon_days, targets, universe, ref[universe], depth[universe], attrs
        )
        if with_target and len(panel):
            row = series.items.get_indexer(panel["item_id"])
            col = series.trading.get_indexer(panel["day"])
            panel[TARGET] = np.where(col >= 0, series.qty[row, np.maximum(col, 0)], 0.0)
            if not given and last_day is not None:  # realized calendar: within the history
                panel = panel[panel["day"] <= last_day]
        frames.append(panel)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def daily_panel(
    history: pd.DataFrame,
    origin: date | str | pd.Timestamp,
    horizon_days: int = 7,
    reference_price: pd.Series | None = None,
    items: pd.DataFrame | None = None,
    trading_days: Iterable | None = None,
) -> pd.DataFrame:
    """Feature rows to forecast from ``origin``: one per item x trading day in
    ``(origin, origin + horizon_days]``.

    Args:
        history: ``item_id, day, qty`` (units sold that day; rows of several orders of a day
            are summed) and optionally ``price`` (the unit price paid); rows after the origin
            are ignored.
        origin: the last day whose sales are known.
        horizon_days: calendar days ahead to forecast.
        reference_price: list price per item (a Series indexed by ``item_id``); None: the
            median unit price of the item's sales on or before the origin.
        items: optional catalogue ``item_id`` + any of ``category``, ``price_band``, ``title``;
            its items are forecast even before their first sale.
        trading_days: the shop's trading days (see the module docstring); None: inferred.

    Returns:
        ``item_id, day, origin, horizon``, then the features (see :func:`feature_columns`).
    """
    return _panels(
        history, [origin], horizon_days, reference_price, items, trading_days, with_target=False
    )


def training_panel(
    history: pd.DataFrame,
    origins: Sequence,
    horizon_days: int = 7,
    reference_price: pd.Series | None = None,
    items: pd.DataFrame | None = None,
    trading_days: Iterable | None = None,
) -> pd.DataFrame:
    """The panels of several past ``origins`` stacked, each with its realized ``target``
    (units sold on the target day; 0 on a trading day without a sale). Target days after
    the end of the history are left out (unless ``trading_days`` declares them, in which
    case their target reads 0: pass origins whose horizon the history covers)."""
    return _panels(
        history, origins, horizon_days, reference_price, items, trading_days, with_target=True
    )


@dataclasses.dataclass
class DailyDemandModel:
    """A :class:`QuantileDemandModel` fitted on daily panels, and how they were built."""

    model: QuantileDemandModel
    horizon_days: int
    features: tuple[str, ...]
    categorical: tuple[str, ...]


def fit_panel(
    panel: pd.DataFrame, horizon_days: int, config: QuantileConfig | None = None
) -> DailyDemandModel:
    """Fit the quantile model on a :func:`training_panel`."""
    features, categorical = feature_columns(panel)
    model = QuantileDemandModel.fit(
        panel, panel[TARGET].to_numpy(), features, categorical, config, depth_feature=DEPTH
    )
    return DailyDemandModel(model, horizon_days, tuple(features), tuple(categorical))


def fit_daily(
    history: pd.DataFrame,
    origins: Sequence,
    horizon_days: int = 7,
    reference_price: pd.Series | None = None,
    items: pd.DataFrame | None = None,
    trading_days: Iterable | None = None,
    config: QuantileConfig | None = None,
) -> DailyDemandModel:
    """Build the training panel of ``origins`` and fit the quantile model on it."""
    panel = training_panel(history, origins, horizon_days, reference_price, items, trading_days)
    if panel.empty:
        raise ValueError("no training rows: no origin has a target day within the history")
    return fit_panel(panel, horizon_days, config)


def quantile_frame(model: DailyDemandModel, panel: pd.DataFrame) -> pd.DataFrame:
    """``item_id, day, horizon, p10, p50, p90`` of a panel's rows."""
    q = model.model.predict(panel)
    out = panel[["item_id", "day", "horizon"]].reset_index(drop=True).copy()
    for j, column in enumerate(QUANTILE_COLUMNS):
        out[column] = q[:, j]
    return out


def forecast_daily(
    model: DailyDemandModel,
    history: pd.DataFrame,
    origin: date | str | pd.Timestamp,
    reference_price: pd.Series | None = None,
    items: pd.DataFrame | None = None,
    trading_days: Iterable | None = None,
    depth: float | None = None,
) -> pd.DataFrame:
    """Quantile forecast of every item for the model's horizon after ``origin``:
    ``item_id, day, horizon, p10, p50, p90``; ``depth`` (optional) replaces every row's
    discount depth (a planned sale's discount)."""
    panel = daily_panel(history, origin, model.horizon_days, reference_price, items, trading_days)
    if depth is not None:
        panel[DEPTH] = float(depth)
    return quantile_frame(model, panel)


def what_if_daily(
    model: DailyDemandModel, panel: pd.DataFrame, depths: Sequence[float]
) -> pd.DataFrame:
    """Quantiles of every panel row at every candidate depth (never falling as it deepens):
    ``row, item_id, day, horizon, discount_depth, p10, p50, p90``."""
    return model.model.what_if(panel, depths, keys=("item_id", "day", "horizon"))
