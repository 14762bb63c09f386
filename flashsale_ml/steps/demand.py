"""The campaign plan's stock and discount sections: the demand champion's what-if forecasts of
each sale SKU, a discount depth per SKU, and the stock to hold at the plan's service level.

Two stages, like the promotion plan's: :func:`forecast_demand` runs after the campaign's
features (one task of the campaign DAG) and writes ``demand.parquet`` to the campaign's work
folder; :func:`stock_section` turns it into the plan folder's ``stock.parquet`` once the plan
has chosen its sale-wide depth. A shop without a demand champion gets a plan without the
section, and its summary says why.
"""

from __future__ import annotations

import json
import logging
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flashsale_ml.config import Settings, get_settings

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from flashsale_ml.planning.spec import CampaignSpec

log = logging.getLogger(__name__)

DEMAND_FILE = "demand.parquet"
DEMAND_RECORD = "demand.json"
STOCK_FILE = "stock.parquet"


def forecast_demand(
    spec: CampaignSpec | str | Path | dict[str, Any],
    work_uri: str,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Forecast every sale SKU's demand (P10, P50, P90) at every candidate depth of the spec
    with the demand champion, as of the campaign's start, and recommend a depth per SKU.

    Writes ``demand.parquet`` (item_id, discount_depth, p10, p50, p90, list_price, cost,
    stock_on_hand) and ``demand.json`` (the model version, or why there is none) to the
    campaign's work folder.

    Returns:
        ``available`` (a champion forecast it), the model version, SKUs and the work folder.

    Raises:
        SpecError: the work folder belongs to another spec.
    """
    import numpy as np
    import pandas as pd

    from flashsale_ml.datasets import Snapshot
    from flashsale_ml.features.groups import item_features
    from flashsale_ml.features.sql import Cutoff
    from flashsale_ml.models import kind_for_plan_role
    from flashsale_ml.models.base import DEMAND_QUANTILES
    from flashsale_ml.models.demand.flavors import LEVEL_COLUMN
    from flashsale_ml.models.demand.quantile import QUANTILE_COLUMNS, QUANTILE_LEVELS
    from flashsale_ml.planning.output import parquet_bytes
    from flashsale_ml.registry import RegistryError
    from flashsale_ml.scoring import AliasScorer
    from flashsale_ml.steps.planning import _parse, _raw_connection, _read_stage
    from flashsale_ml.storage import open_store

    settings = settings or get_settings()
    parsed = _parse(spec)
    record = _read_stage(work_uri, "features.json", parsed)
    store = open_store(work_uri)
    kind = kind_for_plan_role(DEMAND_QUANTILES).name
    scorer = AliasScorer(kind, settings, refresh_interval_s=3600)
    try:
        version = scorer.current_version()
    except RegistryError as error:
        note = {**record, "available": False, "why": str(error)}
        store.write_bytes(DEMAND_RECORD, json.dumps(note, indent=2, sort_keys=True).encode())
        log.warning("no demand forecast for %s: %s", parsed.campaign_id, error)
        return {"campaign_id": parsed.campaign_id, "available": False, "why": str(error)}

    cutoff = Cutoff(parsed.campaign_id, parsed.start, parsed.end)
    with (
        Snapshot(record["data_uri"]) as snapshot,
        closing(_raw_connection(snapshot, settings)) as con,
    ):
        rows = item_features(con, cutoff).to_pandas()
    rows = rows[rows["item_id"].isin(parsed.skus)].sort_values("item_id").reset_index(drop=True)
    # The campaign is not in the campaigns table yet: these are its SKUs and its size.
    rows = rows.assign(in_sale=1, sale_item_count=len(parsed.skus))
    depths = sorted(parsed.discount_depths)
    parts = []
    for depth in depths:
        scenario = rows.assign(sale_discount_depth=depth)
        levels = [
            scorer.score(scenario.assign(**{LEVEL_COLUMN: level})).scores
            for level in QUANTILE_LEVELS
        ]
        quantiles = np.sort(np.maximum(np.column_stack(levels), 0.0), axis=1)
        part = pd.DataFrame(quantiles, columns=list(QUANTILE_COLUMNS))
        part.insert(0, "discount_depth", depth)
        part.insert(0, "item_id", rows["item_id"].to_numpy())
        parts.append(part)
    what_if = pd.concat(parts, ignore_index=True).sort_values(["item_id", "discount_depth"])
    # The champion is monotone in the depth by construction; the running maximum keeps a plan
    # consistent even with a model that is not.
    for column in QUANTILE_COLUMNS:
        what_if[column] = what_if.groupby("item_id")[column].cummax()
    facts = rows[["item_id", "list_price", "cost", "stock_on_hand"]]
    what_if = what_if.merge(facts, on="item_id", how="left").reset_index(drop=True)
    store.write_bytes(DEMAND_FILE, parquet_bytes(_arrow(what_if)))
    model = f"{scorer.name}/{version}"
    note = {
        **record,
        "available": True,
        "kind": kind,
        "model": model,
        "skus": len(rows),
        "depths": depths,
    }
    store.write_bytes(DEMAND_RECORD, json.dumps(note, indent=2, sort_keys=True).encode())
    log.info("demand of %d SKUs at depths %s with %s", len(rows), depths, model)
    return {"campaign_id": parsed.campaign_id, "available": True, "model": model, "skus": len(rows)}


def stock_section(
    work_uri: str, spec: CampaignSpec, plan_depth: float
) -> tuple[pa.Table | None, dict[str, Any]]:
    """The plan folder's stock and discount section from ``demand.parquet``.

    Args:
        work_uri: the campaign's work folder.
        spec: the campaign (its candidate depths are the allowed depths, its service level
            the stock plan's target).
        plan_depth: the sale-wide depth the promotion plan chose.

    Returns:
        ``stock.parquet``'s table (None without a forecast) and the section's summary:
        totals, the model, and per-SKU rows for the approval text.

    Raises:
        DataError: a SKU's cost is missing (the margin cannot be computed).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from flashsale_ml.steps.planning import _read_stage
    from flashsale_ml.storage import open_store

    store = open_store(work_uri)
    if not store.exists(DEMAND_RECORD):
        return None, {"available": False, "why": "demand was not forecast for this plan"}
    note = json.loads(store.read_bytes(DEMAND_RECORD))
    features = _read_stage(work_uri, "features.json", spec)
    if note.get("data_snapshot_id") != features["data_snapshot_id"]:
        # Features were rebuilt on newer data after the forecast: it is stale.
        return None, {"available": False, "why": "the demand forecast predates the features"}
    if not note.get("available"):
        return None, {"available": False, "why": note.get("why", "no demand forecast")}
    from flashsale_ml.models.demand.decisions import recommend_depth, stock_plan

    what_if = pq.read_table(pa.BufferReader(store.read_bytes(DEMAND_FILE))).to_pandas()
    items = (
        what_if.drop_duplicates("item_id")[["item_id", "list_price", "cost", "stock_on_hand"]]
        .rename(columns={"stock_on_hand": "stock"})
        .reset_index(drop=True)
    )
    recommended = recommend_depth(
        what_if[["item_id", "discount_depth", "p10", "p50", "p90"]],
        items,
        allowed_depths=sorted(spec.discount_depths),
    )
    at_plan = what_if[what_if["discount_depth"] == plan_depth][["item_id", "p10", "p50", "p90"]]
    stock = stock_plan(
        at_plan.reset_index(drop=True),
        spec.service_level,
        on_hand=items.set_index("item_id")["stock"],
    )
    advice = recommended[
        [
            "item_id",
            "recommended_depth",
            "expected_units",
            "expected_revenue",
            "expected_margin",
            "margin_at_no_discount",
        ]
    ]
    table = (
        at_plan.merge(stock, on="item_id")
        .merge(advice, on="item_id")
        .sort_values("item_id")
        .reset_index(drop=True)
    )
    table.insert(1, "plan_depth", plan_depth)
    summary = {
        "available": True,
        "kind": note["kind"],
        "model": note["model"],
        "service_level": spec.service_level,
        "plan_depth": plan_depth,
        "skus": len(table),
        "expected_units_p50": float(table["p50"].sum()),
        "stock_to_hold": int(table["quantity"].sum()),
        "shortfall_units": int(table["shortfall"].sum()) if "shortfall" in table else None,
        "skus_recommending_other_depth": int((table["recommended_depth"] != plan_depth).sum()),
    }
    return _arrow(table), summary


def render_stock_markdown(
    section: dict[str, Any], table: pd.DataFrame | None, top: int = 10
) -> str:
    """The approval text's stock and discount section: the totals, then the SKUs with the
    largest P50 (units; margins in the shop's currency, like the plan's)."""
    if not section.get("available"):
        return f"\n## Stock and discount\n\nNot planned: {section.get('why')}.\n"
    shortfall = section.get("shortfall_units")
    other = section["skus_recommending_other_depth"]
    lines = [
        "",
        "## Stock and discount",
        "",
        f"Demand forecast by `{section['model']}` for {section['skus']} SKUs at the plan's "
        f"depth {section['plan_depth']:.0%}: {section['expected_units_p50']:,.0f} units "
        "(sum of the P50s). "
        f"Stock to hold at a {section['service_level']:.0%} service level: "
        f"**{section['stock_to_hold']:,} units**"
        # Summed over the SKUs short of their stock: others' surplus does not cover them.
        + (f"; {shortfall:,} to bring in where a SKU has less on hand." if shortfall else "."),
        (
            f"{other} SKU{'' if other == 1 else 's'} would earn more margin at another depth "
            "(column *best depth*)."
            if other
            else "Every SKU earns its highest expected margin at the plan's depth."
        ),
        "",
    ]
    if table is not None and len(table) > top:
        lines += [f"Top {top} of {len(table)} SKUs by P50:", ""]
    lines += [
        "| SKU | P10 | P50 | P90 | stock to hold | on hand | to bring in | best depth "
        "| margin at best depth |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    if table is not None:
        ordered = table.sort_values(["p50", "item_id"], ascending=[False, True]).head(top)
        for row in ordered.itertuples():
            on_hand = getattr(row, "on_hand", None)
            to_bring = getattr(row, "shortfall", None)
            lines.append(
                f"| {row.item_id} | {row.p10:,.0f} | {row.p50:,.0f} | {row.p90:,.0f} | "
                f"{row.quantity:,} | {_count(on_hand)} | {_count(to_bring)} | "
                f"{row.recommended_depth:.0%} | {row.expected_margin:,.0f} |"
            )
    lines += [
        "",
        "P10 / P50 / P90: the forecast's quantiles of units demanded at the plan's depth.",
    ]
    return "\n".join(lines) + "\n"


def _count(value: Any) -> str:
    """A unit count, blank where unknown."""
    import math

    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:,.0f}"


def _arrow(frame: pd.DataFrame) -> pa.Table:
    import pyarrow as pa

    return pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
