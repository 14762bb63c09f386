"""Evaluate what a campaign caused, against its randomized holdout, from a raw snapshot.

The work is split the way it scales: DuckDB turns the snapshot's facts (assignments, orders,
items; or a per-user outcomes table such as Hillstrom's) into per-user outcomes and then into
sufficient statistics per arm, segment and bucket; :mod:`flashsale_ml.evaluation.effects`
turns those into intervals; nothing per user crosses into Python except the labels written
back for retraining (as Arrow, straight into a snapshot).

Before any effect is computed, :mod:`flashsale_ml.evaluation.integrity` refuses a campaign
whose data cannot support one (sample-ratio mismatch, a user in two arms, activity before
assignment, an outcome window that has not closed, a missing arm).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from flashsale_ml.contract import CONTROL_ARM, RANDOMIZED, TARGETED
from flashsale_ml.errors import DataError
from flashsale_ml.evaluation.effects import (
    Interval,
    Moments,
    adjust_p_values,
    bucket_bootstrap_difference,
    cuped_difference,
    ratio_difference,
    relative_lift,
    welch_difference,
)
from flashsale_ml.evaluation.integrity import (
    EvaluationIntegrityError,
    check_arms_present,
    check_exposure_after_assignment,
    check_outcome_window_complete,
    check_sample_ratio,
    check_single_arm_per_user,
    expected_arm_shares,
)
from flashsale_ml.evaluation.results import (
    ALL_USERS,
    ArmTotals,
    CampaignEvaluation,
    CumulativeEffect,
    MetricEffect,
)
from flashsale_ml.evaluation.settings import EvaluationConfig

log = logging.getLogger(__name__)

SEGMENTS = ("high", "mid", "low")
# Metrics from the shop's own facts (orders), and the ones an outcomes table may carry.
FACT_METRICS = ("conversion", "orders", "revenue", "margin")
TOTAL_METRICS = ("orders", "revenue", "margin")


@dataclass(frozen=True)
class CampaignDesign:
    campaign_id: str
    start: datetime
    end: datetime
    control: str
    arms: tuple[str, ...]
    holdout_share: float
    # contract.RANDOMIZED or contract.TARGETED: which sample-ratio test fits the assignment.
    design: str = "randomized"


def _as_utc(value: Any) -> datetime:
    from datetime import UTC

    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def campaign_design(con, campaign_id: str) -> CampaignDesign:
    """The campaign's row: its window, promotion types and holdout share.

    Raises:
        DataError: the campaign is not in the snapshot.
    """
    has_design = "design" in {r[0] for r in con.execute("DESCRIBE campaigns").fetchall()}
    row = con.execute(
        "SELECT start_ts, end_ts, promo_types, holdout_share, "
        f"{'design' if has_design else 'NULL'} FROM campaigns WHERE campaign_id = ?",
        [campaign_id],
    ).fetchone()
    if row is None:
        known = [
            r[0]
            for r in con.execute("SELECT campaign_id FROM campaigns ORDER BY start_ts").fetchall()
        ]
        raise DataError(
            f"campaigns.campaign_id: no campaign {campaign_id!r} in the snapshot "
            f"(campaigns: {', '.join(known[:20]) or 'none'})"
        )
    start, end, promo_types, holdout_share, design = row
    if not promo_types:
        raise EvaluationIntegrityError(
            "campaigns",
            "promo_types",
            "a campaign has at least one promotion type besides control",
            f"campaign {campaign_id} has none, so there is nothing to compare with control",
        )
    if holdout_share is None or not 0.0 < holdout_share < 1.0:
        raise EvaluationIntegrityError(
            "campaigns",
            "holdout_share",
            "the control share lies strictly between 0 and 1",
            f"campaign {campaign_id} has holdout_share {holdout_share}: without a randomized "
            "holdout no effect can be measured",
        )
    return CampaignDesign(
        campaign_id,
        _as_utc(start),
        _as_utc(end),
        CONTROL_ARM,
        tuple(promo_types),
        holdout_share,
        design or RANDOMIZED,
    )


# --- SQL: per-user outcomes -------------------------------------------------------------------

# Per assigned user: the outcome metrics in [start, outcome_end), the same over the pre-period
# [pre_start, start) (the CUPED covariate), spend before the sale (value tier) and a hash
# bucket. Cancelled and returned order lines count for nothing.
_FACT_OUTCOMES_SQL = """
WITH a AS (
    SELECT user_id, any_value(arm) AS arm FROM assignments
    WHERE campaign_id = $cid GROUP BY user_id
),
lines AS (  -- conversion and orders count every order placed (the purchase decision);
            -- revenue, margin and incentive only completed lines (net of cancellations)
    SELECT o.user_id, o.ts, o.order_id, (o.status = 'completed') AS kept,
           o.qty * o.unit_price AS revenue,
           o.qty * (o.unit_price - coalesce(i.cost, 0.0)) AS margin,
           o.qty * o.discount AS incentive
    FROM orders o LEFT JOIN items i USING (item_id)
    WHERE o.ts < $outcome_end AND o.user_id IN (SELECT user_id FROM a)
),
post AS (
    SELECT user_id, count(DISTINCT order_id) AS orders,
           sum(revenue) FILTER (WHERE kept) AS revenue, sum(margin) FILTER (WHERE kept) AS margin,
           sum(incentive) FILTER (WHERE kept) AS incentive, min(ts) AS first_ts,
           count(*) FILTER (WHERE ts < $end) AS sale_orders
    FROM lines WHERE ts >= $start GROUP BY user_id
),
pre AS (
    SELECT user_id, count(DISTINCT order_id) AS orders,
           sum(revenue) FILTER (WHERE kept) AS revenue, sum(margin) FILTER (WHERE kept) AS margin
    FROM lines WHERE ts >= $pre_start AND ts < $start GROUP BY user_id
),
history AS (
    SELECT user_id, sum(revenue) FILTER (WHERE kept) AS spend FROM lines
    WHERE ts < $start GROUP BY user_id
),
per_user AS (
    SELECT a.user_id, a.arm,
        (coalesce(post.orders, 0) > 0)::DOUBLE AS conversion,
        -- bought while the sale ran: what a purchase-propensity model predicts
        (coalesce(post.sale_orders, 0) > 0)::DOUBLE AS sale_conversion,
        coalesce(post.orders, 0)::DOUBLE AS orders,
        coalesce(post.revenue, 0.0) AS revenue,
        coalesce(post.margin, 0.0) AS margin,
        coalesce(post.incentive, 0.0) AS incentive,
        (coalesce(pre.orders, 0) > 0)::DOUBLE AS pre_conversion,
        coalesce(pre.orders, 0)::DOUBLE AS pre_orders,
        coalesce(pre.revenue, 0.0) AS pre_revenue,
        coalesce(pre.margin, 0.0) AS pre_margin,
        coalesce(history.spend, 0.0) AS value,
        epoch(post.first_ts - $start::TIMESTAMPTZ) / 3600.0 AS hours_to_first
    FROM a LEFT JOIN post USING (user_id) LEFT JOIN pre USING (user_id)
    LEFT JOIN history USING (user_id)
)
SELECT * FROM per_user
"""

# A per-user outcomes table (Hillstrom's campaign_outcomes): its metric columns, and a
# pre-period covariate where the source has one.
_TABLE_OUTCOMES_SQL = """
WITH a AS (
    SELECT user_id, any_value(arm) AS arm FROM assignments
    WHERE campaign_id = $cid GROUP BY user_id
)
SELECT a.user_id, a.arm, {metrics}, {covariates}, {value} AS value,
       NULL::DOUBLE AS hours_to_first
-- an assigned user without an outcomes row did nothing: zeros, never dropped (dropping them
-- would compare only the active users of each arm)
FROM a LEFT JOIN campaign_outcomes o ON o.user_id = a.user_id AND o.campaign_id = $cid
{joins}
"""


def _tiers_sql(source: str) -> str:
    """Value tiers as :func:`flashsale_ml.evaluation.segments.value_tiers` assigns them: the
    percentile of the average rank of past spend (ties share it): top 20 % high, next 30 %
    mid, the rest low."""
    return f"""
    SELECT *,
        CASE WHEN pct > 0.8 THEN 'high' WHEN pct > 0.5 THEN 'mid' ELSE 'low' END AS segment,
        hash(user_id) % $buckets AS bucket
    FROM (
        SELECT *, (rank() OVER (ORDER BY value) + (count(*) OVER (PARTITION BY value) - 1) / 2.0)
            / count(*) OVER () AS pct
        FROM ({source})
    )
    """


def _moment_columns(metrics: Sequence[str], covariates: dict[str, str | None]) -> str:
    parts = ["count(*)::DOUBLE AS n"]
    for m in metrics:
        x = covariates.get(m)
        parts += [f"sum({m}) AS {m}__sy", f"sum({m} * {m}) AS {m}__sy2"]
        if x:
            parts += [f"sum({x}) AS {m}__sx", f"sum({x} * {x}) AS {m}__sx2"]
            parts += [f"sum({m} * {x}) AS {m}__sxy"]
    return ", ".join(parts)


def _moments(row: dict[str, float], metric: str, with_covariate: bool) -> Moments:
    if with_covariate:
        return Moments(
            row["n"],
            row[f"{metric}__sy"],
            row[f"{metric}__sy2"],
            row[f"{metric}__sx"],
            row[f"{metric}__sx2"],
            row[f"{metric}__sxy"],
        )
    return Moments(row["n"], row[f"{metric}__sy"], row[f"{metric}__sy2"])


# --- the evaluation ---------------------------------------------------------------------------


@dataclass(frozen=True)
class OutcomeSource:
    """Where per-user outcomes come from.

    Attributes:
        kind: ``facts`` (orders in the outcome window) or ``table`` (a per-user outcomes table).
        metrics: the metrics, headline first.
        covariates: metric -> its pre-period covariate column (None: no CUPED).
        complete_by_construction: a per-user outcomes table already covers its window.
    """

    kind: Literal["facts", "table"]
    metrics: tuple[str, ...]
    covariates: dict[str, str | None]
    value_column: str
    joins: str = ""
    complete_by_construction: bool = False
    covariate_label: str = "the same metric before the sale"


def outcome_source(tables: set[str], con) -> OutcomeSource:
    """Facts when the snapshot has orders; else its ``campaign_outcomes`` table.

    Raises:
        DataError: neither.
    """
    if "orders" in tables:
        return OutcomeSource(
            "facts",
            FACT_METRICS,
            {m: f"pre_{m}" for m in FACT_METRICS},
            "value",
        )
    if "campaign_outcomes" in tables:
        columns = [r[0] for r in con.execute("DESCRIBE campaign_outcomes").fetchall()]
        metrics = tuple(c for c in ("conversion", "visit", "spend") if c in columns)
        # Hillstrom: last year's spend ('history') is the pre-period covariate of every metric
        # and the value of a customer.
        if "hillstrom_customers" in tables:
            covariates = {m: "h.history" for m in metrics}
            return OutcomeSource(
                "table",
                metrics,
                covariates,
                "h.history",
                joins="LEFT JOIN hillstrom_customers h ON h.user_id = a.user_id",
                complete_by_construction=True,
                covariate_label="last year's spend",
            )
        if "experiment_covariates" in tables:  # an external experiment's mapped covariate
            return OutcomeSource(
                "table",
                metrics,
                {m: "cv.pre_value" for m in metrics},
                "coalesce(cv.pre_value, 0.0)",
                joins="LEFT JOIN experiment_covariates cv ON cv.user_id = a.user_id",
                complete_by_construction=True,
                covariate_label="the experiment's mapped covariate",
            )
        return OutcomeSource(
            "table", metrics, dict.fromkeys(metrics), "0.0", complete_by_construction=True
        )
    raise DataError(
        "orders / campaign_outcomes: the snapshot has neither, so there are no outcomes to "
        "evaluate (rule: a campaign's outcomes come from orders or from a per-user table)"
    )


def per_user_sql(source: OutcomeSource) -> str:
    if source.kind == "facts":
        return _FACT_OUTCOMES_SQL
    metric_sql = ", ".join(f"coalesce(o.{m}, 0)::DOUBLE AS {m}" for m in source.metrics)
    covariate_sql = ", ".join(
        f"{x}::DOUBLE AS pre_{m}" if x else f"NULL::DOUBLE AS pre_{m}"
        for m, x in source.covariates.items()
    )
    return _TABLE_OUTCOMES_SQL.format(
        metrics=metric_sql, covariates=covariate_sql, value=source.value_column, joins=source.joins
    )


def evaluate_campaign(
    con,
    campaign_id: str,
    config: EvaluationConfig,
    seed: int,
    data_uri: str,
    data_snapshot_id: str,
    data_as_of: datetime | None,
    tables: set[str],
) -> tuple[CampaignEvaluation, Labels]:
    """Check the campaign's integrity, then measure its effects.

    Args:
        con: DuckDB with one view per snapshot table (:func:`flashsale_ml.duck.connect`).
        campaign_id: the campaign.
        config: windows, correction, bootstrap.
        seed: the bootstrap's seed.
        data_uri, data_snapshot_id: lineage of the data.
        data_as_of: when the data was extracted (the outcome window must have closed by then).
        tables: the snapshot's tables.

    Returns:
        The evaluation and the per-user labels (campaign, user, arm, segment, outcomes) as a
        :class:`Labels` view over the connection.

    Raises:
        EvaluationIntegrityError: a check failed (table, column, rule and numbers in it).
        DataError: the campaign or its outcomes are missing.
    """
    design = campaign_design(con, campaign_id)
    source = outcome_source(tables, con)
    outcome_end = design.end + timedelta(hours=config.outcome_window_hours)
    if source.complete_by_construction:
        outcome_end = design.end
    else:
        check_outcome_window_complete(campaign_id, outcome_end, data_as_of)

    params = {
        "cid": campaign_id,
        "start": design.start,
        "end": design.end,
        "outcome_end": outcome_end,
        "pre_start": design.start - timedelta(days=config.pre_period_days),
        "buckets": config.buckets,
    }
    _check_assignments(con, design, source, params, config)
    arm_users = dict(
        con.execute(
            "SELECT arm, count(DISTINCT user_id) FROM assignments WHERE campaign_id = $cid "
            "GROUP BY arm",
            {"cid": campaign_id},
        ).fetchall()
    )
    expected = expected_arm_shares(design.control, design.arms, design.holdout_share)
    check_arms_present(arm_users, list(expected), campaign_id)
    if design.design == TARGETED:
        # A plan chose each user's promotion, so the arms' sizes are the optimizer's; what was
        # randomized is the holdout among the targeted users: test that split.
        treated = sum(n for arm, n in arm_users.items() if arm != design.control)
        srm_p = check_sample_ratio(
            {design.control: arm_users.get(design.control, 0), "treated (pooled)": treated},
            {design.control: design.holdout_share, "treated (pooled)": 1 - design.holdout_share},
            campaign_id,
            config.srm_alpha,
        )
    else:
        srm_p = check_sample_ratio(arm_users, expected, campaign_id, config.srm_alpha)

    sql = per_user_sql(source)
    used = {k: v for k, v in params.items() if f"${k}" in sql or k == "buckets"}
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE eval_users AS {_tiers_sql(sql)}",
        {k: v for k, v in used.items()},
    )
    pairs, matching_notes = _match_plan_arms(con, design)
    matched = any(group.startswith("cmp:") for pair in pairs.values() for group in pair)
    covariates = {m: (f"pre_{m}" if source.covariates.get(m) else None) for m in source.metrics}
    columns = _moment_columns(source.metrics, covariates)
    if source.kind == "facts":
        # revenue per order: a ratio of sums (y = revenue, x = orders), for the delta method
        columns += (
            ", sum(orders * orders) AS rpo__sx2, sum(revenue * orders) AS rpo__sxy"
            ", sum(incentive) AS incentive, sum(incentive * incentive) AS incentive__sy2"
        )
    # Keyed by group: ``arm:<arm>``, and in a targeted campaign also ``cmp:<group>`` (see
    # _match_plan_arms); each promotion's effect compares the two groups of its pair.
    overall = _grouped(con, columns, "", matched)
    # Tiers need a value that differs between users (without a covariate every user ties).
    segmented = con.execute("SELECT count(DISTINCT value) > 1 FROM eval_users").fetchone()[0]
    if not segmented:
        con.execute(f"UPDATE eval_users SET segment = '{ALL_USERS}'")
    by_segment = _grouped(con, columns, "segment", matched) if segmented else {}
    by_bucket = _grouped(con, columns, "bucket", matched)

    effects: list[MetricEffect] = []
    for metric in source.metrics:
        has_x = covariates[metric] is not None
        for arm in design.arms:
            treated_group, control_group = pairs[arm]
            treated, control = overall[(treated_group,)], overall[(control_group,)]
            effects.append(
                _effect(
                    metric,
                    arm,
                    ALL_USERS,
                    _moments(treated, metric, has_x),
                    _moments(control, metric, has_x),
                    config,
                    bootstrap=_bucket_interval(
                        by_bucket, metric, treated_group, control_group, config, seed
                    ),
                )
            )
        effects += _segment_effects(by_segment, metric, has_x, design, pairs, config)

    totals, incentive_notes = (
        _totals(overall, effects, design, pairs, config) if source.kind == "facts" else ((), ())
    )
    if source.kind == "facts":
        # revenue per order needs orders on both sides; an arm without any gets no ratio
        effects += [
            _revenue_per_order(overall, arm, pairs[arm], config)
            for arm in design.arms
            if overall[(pairs[arm][0],)]["orders__sy"] > 0
            and overall[(pairs[arm][1],)]["orders__sy"] > 0
        ]
    cumulative = (
        _cumulative(con, design, pairs, matched, outcome_end, config)
        if source.kind == "facts"
        else ()
    )
    evaluation = CampaignEvaluation(
        campaign_id=campaign_id,
        data_uri=data_uri,
        data_snapshot_id=data_snapshot_id,
        start=design.start.isoformat(),
        end=design.end.isoformat(),
        outcome_end=outcome_end.isoformat(),
        control=design.control,
        arms=design.arms,
        arm_users={k: int(v) for k, v in arm_users.items()},
        expected_shares=expected,
        srm_p_value=float(srm_p),
        metrics=source.metrics,
        effects=tuple(effects),
        correction=config.correction,
        totals=tuple(totals),
        cumulative=tuple(cumulative),
        notes=(*matching_notes, *_notes(source, config, segmented), *incentive_notes),
    )
    quoted = campaign_id.replace("'", "''")
    labels_sql = (
        f"SELECT '{quoted}' AS campaign_id, user_id, arm, segment, "
        + ", ".join(source.metrics)
        + (", sale_conversion, incentive" if source.kind == "facts" else "")
        + " FROM eval_users ORDER BY user_id"
    )
    return evaluation, Labels(con, labels_sql, "SELECT user_id, arm, cmp FROM eval_users")


@dataclass(frozen=True)
class Labels:
    """The per-user labels of an evaluation, still in DuckDB (``eval_users``): read them in
    batches (what the step writes into the labels snapshot, so ten million users never sit
    in Python at once) or whole (small campaigns, tests). Valid while the connection is open.
    """

    con: Any
    sql: str
    # Each user's arm and comparison group (``cmp``: see _match_plan_arms; null where the
    # campaign is compared by arm alone), for measures that must pair users as the report does.
    groups_sql: str = ""

    def batches(self, rows: int = 1 << 20):
        """Record batches of at most ``rows`` rows, in user order."""
        reader = self.con.sql(self.sql).fetch_record_batch(rows)
        yield from reader

    def to_table(self) -> pa.Table:
        return self.con.sql(self.sql).to_arrow_table()

    def names(self) -> list[str]:
        return list(self.con.sql(self.sql).columns)

    def comparison_groups(self) -> pa.Table:
        """``user_id``, ``arm`` and ``cmp`` of every evaluated user."""
        return self.con.sql(self.groups_sql).to_arrow_table()

    def columns(self, *names: str) -> pa.Table:
        """Only some columns (e.g. ``user_id`` and one outcome), whole."""
        return self.con.sql(f"SELECT {', '.join(names)} FROM ({self.sql})").to_arrow_table()


def _match_plan_arms(
    con, design: CampaignDesign
) -> tuple[dict[str, tuple[str, str]], tuple[str, ...]]:
    """Say which two groups of users each promotion's effect compares, and set each user's
    comparison group (``eval_users.cmp``) where a plan made the campaign. Returns (arm ->
    (treated group, control group), notes for the report); a group is ``arm:<arm>`` or
    ``cmp:<comparison group>``.

    In a randomized campaign a promotion's users are compared with every control user. A
    targeted campaign's plan gave each promotion to the users it suited, so against every
    control user a promotion's effect would also measure whom the plan picked (the plan's
    users of one promotion buy at other rates than another's). There a promotion is compared
    within its plan arm (``assignments.plan_arm``): its treated users against the control
    users the plan meant for it. A promotion the plan gave nobody (only exploration users got
    it) is compared among explorers: its explorers against the control users the exploration
    draw would have made explorers (control without a plan arm). Where neither pair has two
    users on each side, or the campaign recorded no plan arms, the promotion is compared with
    every control user and a note says so.
    """
    con.execute("ALTER TABLE eval_users ADD COLUMN cmp VARCHAR")
    control = design.control
    plain = {arm: (f"arm:{arm}", f"arm:{control}") for arm in design.arms}
    if design.design != TARGETED:
        return plain, ()
    columns = {row[0] for row in con.execute("DESCRIBE assignments").fetchall()}
    recorded = (
        "plan_arm" in columns
        and con.execute(
            "SELECT count(*) FROM assignments WHERE campaign_id = $cid AND plan_arm IS NOT NULL",
            {"cid": design.campaign_id},
        ).fetchone()[0]
    )
    if not recorded:
        return plain, (
            "Targeted campaign without plan arms (played before they were recorded): each "
            "promotion is compared with every control user, which also measures whom the plan "
            "picked for it.",
        )
    con.execute(
        """
        UPDATE eval_users e SET cmp = CASE
            WHEN e.arm = $control AND p.plan_arm IS NOT NULL THEN $control || '|' || p.plan_arm
            WHEN e.arm = $control THEN $control || '|exploration'
            WHEN p.plan_arm = e.arm THEN e.arm
            WHEN p.plan_arm IS NULL THEN e.arm || '|exploration'
        END
        FROM (SELECT user_id, any_value(plan_arm) AS plan_arm FROM assignments
              WHERE campaign_id = $cid GROUP BY user_id) p
        WHERE p.user_id = e.user_id
        """,
        {"cid": design.campaign_id, "control": control},
    )
    groups = dict(
        con.execute(
            "SELECT cmp, count(*) FROM eval_users WHERE cmp IS NOT NULL GROUP BY cmp"
        ).fetchall()
    )
    pairs, how = {}, []
    for arm in design.arms:
        within_plan = (arm, f"{control}|{arm}")
        among_explorers = (f"{arm}|exploration", f"{control}|exploration")
        for pair, words in (
            (within_plan, "within its plan arm"),
            (among_explorers, "among exploration users"),
        ):
            if min(groups.get(pair[0], 0), groups.get(pair[1], 0)) >= 2:
                pairs[arm] = (f"cmp:{pair[0]}", f"cmp:{pair[1]}")
                how.append(
                    f"{arm} {words} ({groups[pair[0]]:,} treated, {groups[pair[1]]:,} control)"
                )
                break
        else:
            pairs[arm] = plain[arm]
            how.append(
                f"{arm} against every control user (too few users within its plan arm or among "
                "explorers; this also measures whom the plan picked)"
            )
    return pairs, (
        "Targeted campaign: each promotion is compared with the control users the plan meant "
        "for the same promotion, so its effect is the promotion's on the users the plan gives "
        "it to (against every control user it would also measure whom the plan picked): "
        + "; ".join(how)
        + ".",
    )


def _grouped(con, columns: str, by: str, matched: bool) -> dict[tuple, dict[str, float]]:
    """:func:`_aggregate` by arm (keys ``arm:<arm>``) and, for a matched targeted campaign,
    by comparison group (``cmp:<group>``), each optionally also by ``by``."""
    out = {}
    for column in ("arm", "cmp") if matched else ("arm",):
        for key, row in _aggregate(con, columns, f"{column}, {by}" if by else column).items():
            out[(f"{column}:{key[0]}", *key[1:])] = row
    return out


def _check_assignments(con, design: CampaignDesign, source: OutcomeSource, params, config) -> None:
    cid = design.campaign_id
    several, example = con.execute(
        "SELECT count(*), min(user_id) FROM (SELECT user_id FROM assignments "
        "WHERE campaign_id = $cid GROUP BY user_id HAVING count(DISTINCT arm) > 1)",
        {"cid": cid},
    ).fetchone()
    check_single_arm_per_user(int(several), example, cid)
    if source.kind != "facts":
        return
    exposed, example, gap = con.execute(
        """
        SELECT count(DISTINCT o.user_id), min(o.user_id),
               max(epoch(a.assigned_ts) - epoch(o.ts))
        FROM orders o JOIN assignments a
          ON a.user_id = o.user_id AND a.campaign_id = o.campaign_id
        WHERE o.campaign_id = $cid AND o.ts < a.assigned_ts
        """,
        {"cid": cid},
    ).fetchone()
    check_exposure_after_assignment(int(exposed), example, gap, cid)


def _aggregate(con, columns: str, by: str) -> dict[tuple, dict[str, float]]:
    cursor = con.execute(f"SELECT {by}, {columns} FROM eval_users GROUP BY {by}")
    names = [d[0] for d in cursor.description]
    rows = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
    keys = [k.strip() for k in by.split(",")]
    return {
        tuple(r[k] for k in keys): {k: float(v or 0.0) for k, v in r.items() if k not in keys}
        for r in rows
    }


def _effect(
    metric: str,
    arm: str,
    segment: str,
    treated: Moments,
    control: Moments,
    config: EvaluationConfig,
    bootstrap: Interval | None = None,
) -> MetricEffect:
    difference = welch_difference(treated, control, config.confidence)
    lift = relative_lift(treated, control, config.confidence) if control.mean_y != 0 else None
    cuped = (
        cuped_difference(treated, control, config.confidence)
        if treated.sum_x2 > 0 or control.sum_x2 > 0
        else None
    )
    return MetricEffect(
        metric=metric,
        arm=arm,
        segment=segment,
        n_treated=int(treated.n),
        n_control=int(control.n),
        mean_treated=treated.mean_y,
        mean_control=control.mean_y,
        difference=difference,
        bootstrap=bootstrap,
        relative_lift=lift,
        cuped=cuped,
    )


def _bucket_interval(
    by_bucket: dict[tuple, dict[str, float]],
    metric: str,
    treated_group: str,
    control_group: str,
    config: EvaluationConfig,
    seed: int,
) -> Interval:
    def arrays(group: str) -> tuple[np.ndarray, np.ndarray]:
        cells = [v for k, v in sorted(by_bucket.items(), key=lambda kv: kv[0][1]) if k[0] == group]
        return (
            np.array([c["n"] for c in cells], dtype=float),
            np.array([c[f"{metric}__sy"] for c in cells], dtype=float),
        )

    t_n, t_sum = arrays(treated_group)
    c_n, c_sum = arrays(control_group)
    return bucket_bootstrap_difference(
        t_n, t_sum, c_n, c_sum, config.bootstrap_samples, config.confidence, seed
    )


def _segment_effects(
    by_segment: dict[tuple, dict[str, float]],
    metric: str,
    has_x: bool,
    design: CampaignDesign,
    pairs: dict[str, tuple[str, str]],
    config: EvaluationConfig,
) -> list[MetricEffect]:
    """Per arm × value tier; the family of one metric is corrected together."""
    found: list[MetricEffect] = []
    for arm in design.arms:
        for segment in SEGMENTS:
            treated = by_segment.get((pairs[arm][0], segment))
            control = by_segment.get((pairs[arm][1], segment))
            if not treated or not control or treated["n"] < 2 or control["n"] < 2:
                continue
            found.append(
                _effect(
                    metric,
                    arm,
                    segment,
                    _moments(treated, metric, has_x),
                    _moments(control, metric, has_x),
                    config,
                )
            )
    p_values = [e.difference.p_value for e in found]
    usable = [i for i, p in enumerate(p_values) if p is not None and np.isfinite(p)]
    if usable:
        adjusted = adjust_p_values([p_values[i] for i in usable], config.correction)
        for position, value in zip(usable, adjusted, strict=True):
            found[position] = _with_adjusted(found[position], float(value))
    return found


def _with_adjusted(effect: MetricEffect, adjusted: float) -> MetricEffect:
    from dataclasses import replace

    return replace(effect, adjusted_p_value=adjusted)


def _revenue_per_order(
    overall: dict[tuple, dict[str, float]],
    arm: str,
    pair: tuple[str, str],
    config: EvaluationConfig,
) -> MetricEffect:
    def moments(row: dict[str, float]) -> Moments:
        return Moments(
            row["n"],
            row["revenue__sy"],
            row["revenue__sy2"],
            row["orders__sy"],
            row["rpo__sx2"],
            row["rpo__sxy"],
        )

    t, c = overall[(pair[0],)], overall[(pair[1],)]
    interval = ratio_difference(moments(t), moments(c), config.confidence)
    ratio_t = t["revenue__sy"] / t["orders__sy"] if t["orders__sy"] else float("nan")
    ratio_c = c["revenue__sy"] / c["orders__sy"] if c["orders__sy"] else float("nan")
    return MetricEffect(
        metric="revenue_per_order",
        arm=arm,
        segment=ALL_USERS,
        n_treated=int(t["n"]),
        n_control=int(c["n"]),
        mean_treated=ratio_t,
        mean_control=ratio_c,
        difference=interval,
    )


def _scaled(interval: Interval, factor: float) -> Interval:
    from dataclasses import replace

    return replace(
        interval,
        estimate=interval.estimate * factor,
        low=interval.low * factor,
        high=interval.high * factor,
        std_error=None if interval.std_error is None else interval.std_error * abs(factor),
    )


def _signed(value: float) -> str:
    return f"{value:+.2f}".replace("-", "\u2212")


def _totals(
    overall: dict[tuple, dict[str, float]],
    effects: list[MetricEffect],
    design: CampaignDesign,
    pairs: dict[str, tuple[str, str]],
    config: EvaluationConfig,
) -> tuple[list[ArmTotals], list[str]]:
    """Incremental orders, revenue and margin of each arm (its per-user difference, with the
    Welch interval the table shows, × its users), and its return on the incentive it cost:
    the discounts its users redeemed beyond what control users redeemed at the same sale.
    ROI is left out where that extra cost is not distinguishable from zero (a ratio over a
    noise-level cost means nothing)."""
    totals, notes = [], []
    for arm in design.arms:
        row, control = overall[(pairs[arm][0],)], overall[(pairs[arm][1],)]
        users = row["n"]
        incremental = {}
        for metric in TOTAL_METRICS:
            effect = next(
                e for e in effects if (e.metric, e.arm, e.segment) == (metric, arm, ALL_USERS)
            )
            incremental[metric] = _scaled(effect.difference, users)
        extra = welch_difference(
            Moments(users, row["incentive"], row["incentive__sy2"]),
            Moments(control["n"], control["incentive"], control["incentive__sy2"]),
            config.confidence,
        )
        cost, roi = 0.0, None
        if extra.estimate > 0 and extra.low > 0:
            cost = extra.estimate * users
            roi = _scaled(incremental["margin"], 1.0 / cost)
        else:
            # A noise-level cost is no cost: reported as 0, with the numbers in a note.
            notes.append(
                f"{arm}: its users redeemed {_signed(extra.estimate)} per user in discounts "
                f"beyond control ({config.confidence * 100:g} % CI {_signed(extra.low)} to "
                f"{_signed(extra.high)}), not distinguishable from zero: no incentive cost and "
                "no ROI are given."
            )
        totals.append(ArmTotals(arm, int(users), incremental, float(cost), roi))
    if notes:
        notes.append(
            "A promotion's cost beyond price discounts (a gift, shipping) is not in "
            "orders.discount and so not in the incentive cost."
        )
    return totals, notes


def _cumulative(
    con,
    design: CampaignDesign,
    pairs: dict[str, tuple[str, str]],
    matched: bool,
    outcome_end: datetime,
    config: EvaluationConfig,
) -> list[CumulativeEffect]:
    """Each arm's conversion effect up to each point of the outcome window (Welch at each)."""
    hours_total = (outcome_end - design.start).total_seconds() / 3600.0
    grid = np.linspace(
        hours_total / config.cumulative_points, hours_total, config.cumulative_points
    )
    by_group = {}
    for column in ("arm", "cmp") if matched else ("arm",):
        counts = con.execute(
            f"SELECT {column}, count(*) AS n, list(hours_to_first) FILTER "
            f"(WHERE hours_to_first IS NOT NULL) AS hours FROM eval_users GROUP BY {column}"
        ).fetchall()
        for group, n, hours in counts:
            by_group[f"{column}:{group}"] = (n, np.sort(np.asarray(hours or [], dtype=float)))
    out = []
    for arm in design.arms:
        n, hours = by_group[pairs[arm][0]]
        control_n, control_hours = by_group[pairs[arm][1]]
        estimate, low, high = [], [], []
        for h in grid:
            converted_t = float(np.searchsorted(hours, h, side="right"))
            converted_c = float(np.searchsorted(control_hours, h, side="right"))
            interval = welch_difference(
                Moments(n, converted_t, converted_t),
                Moments(control_n, converted_c, converted_c),
                config.confidence,
            )
            estimate.append(interval.estimate)
            low.append(interval.low)
            high.append(interval.high)
        out.append(
            CumulativeEffect(arm, tuple(grid.tolist()), tuple(estimate), tuple(low), tuple(high))
        )
    return out


def _notes(source: OutcomeSource, config: EvaluationConfig, segmented: bool) -> tuple[str, ...]:
    notes = []
    if source.kind == "facts":
        notes.append(
            f"Outcomes run from the sale's start to {config.outcome_window_hours:g} h after its "
            "end: conversion and orders count every order placed, revenue and margin only "
            "completed lines (net of cancellations and returns); the CUPED covariate is the "
            f"same metric over the {config.pre_period_days:g} days before the sale."
        )
        notes.append(
            "Incentive cost: discounts redeemed by an arm's users beyond what control users "
            "redeemed at the same sale (per user), as recorded in orders.discount."
        )
    else:
        notes.append(
            "Outcomes are the source's per-user outcomes over its own window (an assigned "
            "user without a row counts as zero); "
            + (
                f"the CUPED covariate and the value tiers come from {source.covariate_label}."
                if any(source.covariates.values())
                else "the source has no pre-period covariate, so there is no CUPED and no "
                "value tiers."
            )
        )
    if segmented:
        value = "spend before the sale" if source.kind == "facts" else source.covariate_label
        notes.append(
            f"Segments are value tiers of {value} (top 20 % high, next 30 % mid, the rest "
            f"low); their p-values are adjusted with {config.correction} per metric."
        )
    return tuple(notes)


__all__ = [
    "EvaluationConfig",
    "EvaluationIntegrityError",
    "evaluate_campaign",
]
