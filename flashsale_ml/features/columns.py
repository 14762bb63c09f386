"""Names of the feature tables and of their columns, importable without DuckDB or Arrow.

Model code, scoring and tests need the column names of a feature snapshot but not the SQL
that computes them; :mod:`flashsale_ml.features.sql` builds exactly these columns.
``docs/features.md`` explains each feature.
"""

from __future__ import annotations

# Tables of a ``features`` snapshot (see flashsale_ml.features.snapshot).
PROPENSITY_TABLE = "propensity"  # one row per user and cutoff: features + purchase labels
ITEMS_TABLE = "items"  # one row per SKU and cutoff: item features + demand label
USER_CATEGORY_TABLE = "user_category"  # one row per user, category and cutoff
TRAFFIC_TABLE = "traffic"  # per-minute site load of each label window
SESSIONS_TABLE = "sessions"  # session-level shops (Online Shoppers) instead of the above

# Feature columns of the propensity table, in output order.
USER_FEATURES = (
    "events_1h", "events_24h", "events_7d", "events_30d",
    "views_7d", "carts_30d", "purchases_30d", "purchases_all",
    "revenue_all", "sessions_30d", "distinct_items_30d", "distinct_categories_30d",
    "cart_to_purchase_30d", "discount_purchase_share", "days_since_last_event",
    "days_since_last_purchase", "account_age_days", "accounts_per_device",
    "accounts_per_ip", "past_sale_purchases", "past_sale_treated_purchases",
    "past_sale_control_purchases", "preferred_hour", "sale_category_affinity",
    "history_days", "events_per_day", "purchases_per_day", "sessions_per_day",
)  # fmt: skip
CATEGORICAL_FEATURES = ("region", "device_type", "arm")
SALE_FEATURES = ("sale_hour", "sale_weekday", "days_to_payday", "days_to_holiday", "discount_depth")
# Labels of the propensity table: did the user buy in the label window, and for how much.
LABEL = "label_purchase"
REVENUE_LABEL = "label_revenue"
# Labels of the items table: units sold in the label window; whether the SKU sold out during
# the sale (its units are then censored by the stock); and the share of the window's
# unconstrained demand that had arrived when it sold out.
DEMAND_LABEL = "label_demand_units"
SOLD_OUT_LABEL = "label_sold_out"
ARRIVED_SHARE_LABEL = "label_arrived_share_at_sellout"
