"""The sale-window face of the demand kind: which rows, which features, which target.

A row is one SKU of one flash sale, as of the sale's start (the feature snapshot's ``items``
table, rows with ``in_sale = 1``). The features are the SKU's point-in-time history (views,
purchases, conversion, past flash-sale sell-through), its attributes (category, brand, list
price, price band, title words), the calendar of the sale and the sale's discount depth.

The target is the sale's demand, not its sales: where the inventory system saw the SKU sell
out (``sale_stock``), its sales stopped early and undercount demand. Demand arrives through a
sale window in a shape common to its SKUs (most of it in the first minutes), so units sold
before a sell-out at position ``p`` of the window are the share ``F(p)`` of the SKU's demand
that had arrived by then, where ``F`` is the cumulative arrival of the units of the SKUs that
did *not* sell out (computed by the feature SQL, ``label_arrived_share_at_sellout``). The
target of a sold-out SKU is ``units / max(F(p), floor)``: the sell-through-time correction of
the unconstraining literature.

References:
    Talluri & van Ryzin (2004), *The Theory and Practice of Revenue Management*, Springer,
    §9.4 (demand untruncation). Vulcano, van Ryzin & Ratliff (2012), "Estimating primary
    demand for substitutable products from sales transaction data", Operations Research 60(2).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from flashsale_ml.features.columns import ARRIVED_SHARE_LABEL, DEMAND_LABEL, SOLD_OUT_LABEL
from flashsale_ml.models.demand.quantile import DEPTH

TITLE_BUCKETS = 8
NUMERIC_FEATURES: tuple[str, ...] = (
    DEPTH,
    "list_price",
    "price_band",
    "views_24h",
    "views_7d",
    "views_30d",
    "purchases_7d",
    "purchases_30d",
    "buyers_30d",
    "view_velocity",
    "conversion_30d",
    "avg_paid_price_30d",
    "discount_purchase_share_30d",
    "past_sale_appearances",
    "past_sale_units",
    "past_sale_units_per_appearance",
    "past_sale_last_order_position",
    "sale_hour",
    "sale_weekday",
    "sale_month",
    "sale_item_count",
    "title_words",
    *(f"title_hash_{i}" for i in range(TITLE_BUCKETS)),
)
CATEGORICAL_FEATURES: tuple[str, ...] = ("category", "brand")
FEATURES: tuple[str, ...] = (*NUMERIC_FEATURES, *CATEGORICAL_FEATURES)
# The raw columns of the items feature table that the features above are made from.
RAW_COLUMNS: tuple[str, ...] = (
    "campaign_id",
    "item_id",
    "as_of",
    "in_sale",
    "sale_discount_depth",
    "cost",
    "title",
    *(
        c
        for c in FEATURES
        if c not in (DEPTH, "price_band", "title_words") and not c.startswith("title_hash_")
    ),
)
# The raw columns that hold text (the rest are numbers).
TEXT_COLUMNS: tuple[str, ...] = ("campaign_id", "title", *CATEGORICAL_FEATURES)
LABEL_COLUMNS: tuple[str, ...] = (DEMAND_LABEL, SOLD_OUT_LABEL, ARRIVED_SHARE_LABEL)
# The smallest arrived share a sold-out SKU's sales are scaled by: a sell-out in the first
# seconds (before the share is measurable) inflates its units at most 1 / floor times.
DEFAULT_SHARE_FLOOR = 0.1


def sale_rows(items: pd.DataFrame) -> pd.DataFrame:
    """The SKUs on sale in each campaign, with the model's features added.

    Args:
        items: rows of the feature snapshot's ``items`` table (every SKU and cutoff).

    Returns:
        The ``in_sale = 1`` rows (sorted by campaign and SKU) with ``discount_depth``,
        ``price_band`` (the list price's octave) and the title features added.

    Raises:
        ValueError: a raw column is missing.
    """
    missing = [c for c in RAW_COLUMNS if c not in items.columns and c != "as_of"]
    if missing:
        raise ValueError(f"the items feature table lacks column(s) {missing}")
    rows = items[items["in_sale"] == 1].sort_values(["campaign_id", "item_id"])
    return add_features(rows.reset_index(drop=True))


def add_features(rows: pd.DataFrame) -> pd.DataFrame:
    """Derived features of SKU rows: the depth under its model name, the price band, and the
    title's word count and hashed words (stable across processes: BLAKE2b, not ``hash``)."""
    out = rows.copy()
    if "sale_discount_depth" in out.columns:  # the sale's depth (a what-if replaces it)
        out[DEPTH] = out["sale_discount_depth"].astype(float)
    out["price_band"] = np.floor(np.log2(out["list_price"].astype(float).clip(lower=0.01)))
    titles = out["title"].fillna("").astype(str).str.lower()
    counts = np.zeros((len(out), TITLE_BUCKETS))
    words = np.zeros(len(out))
    for position, title in enumerate(titles):
        tokens = [t for t in "".join(ch if ch.isalnum() else " " for ch in title).split() if t]
        words[position] = len(tokens)
        for token in tokens:
            digest = hashlib.blake2b(token.encode(), digest_size=2).digest()
            counts[position, int.from_bytes(digest, "little") % TITLE_BUCKETS] += 1
    out["title_words"] = words
    for bucket in range(TITLE_BUCKETS):
        out[f"title_hash_{bucket}"] = counts[:, bucket]
    return out


def demand_target(
    rows: pd.DataFrame, correct_censoring: bool = True, share_floor: float = DEFAULT_SHARE_FLOOR
) -> np.ndarray:
    """The demand each sale row is trained and judged on.

    Args:
        rows: sale rows with the label columns.
        correct_censoring: scale sold-out SKUs' units by the arrived share (see the module
            docstring); False takes units sold as demand (what a naive model does).
        share_floor: the smallest share divided by.

    Returns:
        Demand per row (float, ≥ units sold).

    Raises:
        ValueError: a label column is missing, or the floor is outside (0, 1].
    """
    missing = [c for c in LABEL_COLUMNS if c not in rows.columns]
    if missing:
        raise ValueError(f"the sale rows lack label column(s) {missing}")
    if not 0.0 < share_floor <= 1.0:
        raise ValueError(f"share_floor must lie in (0, 1], got {share_floor}")
    units = rows[DEMAND_LABEL].astype(float).to_numpy()
    if not correct_censoring:
        return units
    sold_out = rows[SOLD_OUT_LABEL].fillna(0).astype(int).to_numpy() == 1
    share = rows[ARRIVED_SHARE_LABEL].astype(float).fillna(1.0).to_numpy()
    return np.where(sold_out, units / np.maximum(share, share_floor), units)
