"""Evaluation-workflow step: what a campaign caused, recorded as one MLflow run, a report next
to the data and a labelled snapshot for the next retraining."""

from __future__ import annotations

import logging
from contextlib import closing
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flashsale_ml.config import Settings, get_settings
from flashsale_ml.errors import DataError
from flashsale_ml.evaluation.results import LABELS_DATASET
from flashsale_ml.tracking import TAG_PREFIX

log = logging.getLogger(__name__)

# The demand forecast against each SKU's sales, beside the evaluation report.
DEMAND_CSV = "demand_vs_forecast.csv"

CAMPAIGN_TAG = f"{TAG_PREFIX}campaign_id"


def data_as_of(snapshot, con) -> datetime | None:
    """When the data was extracted: the snapshot's ``data_as_of`` (the simulator records it),
    else the newest order (ingested data)."""
    recorded = snapshot.manifest.metadata.get("data_as_of")
    if recorded:
        value = datetime.fromisoformat(recorded)
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if "orders" in snapshot.tables:
        newest = con.execute("SELECT max(ts) FROM orders").fetchone()[0]
        if newest is not None:
            return newest if newest.tzinfo else newest.replace(tzinfo=UTC)
    return None


def _model_calibration(settings: Settings, data_uri: str, campaign_id: str, labels) -> tuple:
    """Model accountability: each kind's champion, scored on the campaign's point-in-time
    features (the newest feature snapshot built from this data), against what the campaign's
    users then did. Returns (calibrations, notes)."""
    import numpy as np

    from flashsale_ml.datasets import Snapshot, list_snapshots
    from flashsale_ml.evaluation.binary import evaluate_scores
    from flashsale_ml.evaluation.results import Calibration
    from flashsale_ml.features.snapshot import FEATURE_DATASET
    from flashsale_ml.models import get_kind, kind_names
    from flashsale_ml.registry import FITTED_ON_TAG, RegistryError, version_tags
    from flashsale_ml.scoring import AliasScorer
    from flashsale_ml.storage import open_store

    # Only kinds whose target this campaign's outcomes carry (a sale's facts, not a per-user
    # table such as Hillstrom's).
    present = set(labels.names())
    accountable = [get_kind(k) for k in kind_names() if get_kind(k).accountable_for in present]
    if not accountable:
        return (), ()
    features = None
    for uri in reversed(list_snapshots(open_store(settings.lake_uri), FEATURE_DATASET)):
        with Snapshot(uri) as snapshot:
            if snapshot.manifest.metadata.get("input_snapshot") == data_uri:
                features = uri
                break
    if features is None:
        return (), (
            "Model accountability: no feature snapshot was built from this data, so no "
            "model's predictions could be checked against the outcomes (no plan recorded "
            "predictions either).",
        )
    wanted = sorted({kind.accountable_for for kind in accountable})
    outcomes = labels.columns("user_id", *wanted).to_pandas()
    calibrations, notes = [], []
    for kind in accountable:
        with Snapshot(features) as snapshot:
            frame = snapshot.read_pandas(kind.feature_table)
        rows = frame[frame["campaign_id"] == campaign_id]
        if rows.empty:
            notes.append(
                f"Model accountability: {features} has no {kind.name} rows of the campaign."
            )
            continue
        try:
            scored = AliasScorer(kind.name, settings, refresh_interval_s=0).score(rows)
        except RegistryError as exc:
            notes.append(f"Model accountability ({kind.name}): {exc}.")
            continue
        fitted = version_tags(settings, scored.model_name, scored.version).get(FITTED_ON_TAG)
        if campaign_id in (fitted or "").split(","):
            notes.append(
                f"Model accountability: {scored.model_name}/{scored.version} was trained on "
                f"{campaign_id}, so its calibration here is in-sample and flatters it."
            )
        joined = (
            rows[["user_id"]]
            .assign(prediction=scored.scores)
            .merge(outcomes[["user_id", kind.accountable_for]], on="user_id")
        )
        y = joined[kind.accountable_for].to_numpy(dtype=float)
        p = np.clip(joined["prediction"].to_numpy(dtype=float), 0.0, 1.0)
        bins = evaluate_scores(y, p).calibration
        calibrations.append(
            Calibration(
                model=f"{scored.model_name}/{scored.version}",
                target=kind.accountable_for,
                mean_prediction=float(p.mean()),
                observed_rate=float(y.mean()),
                bins_mean_prediction=tuple(float(v) for v in bins.mean_prediction),
                bins_observed_rate=tuple(float(v) for v in bins.observed_rate),
                bins_rows=tuple(int(v) for v in bins.rows),
                rows=len(joined),
            )
        )
    notes.append(
        "Model accountability: predictions are the champion's at evaluation time, scored on "
        "the point-in-time features of the campaign's start."
    )
    return tuple(calibrations), tuple(notes)


def _plan_accountability(
    settings: Settings, campaign_id: str, labels
) -> tuple[tuple[str, ...], dict[str, float]]:
    """The published plan's predictions against what its users then did: per promotion type,
    the mean uplift the plan expected for its treated users against the realized difference
    in buying during the sale (treated minus control, with a 95 % Welch interval). Returns
    (notes, metrics); nothing when no plan of this campaign was published."""
    import numpy as np

    from flashsale_ml.contract import CONTROL_ARM
    from flashsale_ml.evaluation.effects import Moments, welch_difference
    from flashsale_ml.planning.output import PlanNotCommittedError, read_plan, read_plan_table
    from flashsale_ml.storage import open_store

    if "sale_conversion" not in labels.names():
        return (), {}
    plan_uri = open_store(settings.lake_uri).uri(f"plans/{campaign_id}")
    try:
        plan = read_plan(plan_uri)
    except PlanNotCommittedError:
        return (), {}
    predictions = read_plan_table(plan_uri, "predictions").to_pandas()
    outcomes = labels.columns("user_id", "sale_conversion").to_pandas()
    outcomes = outcomes.merge(labels.comparison_groups().to_pandas(), on="user_id")
    # The plan gave each promotion to the users it suited: measure it within its plan arm,
    # in the report's comparison groups (a campaign without plan arms: by arm alone).
    by_plan_arm = outcomes["cmp"].notna().any()
    notes, metrics = [], {}
    for arm in sorted(set(outcomes["arm"]) - {CONTROL_ARM}):
        if by_plan_arm:
            treated = outcomes[outcomes["cmp"] == arm]
            held = outcomes[outcomes["cmp"] == f"{CONTROL_ARM}|{arm}"]
        else:
            treated = outcomes[outcomes["arm"] == arm]
            held = outcomes[outcomes["arm"] == CONTROL_ARM]
        control = held["sale_conversion"].to_numpy(float)
        expected = treated.merge(
            predictions[predictions["arm"] == arm][["user_id", "incremental_probability"]],
            on="user_id",
        )
        if expected.empty or len(control) < 2 or len(treated) < 2:
            continue
        y = treated["sale_conversion"].to_numpy(float)
        realized = welch_difference(Moments.from_arrays(y), Moments.from_arrays(control))
        predicted = float(np.mean(expected["incremental_probability"]))
        metrics[f"plan.predicted_uplift.{arm}"] = predicted
        metrics[f"plan.realized_uplift.{arm}"] = realized.estimate
        inside = realized.low <= predicted <= realized.high
        notes.append(
            f"Plan accountability ({arm}): the plan ({', '.join(plan['models'].values())}) "
            f"expected +{predicted:.4f} purchases per treated user during the sale; realized "
            f"{realized.estimate:+.4f} (95 % interval {realized.low:+.4f} to "
            f"{realized.high:+.4f}; {len(treated):,} treated against {len(control):,} "
            f"control users), so the prediction was {'within' if inside else 'outside'} the "
            "interval."
        )
    return tuple(notes), metrics


def _demand_accountability(
    settings: Settings, campaign_id: str, con, tables: set[str]
) -> tuple[tuple[str, ...], dict[str, float], Any]:
    """The published plan's demand forecast against what each SKU sold in the sale.

    Units sold are the campaign's orders; a SKU the inventory saw sell out (``sale_stock``)
    is marked, since its sales only bound its demand from below. Returns (notes, metrics,
    the per-SKU frame); nothing when the plan had no stock section.
    """
    import numpy as np

    from flashsale_ml.evaluation.demand import bias, interval_coverage, wape
    from flashsale_ml.planning.output import PlanNotCommittedError, read_plan, read_plan_table
    from flashsale_ml.storage import open_store

    plan_uri = open_store(settings.lake_uri).uri(f"plans/{campaign_id}")
    try:
        plan = read_plan(plan_uri)
    except PlanNotCommittedError:
        return (), {}, None
    if "stock" not in plan.get("sections", {}):
        return (), {}, None
    forecast = read_plan_table(plan_uri, "stock").to_pandas()
    sold = con.execute(
        """SELECT item_id, sum(qty)::DOUBLE AS actual_units FROM orders
        WHERE campaign_id = $cid AND status <> 'cancelled' GROUP BY item_id""",
        {"cid": campaign_id},
    ).df()
    frame = forecast.merge(sold, on="item_id", how="left").fillna({"actual_units": 0.0})
    if "sale_stock" in tables:
        stock = con.execute(
            "SELECT item_id, sold_out_ts FROM sale_stock WHERE campaign_id = $cid",
            {"cid": campaign_id},
        ).df()
        frame = frame.merge(stock, on="item_id", how="left")
    else:
        frame["sold_out_ts"] = None
    frame["sold_out"] = frame["sold_out_ts"].notna()
    frame["inside_p10_p90"] = (frame["actual_units"] >= frame["p10"]) & (
        frame["actual_units"] <= frame["p90"]
    )
    columns = ["item_id", "p10", "p50", "p90", "quantity", "actual_units", "sold_out"]
    frame = frame[[*columns, "sold_out_ts", "inside_p10_p90"]].sort_values("item_id")
    open_rows = frame[~frame["sold_out"]]
    metrics = {"demand.skus": float(len(frame)), "demand.sold_out": float(frame["sold_out"].sum())}
    notes = []
    if len(open_rows) and open_rows["actual_units"].sum() > 0:
        actual = open_rows["actual_units"].to_numpy(float)
        metrics["demand.wape_p50"] = wape(actual, open_rows["p50"].to_numpy(float))
        metrics["demand.bias_p50"] = bias(actual, open_rows["p50"].to_numpy(float))
        metrics["demand.coverage_p10_p90"] = interval_coverage(
            actual, open_rows["p10"].to_numpy(float), open_rows["p90"].to_numpy(float)
        )
        under = frame["sold_out"] & (frame["actual_units"] >= np.floor(frame["quantity"]))
        notes.append(
            f"Demand forecast ({plan['models'].get(plan['stock'].get('kind', ''), 'champion')}): "
            f"on the {len(open_rows)} SKUs that did not sell out, P50 WAPE "
            f"{metrics['demand.wape_p50']:.2f}, bias {metrics['demand.bias_p50']:+.2f}, "
            f"{metrics['demand.coverage_p10_p90']:.0%} inside P10–P90; "
            f"{int(frame['sold_out'].sum())} SKUs sold out ({int(under.sum())} of them at or "
            "above the planned stock), so their demand is only known to exceed their sales."
        )
    return tuple(notes), metrics, frame


def _metrics_of(evaluation) -> dict[str, float]:
    """Flat MLflow metrics: each arm's overall effects, totals and the checks."""
    from flashsale_ml.evaluation.results import ALL_USERS

    out: dict[str, float] = {"srm_p_value": evaluation.srm_p_value}
    for arm, users in evaluation.arm_users.items():
        out[f"users.{arm}"] = float(users)
    for e in evaluation.effects:
        if e.segment != ALL_USERS:
            continue
        key = f"{e.metric}.{e.arm}"
        out[f"{key}.mean_treated"] = e.mean_treated
        out[f"{key}.mean_control"] = e.mean_control
        out[f"{key}.difference"] = e.difference.estimate
        out[f"{key}.difference.low"] = e.difference.low
        out[f"{key}.difference.high"] = e.difference.high
        if e.bootstrap is not None:
            out[f"{key}.bootstrap.low"] = e.bootstrap.low
            out[f"{key}.bootstrap.high"] = e.bootstrap.high
        if e.difference.p_value is not None:
            out[f"{key}.p_value"] = e.difference.p_value
        if e.relative_lift is not None:
            out[f"{key}.relative_lift"] = e.relative_lift.estimate
        if e.cuped is not None:
            out[f"{key}.cuped_difference"] = e.cuped.interval.estimate
            out[f"{key}.cuped_variance_reduction"] = e.cuped.variance_reduction
    for totals in evaluation.totals:
        for metric, interval in totals.incremental.items():
            out[f"incremental_{metric}.{totals.arm}"] = interval.estimate
            out[f"incremental_{metric}.{totals.arm}.low"] = interval.low
            out[f"incremental_{metric}.{totals.arm}.high"] = interval.high
        out[f"incentive_cost.{totals.arm}"] = totals.incentive_cost
        if totals.roi is not None:
            out[f"roi.{totals.arm}"] = totals.roi.estimate
    for c in evaluation.calibration:
        out[f"calibration.{c.target}.mean_prediction"] = c.mean_prediction
        out[f"calibration.{c.target}.observed_rate"] = c.observed_rate
    return {k: float(v) for k, v in out.items() if v == v}


def evaluate_campaign(
    campaign_id: str,
    data_uri: str | None = None,
    out_uri: str | None = None,
    parent_run_id: str | None = None,
    settings: Settings | None = None,
    assignments: str | None = None,
    outcomes: str | None = None,
    mapping: dict[str, str] | None = None,
    control: str | None = None,
    holdout_share: float | None = None,
) -> dict[str, Any]:
    """Evaluate a campaign of a raw snapshot against its randomized holdout.

    Integrity checks run first and refuse (a ``DataError`` naming table, column, rule and
    numbers) before anything is written. Then, in this order: the labelled snapshot
    (``campaign_labels``, committed atomically), the report (HTML and PNGs next to it, under
    ``reports/evaluations/<campaign>/<labels snapshot id>/``), and one MLflow run holding the
    metrics, the report and the lineage.

    Args:
        campaign_id: the campaign to evaluate.
        data_uri: the raw snapshot (simulated, ingested or a shop's own); or None with
            ``assignments`` and ``outcomes``.
        out_uri: where labels and report go (default: the lake).
        parent_run_id: a pipeline run to nest the evaluation's run under.
        settings: runtime settings (evaluation windows, correction; default from the
            environment).
        assignments, outcomes, mapping, control, holdout_share: a team's own experiment run
            outside this system (files, CSV or Parquet, local or s3://, and which column is
            what); it is written as an ``experiments`` snapshot first (see
            :mod:`flashsale_ml.evaluation.external`).

    Returns:
        The run id, the labels snapshot and report URIs, and the headline in words.
    """
    from flashsale_ml.datasets import Snapshot
    from flashsale_ml.duck import connect
    from flashsale_ml.evaluation.campaign import evaluate_campaign as evaluate
    from flashsale_ml.storage import open_store

    settings = settings or get_settings()
    config = settings.evaluation
    if assignments or outcomes:
        from flashsale_ml.contract import CONTROL_ARM
        from flashsale_ml.evaluation.external import experiment_snapshot

        if not (assignments and outcomes) or data_uri:
            raise DataError(
                "an external experiment needs both --assignments and --outcomes, and no --data"
            )
        data_uri = experiment_snapshot(
            assignments,
            outcomes,
            mapping or {},
            campaign_id,
            open_store(settings.lake_uri),
            control=control or CONTROL_ARM,
            holdout_share=holdout_share,
            pseudonym_key=settings.pseudonym_key,
        )
    if not data_uri:
        raise DataError("evaluate needs --data (a raw snapshot) or --assignments and --outcomes")
    done = _earlier_evaluation(open_store(out_uri or settings.lake_uri), campaign_id, data_uri)
    if done is not None:
        log.info(
            "%s was already evaluated on %s: %s (not evaluated again)",
            campaign_id,
            data_uri,
            done["labels_uri"],
        )
        return done
    with (
        Snapshot(data_uri) as snapshot,
        closing(
            connect(
                {t: snapshot.local_files(t) for t in snapshot.tables},
                memory_limit=settings.duckdb_memory_limit,
                threads=settings.compute_threads,
            )
        ) as con,
    ):
        evaluation, labels = evaluate(
            con,
            campaign_id,
            config,
            settings.seed,
            data_uri,
            snapshot.snapshot_id,
            data_as_of(snapshot, con),
            set(snapshot.tables),
        )
        calibrations, notes = _model_calibration(settings, data_uri, campaign_id, labels)
        plan_notes, plan_metrics = _plan_accountability(settings, campaign_id, labels)
        demand_notes, demand_metrics, per_sku = _demand_accountability(
            settings, campaign_id, con, set(snapshot.tables)
        )
        evaluation = replace(
            evaluation,
            calibration=calibrations,
            notes=(*evaluation.notes, *notes, *plan_notes, *demand_notes),
        )
        # The labels are written from DuckDB in batches, so the connection stays open.
        return _record(
            settings,
            evaluation,
            labels,
            data_uri,
            out_uri,
            parent_run_id,
            {**plan_metrics, **demand_metrics},
            per_sku,
        )


def _earlier_evaluation(store, campaign_id: str, data_uri: str) -> dict[str, Any] | None:
    """The result of an earlier evaluation of this campaign on this very data, if one was
    committed: evaluating again would only duplicate its labels, report and run (a retried
    task, a re-triggered DAG run)."""
    from flashsale_ml.datasets import Snapshot, list_snapshots
    from flashsale_ml.evaluation.report import HTML_NAME

    with Snapshot(data_uri) as data:
        data_id = data.snapshot_id
    for uri in reversed(list_snapshots(store, LABELS_DATASET)):
        with Snapshot(uri) as labels:
            meta = labels.manifest.metadata
            if meta.get("campaign_id") != campaign_id or meta.get("input_snapshot_id") != data_id:
                continue
            report = f"reports/evaluations/{campaign_id}/{labels.snapshot_id}/{HTML_NAME}"
            return {
                "campaign_id": campaign_id,
                "data_uri": data_uri,
                "mlflow_run_id": meta.get("mlflow_run_id"),
                "labels_uri": uri,
                "report_uri": store.uri(report),
                "already_evaluated": True,
            }
    return None


def _record(
    settings,
    evaluation,
    labels,
    data_uri,
    out_uri,
    parent_run_id,
    extra_metrics=None,
    per_sku=None,
) -> dict[str, Any]:
    """Write the labels snapshot and the report and log the run, in that order (``per_sku``:
    the demand forecast against each SKU's sales, written beside the report as
    ``demand_vs_forecast.csv`` and plotted)."""
    import tempfile

    from flashsale_ml.datasets import SnapshotWriter
    from flashsale_ml.evaluation.report import headline, render_report
    from flashsale_ml.lineage import code_version
    from flashsale_ml.storage import open_store
    from flashsale_ml.tracking import log_artifacts, log_json, log_metrics, set_tags, step_run

    config = settings.evaluation
    campaign_id = evaluation.campaign_id
    store = open_store(out_uri or settings.lake_uri)
    tags = {
        CAMPAIGN_TAG: campaign_id,
        f"{TAG_PREFIX}data_snapshot_id": evaluation.data_snapshot_id,
        f"{TAG_PREFIX}raw_uri": data_uri,
    }
    with step_run(settings, "evaluate_campaign", parent_run_id, tags) as run:
        run_id = run.info.run_id
        lineage = {
            "data_snapshot": evaluation.data_snapshot_id,
            "code_version": code_version(),
            "config_hash": settings.config_hash(),
            "mlflow_run_id": run_id,
        }
        with SnapshotWriter(
            store,
            LABELS_DATASET,
            metadata={
                "campaign_id": campaign_id,
                "input_snapshot": data_uri,
                "input_snapshot_id": evaluation.data_snapshot_id,
                "evaluation": config.model_dump(),
                **lineage,
            },
        ) as writer:
            for batch in labels.batches():
                writer.append("labels", batch)
        lineage["labels_snapshot"] = writer.uri
        evaluation = replace(evaluation, lineage=lineage)
        report_prefix = f"reports/evaluations/{campaign_id}/{writer.snapshot_id}"
        with tempfile.TemporaryDirectory(prefix="flashsale-evaluation-") as tmp:
            files = render_report(evaluation, Path(tmp))
            if per_sku is not None:
                per_sku.to_csv(Path(tmp) / DEMAND_CSV, index=False)
            for path in sorted(Path(tmp).iterdir()):
                store.write_bytes(f"{report_prefix}/{path.name}", path.read_bytes())
            log_artifacts(tmp, "report")
        report_uri = store.uri(f"{report_prefix}/{files.html.name}")
        log_metrics({**_metrics_of(evaluation), **(extra_metrics or {})})
        if per_sku is not None and len(per_sku):
            from flashsale_ml.models.demand.plots import forecast_vs_actual_figure
            from flashsale_ml.tracking import log_figures

            figure = forecast_vs_actual_figure(
                per_sku["actual_units"].to_numpy(float),
                per_sku[["p10", "p50", "p90"]].to_numpy(float),
                per_sku["sold_out"].to_numpy(bool),
                f"{campaign_id}: the plan's demand forecast",
                sold_out_label="sales (sold out: demand was higher)",
            )
            log_figures({"demand_forecast_vs_sales.png": figure})
        log_json(evaluation.to_dict(), "evaluation/evaluation.json")
        set_tags(
            {
                f"{TAG_PREFIX}labels_snapshot_uri": writer.uri,
                f"{TAG_PREFIX}report_uri": report_uri,
            }
        )
    words = headline(evaluation)
    for line in words:
        log.info("%s", line)
    return {
        "campaign_id": campaign_id,
        "data_uri": data_uri,
        "mlflow_run_id": run_id,
        "labels_uri": writer.uri,
        "report_uri": report_uri,
        "srm_p_value": evaluation.srm_p_value,
        "headline": words,
    }
