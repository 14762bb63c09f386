# ruff: noqa: E501  (SQL fragments must match the source exactly)
"""Point-in-time bugs in the feature SQL (issue 23): each leaks data from after the cutoff."""

from tools.mutation.run import Mutation

B = "flashsale_ml/features/sql.py"
G = "flashsale_ml/features/groups.py"
TESTS = (
    "tests/test_features_point_in_time.py",
    "tests/test_feature_groups.py",
    "tests/test_point_in_time_all_sources.py",
)

MUTATIONS = [
    Mutation(
        "a_past_sales_to_label_end",
        B,
        "        WHERE o.ts < $as_of AND o.campaign_id IS NOT NULL",
        "        WHERE o.ts < $label_end AND o.campaign_id IS NOT NULL",
        TESTS,
        "the current sale's orders leak into past_sale_* (AUC 0.869 from that feature alone)",
    ),
    Mutation(
        "b_account_age_to_label_end",
        B,
        "        (epoch_us($as_of::TIMESTAMPTZ) - epoch_us(u.signup_ts)) / 86400e6 AS account_age_days,",
        "        (epoch_us($label_end::TIMESTAMPTZ) - epoch_us(u.signup_ts)) / 86400e6 AS account_age_days,",
        TESTS,
        "account age measured at the label end",
    ),
    Mutation(
        "c_accounts_per_ip_to_label_end",
        B,
        "        SELECT ip_hash, count(DISTINCT user_id) AS n FROM cutoff_user_device GROUP BY ALL",
        "        SELECT ip_hash, count(DISTINCT user_id) AS n FROM events WHERE ts < $label_end GROUP BY ALL",
        TESTS,
        "accounts created after the cutoff counted per IP",
    ),
    Mutation(
        "d_affinity_with_window_orders",
        B,
        "        FROM cutoff_user_category uc LEFT JOIN sale_cats sc USING (category)",
        "        FROM (SELECT user_id, category, events_all, events_30d FROM cutoff_user_category UNION ALL SELECT o.user_id, i.category, count(*), 0 FROM orders o JOIN items i USING (item_id) WHERE o.ts >= $as_of AND o.ts < $label_end GROUP BY ALL) uc LEFT JOIN sale_cats sc USING (category)",
        TESTS,
        "category affinity sees the sale's own orders",
    ),
    Mutation(
        "e_history_days_to_label_end",
        B,
        "        SELECT least(30.0, (epoch_us($as_of::TIMESTAMPTZ) - epoch_us(min(ts))) / 86400e6)",
        "        SELECT least(30.0, (epoch_us($label_end::TIMESTAMPTZ) - epoch_us(min(ts))) / 86400e6)",
        TESTS,
        "history length measured to the label end",
    ),
    Mutation(
        "f_purchases_per_day_to_label_end",
        B,
        "        coalesce(ag.purchases_30d, 0) / greatest(ob.history_days, 1.0) AS purchases_per_day,",
        "        coalesce(ag.purchases_30d, 0) / greatest(least(30.0, ob.history_days + (epoch_us($label_end::TIMESTAMPTZ) - epoch_us($as_of::TIMESTAMPTZ)) / 86400e6), 1.0) AS purchases_per_day,",
        TESTS,
        "a per-day rate divided by days up to the label end",
    ),
    Mutation(
        "g_population_signup_to_label_end",
        B,
        "        WHERE ($cid::VARCHAR IS NULL OR $everyone::BOOLEAN) AND signup_ts < $as_of",
        "        WHERE ($cid::VARCHAR IS NULL OR $everyone::BOOLEAN) AND signup_ts < $label_end",
        TESTS,
        "users who sign up during the window join the population",
    ),
    Mutation(
        "h_user_category_boundary",
        B,
        "            FROM events e JOIN item_codes ic USING (item_id)\n            WHERE e.ts < $as_of",
        "            FROM events e JOIN item_codes ic USING (item_id)\n            WHERE e.ts <= $as_of",
        TESTS,
        "an event exactly at the cutoff counts",
    ),
    Mutation(
        "i_item_past_sales_include_current",
        G,
        "        FROM campaigns WHERE end_ts <= $as_of\n",
        "        FROM campaigns WHERE start_ts <= $as_of\n",
        TESTS,
        "item features see the current sale as a past one",
    ),
    Mutation(
        "j_item_past_orders_to_label_end",
        G,
        "        WHERE o.status <> 'cancelled' AND o.ts < $as_of",
        "        WHERE o.status <> 'cancelled' AND o.ts < $label_end",
        TESTS,
        "item demand history sees the window's orders",
    ),
    Mutation(
        "k_past_sales_boundary",
        B,
        "        WHERE o.ts < $as_of AND o.campaign_id IS NOT NULL",
        "        WHERE o.ts <= $as_of AND o.campaign_id IS NOT NULL",
        TESTS,
        "an order exactly at the cutoff counts as a past sale",
    ),
]
