"""Planning step: a campaign spec and a raw snapshot in, a committed plan folder and one MLflow
run out.

Order of work: the spec's own checks, then the checks against the data, all before any model
is loaded; then the champions (by alias) score every account on its point-in-time features as
of the campaign's start, the plan is solved (:mod:`flashsale_ml.planning.plan`), and the plan
folder is committed atomically (:mod:`flashsale_ml.planning.output`) inside an MLflow run
tagged with the campaign and the model versions used.
"""

from __future__ import annotations

import json
import logging
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flashsale_ml.config import Settings, get_settings
from flashsale_ml.errors import DataError
from flashsale_ml.steps.evaluation import CAMPAIGN_TAG
from flashsale_ml.tracking import TAG_PREFIX

if TYPE_CHECKING:
    import duckdb
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from flashsale_ml.planning.plan import Candidates, Economics, Interval, Plan
    from flashsale_ml.planning.spec import CampaignSpec

log = logging.getLogger(__name__)

PLAN_DIGEST_TAG = f"{TAG_PREFIX}plan_digest"


def _catalogue_facts(con: duckdb.DuckDBPyConnection) -> tuple[set[int], list[str]]:
    skus = {row[0] for row in con.execute("SELECT item_id FROM items").fetchall()}
    campaigns = [row[0] for row in con.execute("SELECT campaign_id FROM campaigns").fetchall()]
    return skus, campaigns


def economics_at(con: duckdb.DuckDBPyConnection, spec: CampaignSpec, depth: float) -> Economics:
    """What one order of the sale is worth at ``depth``: the mean discounted price and margin
    of the SKUs on sale, times the mean quantity of a completed order line in the data.

    Raises:
        DataError: no SKU on sale has a cost, so no margin can be computed.
    """
    from flashsale_ml.planning.plan import Economics

    skus = list(spec.skus)
    price, known_share = con.execute(
        """
        SELECT avg(list_price),
            (SELECT median(cost / list_price) FROM items WHERE cost IS NOT NULL)
        FROM items WHERE item_id IN (SELECT unnest($skus::BIGINT[]))
        """,
        {"skus": skus},
    ).fetchone()
    if known_share is None:
        raise DataError(
            "table 'items', column 'cost': null for every SKU, so the plan cannot value an "
            "order's margin; ingest unit costs first"
        )
    # SKUs without a cost are costed at the catalogue's median cost share.
    mean_cost = con.execute(
        """
        SELECT avg(coalesce(cost, list_price * $share)) FROM items
        WHERE item_id IN (SELECT unnest($skus::BIGINT[]))
        """,
        {"skus": skus, "share": known_share},
    ).fetchone()[0]
    qty = con.execute("SELECT avg(qty) FROM orders WHERE status = 'completed'").fetchone()[0] or 1.0
    revenue = float(price) * (1.0 - depth) * float(qty)
    margin = (float(price) * (1.0 - depth) - float(mean_cost)) * float(qty)
    return Economics(
        discount_depth=depth,
        order_revenue=revenue,
        order_margin=margin,
        unit_costs=dict(spec.promotions),
    )


def planned_features(con: duckdb.DuckDBPyConnection, spec: CampaignSpec, depth: float) -> pa.Table:
    """Every account's point-in-time features as of the spec's start, with the spec's sale as
    the campaign (its SKUs, window and depth), from the same SQL training used."""
    import pyarrow as pa

    from flashsale_ml.contract import conform
    from flashsale_ml.features.sql import Cutoff, propensity_features

    planned = conform(
        "campaigns",
        pa.table(
            {
                "campaign_id": [spec.campaign_id],
                "start_ts": [spec.start],
                "end_ts": [spec.end],
                "item_ids": [list(spec.skus)],
                "promo_types": [list(spec.promotions)],
                "discount_depth": [depth],
                "budget": [spec.budget],
                "holdout_share": [spec.holdout_fraction],
            }
        ),
    )
    con.register("planned_campaign", planned)
    con.execute("CREATE OR REPLACE TEMP VIEW campaigns AS SELECT * FROM planned_campaign")
    try:
        return propensity_features(
            con, Cutoff(spec.campaign_id, spec.start, spec.end, everyone=True)
        )
    finally:
        con.execute("DROP VIEW campaigns")
        con.unregister("planned_campaign")


def _segments_and_bots(frame: pd.DataFrame, spec: CampaignSpec) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    from flashsale_ml.evaluation.segments import value_tiers

    segment = value_tiers(frame["revenue_all"].to_numpy(dtype=float)).astype(str)
    # The bot rule: an account seen on a device shared by more accounts than a household has.
    bots = frame["accounts_per_device"].to_numpy() > spec.exclusions.max_accounts_per_device
    if not spec.exclusions.bots:
        bots = np.zeros(len(frame), dtype=bool)
    return segment, bots


def score_candidates(
    frame: pd.DataFrame, spec: CampaignSpec, scorers: dict[str, Any]
) -> Candidates:
    """Score every account with the purchase-probability and uplift champions."""
    import numpy as np

    from flashsale_ml.contract import CONTROL_ARM
    from flashsale_ml.models.base import PURCHASE_PROBABILITY, PURCHASE_UPLIFT
    from flashsale_ml.planning.plan import Candidates

    arms = tuple(spec.promotions)
    p_control = scorers[PURCHASE_PROBABILITY].score(frame.assign(arm=CONTROL_ARM)).scores
    uplift = np.column_stack(
        [scorers[PURCHASE_UPLIFT].score(frame.assign(scored_arm=arm)).scores for arm in arms]
    )
    segment, bots = _segments_and_bots(frame, spec)
    users = frame["user_id"].to_numpy(dtype=np.int64)
    return Candidates(
        user_ids=users,
        segment=segment,
        is_bot=bots,
        excluded=np.isin(users, np.asarray(spec.exclusions.user_ids, dtype=np.int64)),
        p_control=np.asarray(p_control, dtype=float),
        uplift=np.asarray(uplift, dtype=float).reshape(len(frame), len(arms)),
        arms=arms,
    )


def model_error_ratio(
    con: duckdb.DuckDBPyConnection, uplift_scorer: Any, seed: int, resamples: int = 400
) -> tuple[Interval | None, str | None]:
    """Realized over predicted uplift of the uplift champion on the latest past campaign with
    a control arm, with a 90 % bootstrap interval over users: how far the model's predictions
    were off the last time they could be checked. None when no campaign can be scored.

    Returns:
        (the ratio, the campaign it was measured on)
    """
    import numpy as np

    from flashsale_ml.contract import CONTROL_ARM
    from flashsale_ml.features.columns import LABEL
    from flashsale_ml.features.sql import cutoffs_from_campaigns, propensity_features
    from flashsale_ml.planning.plan import Interval

    with_control = {
        row[0]
        for row in con.execute(
            "SELECT DISTINCT campaign_id FROM assignments WHERE arm = ?", [CONTROL_ARM]
        ).fetchall()
    }
    past = [c for c in cutoffs_from_campaigns(con) if c.campaign_id in with_control]
    if not past:
        return None, None
    cutoff = past[-1]
    frame = propensity_features(con, cutoff).to_pandas()
    treated = frame["arm"] != CONTROL_ARM
    if treated.sum() == 0 or (~treated).sum() == 0:
        return None, None
    predicted = np.zeros(len(frame))
    predicted[treated.to_numpy()] = uplift_scorer.score(
        frame[treated].assign(scored_arm=frame.loc[treated, "arm"])
    ).scores
    y = frame[LABEL].to_numpy(dtype=float)
    t = treated.to_numpy()
    rng = np.random.default_rng(seed)

    def ratio(rows_t: np.ndarray, rows_c: np.ndarray) -> float:
        expected = predicted[rows_t].mean()
        return (y[rows_t].mean() - y[rows_c].mean()) / expected if expected > 0 else np.nan

    idx_t, idx_c = np.flatnonzero(t), np.flatnonzero(~t)
    estimate = ratio(idx_t, idx_c)
    if not np.isfinite(estimate):
        return None, cutoff.campaign_id
    draws = np.array(
        [
            ratio(rng.choice(idx_t, idx_t.size), rng.choice(idx_c, idx_c.size))
            for _ in range(resamples)
        ]
    )
    draws = draws[np.isfinite(draws)]
    low, high = np.quantile(draws, [0.05, 0.95])
    return Interval(float(estimate), float(low), float(high)), cutoff.campaign_id


def _tables(plan: Plan, spec: CampaignSpec) -> dict[str, pa.Table]:
    import numpy as np
    import pyarrow as pa

    from flashsale_ml.contract import conform

    n, k = plan.values.shape
    targeting = pa.table(
        {
            "campaign_id": pa.array([spec.campaign_id] * n, pa.string()),
            "user_id": pa.array(plan.user_ids, pa.int64()),
            "segment": pa.array(plan.segment.astype(str), pa.string()),
            "role": pa.array(plan.role.astype(str), pa.string()),
            "arm": pa.array(plan.arm, pa.string()),
            "expected_value": pa.array(plan.expected_value, pa.float64()),
            "expected_cost": pa.array(plan.expected_cost, pa.float64()),
        }
    )
    users, arms, plan_arms = plan.assignment_arms()
    assignments = conform(
        "assignments",
        pa.table(
            {
                "campaign_id": [spec.campaign_id] * len(users),
                "user_id": pa.array(users, pa.int64()),
                "arm": pa.array(arms, pa.string()),
                "assigned_ts": pa.array([spec.start] * len(users), pa.timestamp("us", "UTC")),
                "plan_arm": pa.array(plan_arms, pa.string()),
            }
        ),
    )
    candidates = plan.candidates
    predictions = pa.table(
        {
            "user_id": pa.array(np.repeat(plan.user_ids, k), pa.int64()),
            "arm": pa.array(np.tile(np.asarray(candidates.arms, dtype=object), n), pa.string()),
            "p_control": pa.array(np.repeat(candidates.p_control, k), pa.float64()),
            "incremental_probability": pa.array(candidates.uplift.reshape(-1), pa.float64()),
            "expected_value": pa.array(plan.values.reshape(-1), pa.float64()),
            "expected_cost": pa.array(plan.costs.reshape(-1), pa.float64()),
        }
    )
    return {"targeting": targeting, "assignments": assignments, "predictions": predictions}


def _summary_dict(plan: Plan) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(plan.summary)


WORK_PREFIX = "plan-work"
FEATURES_FILE = "features.parquet"
SCORES_FILE = "scores.parquet"


def _parse(spec: CampaignSpec | str | Path | dict[str, Any]) -> CampaignSpec:
    from flashsale_ml.planning.spec import CampaignSpec, load_spec, parse_spec

    if isinstance(spec, CampaignSpec):
        return spec
    if isinstance(spec, dict):
        return parse_spec(spec)
    return load_spec(spec)


def _spec_digest(spec: CampaignSpec) -> str:
    import hashlib

    return hashlib.sha256(spec.canonical_json().encode()).hexdigest()[:16]


def _work_uri(settings: Settings, campaign_id: str) -> str:
    from flashsale_ml.storage import open_store

    return open_store(settings.lake_uri).uri(f"{WORK_PREFIX}/{campaign_id}")


def _read_stage(uri: str, name: str, spec: CampaignSpec) -> dict[str, Any]:
    """A stage's JSON record, refused unless it was made for this very spec (a stale file of
    an earlier, different spec of the same campaign must never be planned on)."""
    from flashsale_ml.storage import ObjectNotFoundError, open_store

    try:
        record = json.loads(open_store(uri).read_bytes(name))
    except ObjectNotFoundError:
        raise DataError(f"{uri} has no {name}: run the step before this one first") from None
    if record.get("spec_digest") != _spec_digest(spec):
        raise DataError(
            f"{uri}/{name} was made for another version of campaign {spec.campaign_id!r}'s "
            "spec; run the earlier steps again"
        )
    return record


def _raw_connection(snapshot, settings: Settings):
    from flashsale_ml.features.sql import connect

    return connect(
        {t: snapshot.local_files(t) for t in snapshot.tables},
        memory_limit=settings.duckdb_memory_limit,
        threads=settings.compute_threads,
    )


def campaign_features(
    spec: CampaignSpec | str | Path | dict[str, Any],
    data_uri: str,
    campaign_id: str | None = None,
    settings: Settings | None = None,
    work_uri: str | None = None,
) -> dict[str, Any]:
    """Check the spec against the data, then build every account's point-in-time features as
    of the campaign's start (``features.parquet`` in the campaign's work folder).

    Raises:
        SpecError: the spec does not fit the data (before any work).
    """
    from flashsale_ml.contract import require_tables
    from flashsale_ml.datasets import Snapshot
    from flashsale_ml.planning.output import parquet_bytes
    from flashsale_ml.planning.spec import check_against_data
    from flashsale_ml.steps.evaluation import data_as_of
    from flashsale_ml.storage import open_store

    settings = settings or get_settings()
    parsed = _parse(spec)
    with Snapshot(data_uri) as snapshot:
        require_tables("planning a campaign", data_uri, snapshot.tables, ("users", "items"))
    with Snapshot(data_uri) as snapshot, closing(_raw_connection(snapshot, settings)) as con:
        skus, past = _catalogue_facts(con)
        check_against_data(
            parsed,
            data_as_of=data_as_of(snapshot, con),
            known_skus=skus,
            campaign_id=campaign_id,
            past_campaigns=past,
        )
        table = planned_features(con, parsed, parsed.discount_depths[0])
        snapshot_id = snapshot.snapshot_id
    work_uri = work_uri or _work_uri(settings, parsed.campaign_id)
    store = open_store(work_uri)
    store.write_bytes(FEATURES_FILE, parquet_bytes(table))
    record = {
        "campaign_id": parsed.campaign_id,
        "spec_digest": _spec_digest(parsed),
        "data_uri": data_uri,
        "data_snapshot_id": snapshot_id,
        "rows": table.num_rows,
    }
    store.write_bytes("features.json", json.dumps(record, indent=2, sort_keys=True).encode())
    log.info("features of %s accounts as of %s: %s", f"{table.num_rows:,}", parsed.start, work_uri)
    return {"campaign_id": parsed.campaign_id, "work_uri": work_uri, "rows": table.num_rows}


def score_campaign(
    spec: CampaignSpec | str | Path | dict[str, Any],
    work_uri: str,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Score the campaign's accounts with the champions (loaded by alias) at every candidate
    depth (``scores.parquet``), and measure the uplift champion's error on the latest past
    campaign.

    Raises:
        RegistryError: a champion the plan needs is not set.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from flashsale_ml.datasets import Snapshot
    from flashsale_ml.models import kind_for_plan_role
    from flashsale_ml.models.base import PURCHASE_PROBABILITY, PURCHASE_UPLIFT
    from flashsale_ml.planning.output import parquet_bytes
    from flashsale_ml.scoring import AliasScorer
    from flashsale_ml.storage import open_store

    settings = settings or get_settings()
    parsed = _parse(spec)
    record = _read_stage(work_uri, "features.json", parsed)
    store = open_store(work_uri)
    base = pq.read_table(pa.BufferReader(store.read_bytes(FEATURES_FILE))).to_pandas()
    scorers = {
        role: AliasScorer(kind_for_plan_role(role).name, settings, refresh_interval_s=3600)
        for role in (PURCHASE_PROBABILITY, PURCHASE_UPLIFT)
    }
    models = {
        kind_for_plan_role(role).name: f"{s.name}/{s.current_version()}"
        for role, s in scorers.items()
    }
    log.info("scoring %s with %s", parsed.campaign_id, models)
    parts = []
    for depth in parsed.discount_depths:
        candidates = score_candidates(base.assign(discount_depth=depth), parsed, scorers)
        columns = {
            "discount_depth": np.full(len(base), depth),
            "user_id": candidates.user_ids,
            "segment": candidates.segment,
            "is_bot": candidates.is_bot,
            "excluded": candidates.excluded,
            "p_control": candidates.p_control,
        }
        for position, arm in enumerate(candidates.arms):
            columns[f"uplift.{arm}"] = candidates.uplift[:, position]
        parts.append(pa.table(columns))
    with (
        Snapshot(record["data_uri"]) as snapshot,
        closing(_raw_connection(snapshot, settings)) as con,
    ):
        ratio, ratio_campaign = model_error_ratio(con, scorers[PURCHASE_UPLIFT], settings.seed)
    store.write_bytes(SCORES_FILE, parquet_bytes(pa.concat_tables(parts)))
    scores = {
        **record,
        "models": models,
        "model_ratio": None if ratio is None else [ratio.estimate, ratio.low, ratio.high],
        "model_error_measured_on": ratio_campaign,
    }
    store.write_bytes("scores.json", json.dumps(scores, indent=2, sort_keys=True).encode())
    return {"campaign_id": parsed.campaign_id, "work_uri": work_uri, "models": models}


def _candidates_from_scores(table: pa.Table, spec: CampaignSpec) -> dict[float, Candidates]:
    import numpy as np

    from flashsale_ml.planning.plan import Candidates

    frame = table.to_pandas()
    arms = tuple(spec.promotions)
    out = {}
    for depth in spec.discount_depths:
        rows = frame[frame["discount_depth"] == depth]
        out[depth] = Candidates(
            user_ids=rows["user_id"].to_numpy(dtype=np.int64),
            segment=rows["segment"].to_numpy(dtype=object).astype(str),
            is_bot=rows["is_bot"].to_numpy(dtype=bool),
            excluded=rows["excluded"].to_numpy(dtype=bool),
            p_control=rows["p_control"].to_numpy(dtype=float),
            uplift=rows[[f"uplift.{arm}" for arm in arms]].to_numpy(dtype=float),
            arms=arms,
        )
    return out


def plan_from_scores(
    spec: CampaignSpec | str | Path | dict[str, Any],
    work_uri: str,
    out_uri: str | None = None,
    parent_run_id: str | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Solve the plan from the scored accounts and commit the plan folder, in one MLflow run
    tagged with the campaign and the model versions used."""
    import hashlib

    import pyarrow as pa
    import pyarrow.parquet as pq

    from flashsale_ml.datasets import Snapshot
    from flashsale_ml.lineage import code_version
    from flashsale_ml.planning.output import publish_plan
    from flashsale_ml.planning.plan import Interval
    from flashsale_ml.planning.plan import plan_campaign as solve
    from flashsale_ml.planning.summary import render_markdown
    from flashsale_ml.steps.demand import STOCK_FILE, render_stock_markdown, stock_section
    from flashsale_ml.storage import open_store
    from flashsale_ml.tracking import log_json, log_metrics, log_text, set_tags, step_run

    settings = settings or get_settings()
    parsed = _parse(spec)
    record = _read_stage(work_uri, "scores.json", parsed)
    table = pq.read_table(pa.BufferReader(open_store(work_uri).read_bytes(SCORES_FILE)))
    candidates = _candidates_from_scores(table, parsed)
    data_uri, snapshot_id, models = record["data_uri"], record["data_snapshot_id"], record["models"]
    with Snapshot(data_uri) as snapshot, closing(_raw_connection(snapshot, settings)) as con:
        scored = {
            depth: (candidates[depth], economics_at(con, parsed, depth))
            for depth in parsed.discount_depths
        }
    ratio = Interval(*record["model_ratio"]) if record["model_ratio"] else None
    plan = solve(
        parsed.campaign_id,
        scored,
        parsed.budget,
        parsed.holdout_fraction,
        parsed.exploration_share,
        key=f"{settings.pseudonym_key}:{settings.seed}",
        model_ratio=ratio,
    )
    stock_table, stock = stock_section(work_uri, parsed, plan.summary.discount_depth)
    if stock.get("available"):
        models = {**models, stock["kind"]: stock["model"]}
    summary_md = render_markdown(
        plan.summary,
        f"{parsed.start:%Y-%m-%d %H:%M} UTC",
        f"{parsed.end:%Y-%m-%d %H:%M} UTC",
        models,
        snapshot_id,
    ) + render_stock_markdown(stock, None if stock_table is None else stock_table.to_pandas())
    digest = hashlib.sha256(
        json.dumps(
            {
                "spec": parsed.canonical_json(),
                "data": snapshot_id,
                "models": models,
                "code": code_version(),
                "config": settings.config_hash(),
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()[:16]
    out_uri = out_uri or open_store(settings.lake_uri).uri(f"plans/{parsed.campaign_id}")
    document = {
        "campaign_id": parsed.campaign_id,
        "spec": parsed.model_dump(mode="json"),
        "summary": _summary_dict(plan),
        "models": models,
        "model_error_measured_on": record["model_error_measured_on"],
        "data_uri": data_uri,
        "data_snapshot_id": snapshot_id,
        "code_version": code_version(),
        "config_hash": settings.config_hash(),
        "digest": digest,
        # Room for the plans of later issues (capacity from traffic).
        "sections": {
            "promotions": "targeting.parquet",
            **({"stock": STOCK_FILE} if stock_table is not None else {}),
        },
        "stock": stock,
    }
    tags = {
        CAMPAIGN_TAG: parsed.campaign_id,
        PLAN_DIGEST_TAG: digest,
        f"{TAG_PREFIX}data_snapshot_id": snapshot_id,
        f"{TAG_PREFIX}raw_uri": data_uri,
        **{f"{TAG_PREFIX}model.{kind}": version for kind, version in models.items()},
    }
    with step_run(settings, "plan_campaign", parent_run_id, tags) as run:
        run_id = run.info.run_id
        uri = publish_plan(
            out_uri,
            {
                **_tables(plan, parsed),
                **({"stock": stock_table} if stock_table is not None else {}),
            },
            summary_md,
            document,
            lineage={"mlflow_run_id": run_id, "digest": digest, "data_uri": data_uri},
        )
        s = plan.summary
        log_metrics(
            {
                "budget": s.budget,
                "expected_spend": s.expected_spend,
                "expected_incremental_orders": s.incremental_orders.estimate,
                "expected_incremental_revenue": s.incremental_revenue.estimate,
                "expected_incremental_margin": s.incremental_margin.estimate,
                "expected_incremental_margin.low": s.incremental_margin.low,
                "expected_incremental_margin.high": s.incremental_margin.high,
                "targeted_users": s.targeted_users,
                "exploration_users": s.exploration_users,
                "holdout_users": s.holdout_users,
                "excluded_bots": s.excluded_bots,
                "lp_bound": s.lp_bound,
                "optimality_gap": s.optimality_gap,
                "discount_depth": s.discount_depth,
                **(
                    {
                        "stock_to_hold": stock["stock_to_hold"],
                        "expected_units_p50": stock["expected_units_p50"],
                    }
                    if stock.get("available")
                    else {}
                ),
            }
        )
        log_text(summary_md, "plan/summary.md")
        log_json(document, "plan/plan.json")
        set_tags({f"{TAG_PREFIX}plan_uri": uri})
    log.info(
        "plan %s: %s targeted, spend %.0f of %.0f, margin %.0f",
        uri,
        f"{s.targeted_users:,}",
        s.expected_spend,
        s.budget,
        s.incremental_margin.estimate,
    )
    return {
        "campaign_id": parsed.campaign_id,
        "plan_uri": uri,
        "mlflow_run_id": run_id,
        "budget": s.budget,
        "expected_spend": s.expected_spend,
        "expected_incremental_margin": s.incremental_margin.estimate,
        "targeted_users": s.targeted_users,
        "holdout_users": s.holdout_users,
        "models": models,
        "summary_md": summary_md,
    }


def plan_campaign(
    spec: CampaignSpec | str | Path | dict[str, Any],
    data_uri: str,
    out_uri: str | None = None,
    campaign_id: str | None = None,
    parent_run_id: str | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Plan a campaign in one call: :func:`campaign_features`, :func:`score_campaign`,
    :func:`~flashsale_ml.steps.demand.forecast_demand`, then :func:`plan_from_scores` (the
    campaign DAG runs them as separate tasks).

    Args:
        spec: the campaign spec (a parsed spec, a mapping such as the DAG's form, or a JSON or
            YAML file).
        data_uri: the raw snapshot to score on (its as-of time must not be after the start).
        out_uri: the plan folder (default: ``plans/<campaign_id>`` in the lake).
        campaign_id: the campaign the caller means; refused when the spec names another.
        parent_run_id: a pipeline run to nest the planning run under.
        settings: runtime settings (default from the environment).

    Returns:
        The plan URI, the MLflow run id, the expected spend and margin, and the models used.

    Raises:
        SpecError: the spec is invalid or does not fit the data (before any work).
        RegistryError: a champion the plan needs is not set.
    """
    settings = settings or get_settings()
    parsed = _parse(spec)
    from flashsale_ml.steps.demand import forecast_demand

    work = campaign_features(parsed, data_uri, campaign_id, settings)["work_uri"]
    score_campaign(parsed, work, settings)
    forecast_demand(parsed, work, settings)
    return plan_from_scores(parsed, work, out_uri, parent_run_id, settings)


# --- What the campaign DAG calls around the plan -------------------------------------------

DRAFTS_PREFIX = "plan-drafts"
PUBLISHED_PREFIX = "plans"


def spec_from_form(form: dict[str, Any]) -> dict[str, Any]:
    """The campaign DAG's trigger form as a checked campaign spec (JSON-able).

    The form spreads the spec over typed fields (a unit cost per promotion type, exclusions as
    a list); this puts them back together and runs every check of :class:`CampaignSpec`,
    including the cross-field rules the form's JSON Schema cannot express (end after start).

    Raises:
        SpecError: naming each field that is wrong.
    """
    from flashsale_ml.contract import PROMO_TYPES
    from flashsale_ml.planning.spec import parse_spec

    # A type the form has no cost field for is unknown: give it a cost so the spec's check
    # names it as an unknown type rather than as a missing number.
    promotions = {
        promo: form.get(f"{promo}_unit_cost", None if promo in PROMO_TYPES else 0.0)
        for promo in form.get("promotion_types") or []
    }
    payload = {
        "campaign_id": form.get("campaign_id"),
        "start": form.get("start"),
        "end": form.get("end"),
        "skus": form.get("skus") or [],
        "promotions": promotions,
        "discount_depths": form.get("discount_depths") or [],
        "budget": form.get("budget"),
        "holdout_fraction": form.get("holdout_fraction"),
        "exploration_share": form.get("exploration_share"),
        "exclusions": {
            "user_ids": form.get("excluded_user_ids") or [],
            "bots": form.get("exclude_bots", True),
        },
    }
    payload = {k: v for k, v in payload.items() if v is not None}
    return parse_spec(payload, source="the campaign form").model_dump(mode="json")


def form_from_spec(spec: dict[str, Any], auto_approve: bool = False) -> dict[str, Any]:
    """The campaign DAG's trigger form filled in from a spec: the payload the UI posts (what a
    demo, a benchmark or a test sends); :func:`spec_from_form` turns it back into the spec."""
    from flashsale_ml.planning.spec import parse_spec

    checked = parse_spec(spec).model_dump(mode="json")
    return {
        "campaign_id": checked["campaign_id"],
        "start": checked["start"],
        "end": checked["end"],
        "skus": checked["skus"],
        "discount_depths": checked["discount_depths"],
        "promotion_types": list(checked["promotions"]),
        **{f"{promo}_unit_cost": cost for promo, cost in checked["promotions"].items()},
        "budget": checked["budget"],
        "holdout_fraction": checked["holdout_fraction"],
        "exploration_share": checked["exploration_share"],
        "exclude_bots": checked["exclusions"]["bots"],
        "excluded_user_ids": checked["exclusions"]["user_ids"],
        "auto_approve": auto_approve,
    }


def latest_raw(settings: Settings | None = None) -> str:
    """The newest committed raw snapshot of the lake (what a campaign is planned on)."""
    from flashsale_ml.datasets import resolve_snapshot_uri
    from flashsale_ml.storage import open_store

    settings = settings or get_settings()
    return resolve_snapshot_uri(open_store(settings.lake_uri).uri("datasets/raw/latest"))


def draft_plan(
    spec: dict[str, Any],
    data_uri: str,
    campaign_id: str | None = None,
    parent_run_id: str | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Plan into the campaign's draft folder (``<lake>/plan-drafts/<id>``), for approval;
    planning the same campaign again replaces its draft."""
    from flashsale_ml.storage import open_store

    settings = settings or get_settings()
    campaign = spec["campaign_id"]
    out = open_store(settings.lake_uri).uri(f"{DRAFTS_PREFIX}/{campaign}")
    return plan_campaign(spec, data_uri, out, campaign_id, parent_run_id, settings)


def draft_from_scores(
    spec: dict[str, Any],
    work_uri: str,
    parent_run_id: str | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """:func:`plan_from_scores` into the campaign's draft folder, for approval."""
    from flashsale_ml.storage import open_store

    settings = settings or get_settings()
    out = open_store(settings.lake_uri).uri(f"{DRAFTS_PREFIX}/{spec['campaign_id']}")
    return plan_from_scores(spec, work_uri, out, parent_run_id, settings)


def publish_plan(
    draft_uri: str, campaign_id: str, settings: Settings | None = None
) -> dict[str, Any]:
    """Publish an approved draft as ``<lake>/plans/<id>`` (what the shop, or the simulated
    world, executes): the same bytes, committed atomically; publishing again replaces it.

    Raises:
        PlanNotCommittedError: the draft is missing or does not match its ``plan.json``.
        DataError: the draft is another campaign's.
    """
    from flashsale_ml.planning.output import LINEAGE_FILE, PLAN_FILE, commit_files, read_plan
    from flashsale_ml.storage import open_store

    settings = settings or get_settings()
    plan = read_plan(draft_uri)
    if plan["campaign_id"] != campaign_id:
        raise DataError(
            f"the draft at {draft_uri} is campaign {plan['campaign_id']!r}, not {campaign_id!r}"
        )
    draft = open_store(draft_uri)
    names = [*plan["files"], PLAN_FILE, LINEAGE_FILE]
    files = {name: draft.read_bytes(name) for name in names}
    out = open_store(settings.lake_uri).uri(f"{PUBLISHED_PREFIX}/{campaign_id}")
    uri = commit_files(out, files)
    log.info("published %s to %s", draft_uri, uri)
    run_id = json.loads(files[LINEAGE_FILE]).get("mlflow_run_id")
    return {"campaign_id": campaign_id, "plan_uri": uri, "mlflow_run_id": run_id}
