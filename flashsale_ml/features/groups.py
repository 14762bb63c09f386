"""Item, user × category and traffic feature groups, with their labels, as of a cutoff.

Same rule as the user features: a feature reads only rows with ``ts < as_of``; a label reads
only ``[as_of, label_end)``.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from flashsale_ml.features.columns import ARRIVED_SHARE_LABEL, DEMAND_LABEL, SOLD_OUT_LABEL
from flashsale_ml.features.sql import Cutoff, prepare_cutoff

__all__ = [
    "ARRIVED_SHARE_LABEL",
    "DEMAND_LABEL",
    "SOLD_OUT_LABEL",
    "item_features",
    "traffic_window",
    "user_category_affinity",
]


def _query(con: duckdb.DuckDBPyConnection, sql: str, cutoff: Cutoff) -> pa.Table:
    """Run ``sql`` with the cutoff's parameters (DuckDB refuses unused named parameters)."""
    params = {"cid": cutoff.campaign_id, "as_of": cutoff.as_of, "label_end": cutoff.label_end}
    return con.sql(sql, params={k: v for k, v in params.items() if f"${k}" in sql}).to_arrow_table()


def item_features(con: duckdb.DuckDBPyConnection, cutoff: Cutoff) -> pa.Table:
    """Per SKU: popularity and its velocity, conversion, price and discount history, past
    flash-sale performance, stock; label: units sold in the label window (censored by stock).

    Labels of the censoring (see :mod:`flashsale_ml.models.demand.censoring`): whether the item
    sold out in the sale (``label_sold_out``), where in the window its last sale order fell,
    and the share of the sale's unconstrained demand that had arrived by then.

    ``past_sale_last_order_position`` is where in past sale windows (0 = start, 1 = end) the
    item's last sale order fell, averaged over its past sales: an early last order suggests it
    sold out, i.e. that observed sale demand was censored.
    """
    sql = f"""
    WITH agg AS (
        SELECT item_id,
            count(*) FILTER (WHERE event_type = 'view' AND ts >= $as_of - INTERVAL 1 DAY)
                AS views_24h,
            count(*) FILTER (WHERE event_type = 'view' AND ts >= $as_of - INTERVAL 7 DAY)
                AS views_7d,
            count(*) FILTER (WHERE event_type = 'view') AS views_30d,
            count(*) FILTER (WHERE event_type = 'purchase' AND ts >= $as_of - INTERVAL 7 DAY)
                AS purchases_7d,
            count(*) FILTER (WHERE event_type = 'purchase') AS purchases_30d
        FROM events
        WHERE ts < $as_of AND ts >= $as_of - INTERVAL 30 DAY
        GROUP BY item_id
    ),
    buys AS (  -- purchases only: the rows that need prices and buyers
        SELECT e.item_id,
            count(DISTINCT e.user_id) AS buyers_30d,
            avg(e.price::DECIMAL(18, 2))::DOUBLE AS avg_paid_price_30d,
            count(*) FILTER (WHERE e.price < i.list_price)::DOUBLE / count(*)
                AS discount_purchase_share_30d
        FROM events e JOIN items i USING (item_id)
        WHERE e.ts < $as_of AND e.ts >= $as_of - INTERVAL 30 DAY
            AND e.event_type = 'purchase'
        GROUP BY e.item_id
    ),
    current_sale AS (
        SELECT unnest(item_ids) AS item_id, discount_depth FROM campaigns
        WHERE campaign_id = $cid::VARCHAR
    ),
    past_campaigns AS (
        SELECT campaign_id, start_ts, end_ts, unnest(item_ids) AS item_id
        FROM campaigns WHERE end_ts <= $as_of
    ),
    past_orders AS (
        SELECT pc.item_id, pc.campaign_id,
            sum(o.qty) AS units,
            (epoch_us(max(o.ts)) - epoch_us(any_value(pc.start_ts)))::DOUBLE
                / (epoch_us(any_value(pc.end_ts)) - epoch_us(any_value(pc.start_ts)))
                AS last_order_position
        FROM past_campaigns pc
        JOIN orders o ON o.item_id = pc.item_id AND o.campaign_id = pc.campaign_id
        WHERE o.status <> 'cancelled' AND o.ts < $as_of
        GROUP BY pc.item_id, pc.campaign_id
    ),
    past AS (
        SELECT pc.item_id, count(*) AS past_sale_appearances,
            coalesce(sum(po.units), 0) AS past_sale_units,
            round(avg(po.last_order_position), 9) AS past_sale_last_order_position
        FROM past_campaigns pc LEFT JOIN past_orders po USING (item_id, campaign_id)
        GROUP BY pc.item_id
    ),
    demand AS (
        SELECT item_id, sum(qty) AS units FROM orders
        WHERE ts >= $as_of AND ts < $label_end AND status <> 'cancelled'
        GROUP BY item_id
    ),
    -- Censoring of the sale's demand by its stock (labels, read from the label window only).
    sale_orders AS (
        SELECT item_id, qty,
            (epoch_us(ts) - epoch_us($as_of::TIMESTAMPTZ))::DOUBLE
                / (epoch_us($label_end::TIMESTAMPTZ) - epoch_us($as_of::TIMESTAMPTZ))
                AS position
        FROM orders
        WHERE ts >= $as_of AND ts < $label_end AND status <> 'cancelled'
            AND campaign_id = $cid::VARCHAR
    ),
    -- Sold out: the inventory system saw the sale's allotment run out inside the window.
    sold_out AS (
        SELECT item_id,
            (epoch_us(sold_out_ts) - epoch_us($as_of::TIMESTAMPTZ))::DOUBLE
                / (epoch_us($label_end::TIMESTAMPTZ) - epoch_us($as_of::TIMESTAMPTZ))
                AS last_position
        FROM sale_stock
        WHERE campaign_id = $cid::VARCHAR AND sold_out_ts >= $as_of AND sold_out_ts < $label_end
    ),
    -- When in the window the sale's unconstrained demand arrives: the cumulative share of the
    -- units of items that did not sell out, by position in the window.
    arrival AS (
        SELECT position,
            sum(qty) OVER (ORDER BY position ROWS UNBOUNDED PRECEDING)::DOUBLE
                / sum(qty) OVER () AS share
        FROM sale_orders WHERE item_id NOT IN (SELECT item_id FROM sold_out)
    ),
    censoring AS (
        SELECT s.item_id, s.last_position, a.share
        FROM sold_out s ASOF LEFT JOIN arrival a ON s.last_position >= a.position
    )
    SELECT
        $cid::VARCHAR AS campaign_id, i.item_id, $as_of::TIMESTAMPTZ AS as_of, i.category,
        i.list_price, i.stock_on_hand,
        (cs.item_id IS NOT NULL)::INTEGER AS in_sale,
        coalesce(cs.discount_depth, 0.0) AS sale_discount_depth,
        coalesce(a.views_24h, 0) AS views_24h, coalesce(a.views_7d, 0) AS views_7d,
        coalesce(a.views_30d, 0) AS views_30d, coalesce(a.purchases_7d, 0) AS purchases_7d,
        coalesce(a.purchases_30d, 0) AS purchases_30d, coalesce(b.buyers_30d, 0) AS buyers_30d,
        -- last day's views against the 7-day daily average: > 1 means heating up
        a.views_24h::DOUBLE / nullif(a.views_7d / 7.0, 0) AS view_velocity,
        a.purchases_30d::DOUBLE / nullif(a.views_30d, 0) AS conversion_30d,
        b.avg_paid_price_30d, b.discount_purchase_share_30d,
        coalesce(p.past_sale_appearances, 0) AS past_sale_appearances,
        coalesce(p.past_sale_units, 0)::BIGINT AS past_sale_units,
        coalesce(p.past_sale_units, 0)::DOUBLE / nullif(p.past_sale_appearances, 0)
            AS past_sale_units_per_appearance,
        p.past_sale_last_order_position,
        i.cost, i.brand, i.title,
        hour($as_of::TIMESTAMPTZ) AS sale_hour, dayofweek($as_of::TIMESTAMPTZ) AS sale_weekday,
        month($as_of::TIMESTAMPTZ) AS sale_month,
        (SELECT count(*) FROM current_sale) AS sale_item_count,
        coalesce(d.units, 0)::BIGINT AS {DEMAND_LABEL},
        (c.item_id IS NOT NULL)::INTEGER AS {SOLD_OUT_LABEL},
        c.last_position AS label_sellout_position,
        round(c.share, 9) AS {ARRIVED_SHARE_LABEL}
    FROM items i
    LEFT JOIN agg a USING (item_id)
    LEFT JOIN buys b USING (item_id)
    LEFT JOIN current_sale cs USING (item_id)
    LEFT JOIN past p USING (item_id)
    LEFT JOIN demand d USING (item_id)
    LEFT JOIN censoring c USING (item_id)
    ORDER BY i.item_id
    """
    return _query(con, sql, cutoff)


def user_category_affinity(con: duckdb.DuckDBPyConnection, cutoff: Cutoff) -> pa.Table:
    """Per user and category over the last 30 days: views, carts, purchases and the category's
    share of the user's views (for recommendations and targeting)."""
    prepare_cutoff(con, cutoff)
    sql = """
    SELECT $cid::VARCHAR AS campaign_id, user_id, category, $as_of::TIMESTAMPTZ AS as_of,
        views_30d, carts_30d, purchases_30d,
        round(events_30d::DOUBLE / sum(events_30d) OVER (PARTITION BY user_id), 9)
            AS category_share_30d
    FROM cutoff_user_category
    WHERE events_30d > 0
    ORDER BY user_id, category
    """
    return _query(con, sql, cutoff)


def traffic_window(con: duckdb.DuckDBPyConnection, cutoff: Cutoff) -> pa.Table:
    """Per minute of the label window: the load to predict (requests, sessions, orders) and its
    history at the same clock time one day and one week earlier, and in the previous sale."""
    sql = """
    WITH window_minutes AS (
        SELECT ts, requests, sessions, orders FROM traffic
        WHERE ts >= $as_of AND ts < $label_end
    ),
    previous_sale AS (
        SELECT max(start_ts) AS start_ts FROM campaigns WHERE end_ts <= $as_of
    )
    SELECT $cid::VARCHAR AS campaign_id, $as_of::TIMESTAMPTZ AS as_of, w.ts,
        (epoch(w.ts) - epoch($as_of::TIMESTAMPTZ)) / 60 AS minute_of_window,
        d1.requests AS requests_1d_before, d7.requests AS requests_7d_before,
        ps.requests AS requests_previous_sale,
        w.requests AS label_requests, w.sessions AS label_sessions, w.orders AS label_orders
    FROM window_minutes w
    LEFT JOIN traffic d1 ON d1.ts = w.ts - INTERVAL 1 DAY AND d1.ts < $as_of
    LEFT JOIN traffic d7 ON d7.ts = w.ts - INTERVAL 7 DAY AND d7.ts < $as_of
    LEFT JOIN traffic ps ON ps.ts = (SELECT start_ts FROM previous_sale)
        + (w.ts - $as_of::TIMESTAMPTZ) AND ps.ts < $as_of
    ORDER BY w.ts
    """
    return _query(con, sql, cutoff)
