"""Post-campaign evaluation end to end: refusals, a real experiment, the step and the CLI,
and the simulator's ground truth.

* Every integrity rule refuses a campaign whose data cannot support an effect, naming table,
  column, rule and numbers, before anything is written (no labels, no report, no MLflow run).
* Hillstrom's randomized e-mail experiment reproduces the shared data's published figures.
* The step (and ``flashsale evaluate``) writes labels, a report and one MLflow run.
* On simulated shops without sellouts, the conversion intervals cover the true effect computed
  from the simulator's purchase probabilities, and CUPED narrows the intervals.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pytest

from flashsale_ml.config import Settings
from flashsale_ml.datasets import Snapshot, SnapshotWriter, list_snapshots
from flashsale_ml.duck import connect
from flashsale_ml.errors import DataError
from flashsale_ml.evaluation.campaign import evaluate_campaign as evaluate_core
from flashsale_ml.evaluation.integrity import EvaluationIntegrityError
from flashsale_ml.evaluation.settings import EvaluationConfig
from flashsale_ml.simulation import SimulationConfig, simulate
from flashsale_ml.steps.evaluation import CAMPAIGN_TAG, LABELS_DATASET, data_as_of
from flashsale_ml.steps.evaluation import evaluate_campaign as evaluate_step
from flashsale_ml.storage import ObjectStore, open_store
from flashsale_ml.tracking import TAG_PREFIX
from tests.conftest import shared_data

ARMS = ("pct_discount", "gift_with_purchase", "timed_coupon")
STEP_TAG = f"{TAG_PREFIX}step"


# --- a simulated shop, shared by the module ----------------------------------------------------


class Shop:
    """A simulated shop in its own lake, with the campaign to evaluate and the newest one."""

    def __init__(self, lake: ObjectStore, raw_uri: str) -> None:
        self.lake, self.raw_uri = lake, raw_uri
        with Snapshot(raw_uri) as snapshot:
            self.metadata = dict(snapshot.manifest.metadata)
            campaigns = snapshot.read_table("campaigns").sort_by("start_ts")
            self.campaigns = campaigns.column("campaign_id").to_pylist()
            self.assignments = snapshot.read_pandas("assignments")
            self.orders = snapshot.read_pandas("orders")
        # The newest campaign's outcome window runs past the data's as-of time; the one before
        # it has closed.
        self.campaign_id, self.newest = self.campaigns[-2], self.campaigns[-1]
        self.starts = dict(
            zip(self.campaigns, campaigns.column("start_ts").to_pylist(), strict=True)
        )
        self.ends = dict(zip(self.campaigns, campaigns.column("end_ts").to_pylist(), strict=True))

    def assigned(self, campaign_id: str | None = None):
        a = self.assignments
        return a[a.campaign_id == (campaign_id or self.campaign_id)]

    def tampered(self, **edits: str) -> str:
        """A copy of the raw snapshot, as a new raw snapshot, with ``table=SQL`` replacing
        tables (the SQL reads the original tables as views)."""
        with Snapshot(self.raw_uri) as snapshot:
            con = connect({t: snapshot.local_files(t) for t in snapshot.tables})
            try:
                with SnapshotWriter(self.lake, "raw", metadata=self.metadata) as writer:
                    for table in snapshot.tables:
                        if table in edits:
                            data = con.sql(edits[table]).to_arrow_table()
                        else:
                            data = snapshot.read_table(table)
                        writer.write_table(table, data)
            finally:
                con.close()
        return writer.uri


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Shop:
    lake = open_store(tmp_path_factory.mktemp("campaign-shop").as_uri())
    result = simulate(SimulationConfig(users=3_000, days=28, seed=11), lake)
    return Shop(lake, result.raw_uri)


def settings_for(home: Path) -> Settings:
    return Settings(home=home, mlflow_tracking_uri=f"sqlite:///{home}/m.db")


def evaluation_runs(home: Path) -> list:
    """MLflow runs of the evaluation step in ``home``'s tracking store (none without one)."""
    if not (home / "m.db").exists():
        return []
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{home}/m.db")
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, filter_string=f"tags.`{STEP_TAG}` = 'evaluate_campaign'")


def assert_nothing_written(home: Path) -> None:
    lake = open_store((home / "lake").as_uri())
    assert list_snapshots(lake, LABELS_DATASET) == []
    assert lake.list("reports/") == []
    assert evaluation_runs(home) == []


def refusal(home: Path, campaign_id: str, raw_uri: str, error=EvaluationIntegrityError):
    with pytest.raises(error) as caught:
        evaluate_step(campaign_id, raw_uri, settings=settings_for(home))
    assert_nothing_written(home)
    return caught.value


# --- refusals: one test per integrity rule ----------------------------------------------------


def test_sample_ratio_mismatch_is_refused(shop: Shop, tmp_path: Path) -> None:
    from scipy import stats

    cid = shop.campaign_id
    # Drop about 30 % of one arm's assignment rows (a logging loss that depends on the arm).
    raw = shop.tampered(
        assignments=f"""
        SELECT * FROM assignments
        WHERE NOT (campaign_id = '{cid}' AND arm = 'pct_discount' AND hash(user_id) % 10 < 3)
        """
    )
    with Snapshot(raw) as snapshot:
        kept = snapshot.read_pandas("assignments")
    counts = kept[kept.campaign_id == cid].groupby("arm").user_id.nunique()
    before = shop.assigned().groupby("arm").user_id.nunique()
    assert 0.6 < counts["pct_discount"] / before["pct_discount"] < 0.8  # the edit did its job

    error = refusal(tmp_path, cid, raw)
    assert (error.table, error.column) == ("assignments", "arm")
    assert error.rule.startswith("sample ratio matches the design")
    shares = {"control": 0.2, **dict.fromkeys(ARMS, 0.8 / 3)}
    observed = np.array([counts[arm] for arm in shares])
    statistic = stats.chisquare(observed, observed.sum() * np.array(list(shares.values())))[0]
    message = str(error)
    for arm in shares:
        assert f"{arm} {counts[arm]:,} (" in message, (arm, message)
    assert f"chi-square {statistic:.1f}" in message, message


def test_a_user_in_two_arms_is_refused(shop: Shop, tmp_path: Path) -> None:
    cid = shop.campaign_id
    control = shop.assigned().query("arm == 'control'")
    user = int(control.user_id.min())
    raw = shop.tampered(
        assignments=f"""
        SELECT * FROM assignments
        UNION ALL
        SELECT * REPLACE ('pct_discount' AS arm) FROM assignments
        WHERE campaign_id = '{cid}' AND user_id = {user}
        """
    )
    error = refusal(tmp_path, cid, raw)
    assert (error.table, error.column) == ("assignments", "user_id")
    assert error.rule == "each user is assigned to one arm"
    assert "1 user(s) are in two or more arms" in str(error)
    assert f"e.g. user {user})" in str(error)


def test_exposure_before_assignment_is_refused(shop: Shop, tmp_path: Path) -> None:
    cid = shop.campaign_id
    treated = set(shop.assigned().query("arm != 'control'").user_id)
    sale_orders = shop.orders[(shop.orders.campaign_id == cid)]
    user = int(min(u for u in sale_orders.user_id if u in treated))
    # Every line of that user's sale order moves to 2 h before their assignment.
    raw = shop.tampered(
        orders=f"""
        SELECT o.* REPLACE (
            CASE WHEN o.user_id = {user} AND o.campaign_id = '{cid}'
                 THEN (SELECT assigned_ts FROM assignments
                       WHERE campaign_id = '{cid}' AND user_id = {user}) - INTERVAL 2 HOUR
                 ELSE o.ts END AS ts)
        FROM orders o
        """
    )
    error = refusal(tmp_path, cid, raw)
    assert (error.table, error.column) == ("orders", "ts")
    assert error.rule == "exposure comes after assignment"
    assert f"1 user(s) have campaign activity before their assigned_ts (e.g. user {user}, " in str(
        error
    )
    assert "2.0 h before assignment" in str(error)


def test_an_open_outcome_window_is_refused(shop: Shop, tmp_path: Path) -> None:
    from datetime import datetime, timedelta

    as_of = datetime.fromisoformat(shop.metadata["data_as_of"])
    outcome_end = shop.ends[shop.newest] + timedelta(hours=EvaluationConfig().outcome_window_hours)
    missing_h = (outcome_end - as_of).total_seconds() / 3600
    assert missing_h > 0

    error = refusal(tmp_path, shop.newest, shop.raw_uri)
    assert (error.table, error.column) == ("orders", "ts")
    assert error.rule == "the outcome window is complete"
    assert f"ends {outcome_end.isoformat()}" in str(error)
    assert f"data's as-of time {as_of.isoformat()}" in str(error)
    assert f"({missing_h:.1f} h missing)" in str(error)


def test_a_missing_arm_is_refused(shop: Shop, tmp_path: Path) -> None:
    cid = shop.campaign_id
    raw = shop.tampered(
        assignments=f"""
        SELECT * FROM assignments WHERE NOT (campaign_id = '{cid}' AND arm = 'timed_coupon')
        """
    )
    error = refusal(tmp_path, cid, raw)
    assert (error.table, error.column) == ("assignments", "arm")
    assert error.rule == "every arm of the campaign has users"
    assert "no users in arm(s) ['timed_coupon']" in str(error)
    counts = shop.assigned().groupby("arm").user_id.nunique()
    for arm in ("control", "pct_discount", "gift_with_purchase"):
        assert f"'{arm}': {counts[arm]}" in str(error)


def test_an_arm_the_campaign_does_not_have_is_refused(shop: Shop, tmp_path: Path) -> None:
    cid = shop.campaign_id
    raw = shop.tampered(
        assignments=f"""
        SELECT * REPLACE (
            CASE WHEN campaign_id = '{cid}' AND arm = 'gift_with_purchase'
                      AND hash(user_id) % 50 = 0
                 THEN 'mystery_box' ELSE arm::VARCHAR END AS arm)
        FROM assignments
        """
    )
    error = refusal(tmp_path, cid, raw)
    assert (error.table, error.column) == ("assignments", "arm")
    assert error.rule == "arms are the campaign's control and promotion types"
    assert "assigns users to ['mystery_box']" in str(error)


def test_a_campaign_without_a_holdout_is_refused(shop: Shop, tmp_path: Path) -> None:
    """A holdout share of 0 passes the data contract, but no effect can be measured."""
    cid = shop.campaign_id
    raw = shop.tampered(
        campaigns=f"""
        SELECT * REPLACE (
            CASE WHEN campaign_id = '{cid}' THEN 0.0 ELSE holdout_share END AS holdout_share)
        FROM campaigns
        """
    )
    error = refusal(tmp_path, cid, raw)
    assert (error.table, error.column) == ("campaigns", "holdout_share")
    assert "holdout_share 0.0" in str(error)


def test_an_arm_without_orders_is_evaluated_without_its_ratio(shop: Shop, tmp_path: Path) -> None:
    """Nobody in one arm ordered: every effect is still reported; revenue per order, a ratio
    over that arm's orders, is left out for it instead of failing the evaluation."""
    cid = shop.campaign_id
    raw = shop.tampered(
        orders=f"""
        SELECT * FROM orders WHERE user_id NOT IN (
            SELECT user_id FROM assignments WHERE campaign_id = '{cid}' AND arm = 'timed_coupon')
        """
    )
    result = evaluate_step(cid, raw, settings=settings_for(tmp_path))
    with Snapshot(result["labels_uri"]) as snapshot:
        labels = snapshot.read_pandas("labels")
    assert labels[labels.arm == "timed_coupon"].orders.sum() == 0
    run = evaluation_runs(tmp_path)[0]
    assert run.data.metrics["conversion.timed_coupon.mean_treated"] == 0.0
    assert "revenue_per_order.pct_discount.difference" in run.data.metrics
    assert "revenue_per_order.timed_coupon.difference" not in run.data.metrics


def test_an_unknown_campaign_is_refused(shop: Shop, tmp_path: Path) -> None:
    error = refusal(tmp_path, "fs-19990101-99", shop.raw_uri, error=DataError)
    assert not isinstance(error, EvaluationIntegrityError)
    assert str(error).startswith("campaigns.campaign_id: no campaign 'fs-19990101-99'")
    assert shop.campaign_id in str(error)  # the campaigns it does have


def test_an_unknown_as_of_time_is_refused(shop: Shop) -> None:
    """Without an as-of time, whether the window closed cannot be told: refuse, not guess."""
    with Snapshot(shop.raw_uri) as snapshot:
        con = connect({t: snapshot.local_files(t) for t in snapshot.tables})
        try:
            with pytest.raises(EvaluationIntegrityError) as caught:
                evaluate_core(
                    con,
                    shop.campaign_id,
                    EvaluationConfig(),
                    0,
                    shop.raw_uri,
                    snapshot.snapshot_id,
                    None,
                    set(snapshot.tables),
                )
        finally:
            con.close()
    assert (caught.value.table, caught.value.column) == ("orders", "ts")
    assert caught.value.rule == "the data's as-of time is known"


# --- Hillstrom: a real randomized experiment --------------------------------------------------

# The shared data's README: n, visit rate (%), conversion rate (%), mean spend ($) per arm.
HILLSTROM_README = {
    "mens_email": (21_307, "18.28", "1.253", "1.4226"),
    "womens_email": (21_387, "15.14", "0.884", "1.0772"),
    "control": (21_306, "10.62", "0.573", "0.6528"),
}
HILLSTROM_SEGMENTS = {"Mens E-Mail": "mens_email", "Womens E-Mail": "womens_email"}


@pytest.fixture(scope="module")
def hillstrom(tmp_path_factory: pytest.TempPathFactory):
    from flashsale_ml.loaders import HILLSTROM_CAMPAIGN, ingest

    path = shared_data("hillstrom.csv")
    lake = open_store(tmp_path_factory.mktemp("hillstrom").as_uri())
    raw = ingest("hillstrom", path, lake, pseudonym_key="x" * 32)
    with Snapshot(raw) as snapshot:
        con = connect({t: snapshot.local_files(t) for t in snapshot.tables})
        try:
            evaluation, labels = evaluate_core(
                con,
                HILLSTROM_CAMPAIGN,
                EvaluationConfig(),
                0,
                raw,
                snapshot.snapshot_id,
                data_as_of(snapshot, con),
                set(snapshot.tables),
            )
            labels = labels.to_table()  # read while the connection is open
        finally:
            con.close()
    return path, evaluation, labels


def test_hillstrom_reproduces_the_published_arm_figures(hillstrom) -> None:
    import pandas as pd

    path, evaluation, _ = hillstrom
    assert evaluation.arm_users == {arm: row[0] for arm, row in HILLSTROM_README.items()}
    assert evaluation.arms == ("mens_email", "womens_email")
    source = pd.read_csv(path)
    source["arm"] = source.segment.map(HILLSTROM_SEGMENTS).fillna("control")
    plain = source.groupby("arm")[["visit", "conversion", "spend"]].mean()
    for arm in evaluation.arms:
        visit = evaluation.effect("visit", arm)
        conversion = evaluation.effect("conversion", arm)
        spend = evaluation.effect("spend", arm)
        for effect, name in ((visit, "visit"), (conversion, "conversion"), (spend, "spend")):
            assert (effect.n_treated, effect.n_control) == (
                HILLSTROM_README[arm][0],
                HILLSTROM_README["control"][0],
            )
            # plain means of the file, to the last bit that float sums keep
            assert effect.mean_treated == pytest.approx(plain.loc[arm, name], rel=1e-12)
            assert effect.mean_control == pytest.approx(plain.loc["control", name], rel=1e-12)
        for group, means in ((arm, "treated"), ("control", "control")):
            _, visit_pct, conversion_pct, spend_usd = HILLSTROM_README[group]
            assert f"{100 * getattr(visit, f'mean_{means}'):.2f}" == visit_pct
            assert f"{100 * getattr(conversion, f'mean_{means}'):.3f}" == conversion_pct
            assert f"{getattr(spend, f'mean_{means}'):.4f}" == spend_usd


def test_hillstrom_emails_lift_visits_and_conversions(hillstrom) -> None:
    _, evaluation, _ = hillstrom
    assert evaluation.srm_p_value >= EvaluationConfig().srm_alpha
    control = HILLSTROM_README["control"]
    for arm in evaluation.arms:
        for metric, column, scale in (("visit", 1, 100), ("conversion", 2, 100), ("spend", 3, 1)):
            effect = evaluation.effect(metric, arm)
            interval = effect.difference
            assert interval.estimate == pytest.approx(effect.mean_treated - effect.mean_control)
            assert interval.low < interval.estimate < interval.high
            assert interval.confidence == 0.95
            # the interval covers the README's (rounded) difference
            published = (float(HILLSTROM_README[arm][column]) - float(control[column])) / scale
            assert interval.low < published < interval.high, (arm, metric, interval)
            if metric != "spend":
                assert interval.low > 0, f"{arm} {metric}: {interval}"  # excludes zero, above
            else:
                assert math.isfinite(interval.low) and math.isfinite(interval.high)
                assert interval.p_value is not None and 0 <= interval.p_value <= 1


def test_hillstrom_labels_are_one_row_per_customer(hillstrom) -> None:
    _, evaluation, labels = hillstrom
    assert labels.num_rows == sum(evaluation.arm_users.values()) == 64_000
    assert len(set(labels.column("user_id").to_pylist())) == 64_000
    assert {"campaign_id", "user_id", "arm", "segment", "visit", "conversion", "spend"} <= set(
        labels.column_names
    )


# --- the step and the CLI ---------------------------------------------------------------------


def _independent_outcomes(shop: Shop):
    """Per assigned user: conversion (any order, any status, from the sale's start to 24 h
    after its end), distinct orders and completed revenue, computed with pandas."""
    from datetime import timedelta

    cid = shop.campaign_id
    start, end = shop.starts[cid], shop.ends[cid] + timedelta(hours=24)
    o = shop.orders
    window = o[(o.ts >= start) & (o.ts < end)].copy()
    window["kept_revenue"] = np.where(
        window.status.astype(str) == "completed", window.qty * window.unit_price, 0.0
    )
    per_user = window.groupby("user_id").agg(
        orders=("order_id", "nunique"), revenue=("kept_revenue", "sum")
    )
    users = shop.assigned()[["user_id", "arm"]].set_index("user_id")
    out = users.join(per_user).fillna({"orders": 0, "revenue": 0.0})
    out["conversion"] = (out.orders > 0).astype(float)
    out["arm"] = out.arm.astype(str)
    return out


def test_the_step_writes_labels_report_and_one_run(shop: Shop, tmp_path: Path) -> None:
    import mlflow

    settings = settings_for(tmp_path)
    result = evaluate_step(shop.campaign_id, shop.raw_uri, settings=settings)
    assert result["campaign_id"] == shop.campaign_id
    assert result["mlflow_run_id"] and result["headline"]
    assert result["srm_p_value"] >= settings.evaluation.srm_alpha
    lake = open_store(settings.lake_uri)
    assert list_snapshots(lake, LABELS_DATASET) == [result["labels_uri"]]

    # labels: one row per assigned user, with arm and outcomes that match a pandas recount
    expected = _independent_outcomes(shop)
    with Snapshot(result["labels_uri"]) as snapshot:
        labels = snapshot.read_pandas("labels").set_index("user_id")
        assert snapshot.manifest.metadata["campaign_id"] == shop.campaign_id
        assert snapshot.manifest.metadata["mlflow_run_id"] == result["mlflow_run_id"]
    assert labels.index.is_unique and len(labels) == len(expected)
    assert set(labels.index) == set(expected.index)
    labels = labels.loc[expected.index]
    assert (labels.campaign_id == shop.campaign_id).all()
    assert (labels.arm.astype(str) == expected.arm).all()
    assert set(labels.segment) <= {"high", "mid", "low"}
    np.testing.assert_array_equal(labels.conversion.to_numpy(), expected.conversion.to_numpy())
    np.testing.assert_array_equal(labels.orders.to_numpy(), expected.orders.to_numpy())
    np.testing.assert_allclose(labels.revenue.to_numpy(), expected.revenue.to_numpy(), atol=1e-6)
    assert expected.conversion.mean() > 0.05  # the window really holds orders

    # the MLflow run
    client = mlflow.MlflowClient(tracking_uri=settings.tracking_uri)
    run = client.get_run(result["mlflow_run_id"])
    assert [r.info.run_id for r in evaluation_runs(tmp_path)] == [result["mlflow_run_id"]]
    assert run.data.tags[CAMPAIGN_TAG] == shop.campaign_id
    assert run.data.tags[f"{TAG_PREFIX}labels_snapshot_uri"] == result["labels_uri"]
    assert run.data.tags[f"{TAG_PREFIX}report_uri"] == result["report_uri"]
    rates = expected.groupby("arm").conversion.mean()
    for arm in ARMS:
        metric = run.data.metrics[f"conversion.{arm}.difference"]
        assert metric == pytest.approx(rates[arm] - rates["control"], abs=1e-9)
        assert (
            run.data.metrics[f"conversion.{arm}.difference.low"]
            < metric
            < run.data.metrics[f"conversion.{arm}.difference.high"]
        )
        assert run.data.metrics[f"users.{arm}"] == (expected.arm == arm).sum()
    report_files = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "report")}
    assert "report.html" in report_files
    assert any(name.endswith(".png") for name in report_files), report_files
    assert "evaluation.json" in {
        Path(a.path).name for a in client.list_artifacts(run.info.run_id, "evaluation")
    }

    # the report next to the data
    html = Path(urlparse(result["report_uri"]).path)
    assert html.is_file() and html.name == "report.html"
    text = html.read_text()
    assert shop.campaign_id in text


def test_the_cli_evaluates_a_campaign(
    shop: Shop, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from flashsale_ml.cli import main

    monkeypatch.setenv("FLASHSALE_HOME", str(tmp_path))
    monkeypatch.setenv("FLASHSALE_MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/m.db")
    code = main(
        [
            "--log-level",
            "WARNING",
            "evaluate",
            "--campaign",
            shop.campaign_id,
            "--data",
            shop.raw_uri,
        ]
    )
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["campaign_id"] == shop.campaign_id
    assert Path(urlparse(printed["report_uri"]).path).is_file()
    assert printed["report_uri"].startswith((tmp_path / "lake").resolve().as_uri())
    assert [r.info.run_id for r in evaluation_runs(tmp_path)] == [printed["mlflow_run_id"]]


def test_the_cli_refuses_an_open_window_and_writes_nothing(
    shop: Shop, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flashsale_ml.cli import main

    monkeypatch.setenv("FLASHSALE_HOME", str(tmp_path))
    monkeypatch.setenv("FLASHSALE_MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/m.db")
    argv = ["--log-level", "WARNING", "evaluate", "--campaign", shop.newest, "--data", shop.raw_uri]
    try:
        code = main(argv)
    except DataError:  # the CLI may let the refusal through instead of an exit status
        code = None
    assert code != 0
    assert_nothing_written(tmp_path)


# --- the simulator's ground truth --------------------------------------------------------------

TRUTH_SEEDS = range(20)


def truth_case(seed: int, root: Path, users: int = 1_500, days: int = 14) -> list[dict]:
    """Evaluate the first campaign of a simulated shop without sellouts; per arm, the
    conversion interval, the CUPED widths and the true effect (see
    :func:`test_conversion_intervals_cover_the_simulators_true_effect`)."""
    lake = open_store((root / f"seed-{seed}").as_uri())
    config = SimulationConfig(users=users, days=days, seed=seed, sale_stock_factor=1000.0)
    result = simulate(config, lake)
    rows = []
    with Snapshot(result.raw_uri) as raw, Snapshot(result.truth_uri) as truth:
        files = {t: raw.local_files(t) for t in raw.tables}
        files.update({t: truth.local_files(t) for t in ("sale_truth", "demand_truth")})
        con = connect(files)
        try:
            (cid,) = con.execute(
                "SELECT campaign_id FROM campaigns ORDER BY start_ts LIMIT 1"
            ).fetchone()
            sold_out = con.execute(
                "SELECT count(*) FROM demand_truth "
                "WHERE campaign_id = ? AND sellout_ts IS NOT NULL",
                [cid],
            ).fetchone()[0]
            assert sold_out == 0, f"seed {seed}: {sold_out} sale items sold out"
            evaluation, _ = evaluate_core(
                con,
                cid,
                EvaluationConfig(bootstrap_samples=200),
                seed,
                result.raw_uri,
                raw.snapshot_id,
                data_as_of(raw, con),
                set(raw.tables),
            )
            for arm in evaluation.arms:
                exact, simple = con.execute(
                    f"""
                    WITH background AS (
                        SELECT DISTINCT user_id FROM orders
                        WHERE campaign_id IS NULL AND ts >= $start AND ts < $end
                    )
                    SELECT avg((NOT t.is_bot)::INT * (t.p_{arm} - t.p_control)
                               * (b.user_id IS NULL)::INT),
                           avg((NOT t.is_bot)::INT * (t.p_{arm} - t.p_control))
                    FROM sale_truth t LEFT JOIN background b USING (user_id)
                    WHERE t.campaign_id = $cid
                    """,
                    {"start": evaluation.start, "end": evaluation.outcome_end, "cid": cid},
                ).fetchone()
                effect = evaluation.effect("conversion", arm)
                widths = {}
                for metric in ("conversion", "orders", "revenue"):
                    cuped = evaluation.effect(metric, arm).cuped
                    widths[metric] = (cuped.interval.high - cuped.interval.low) / (
                        cuped.unadjusted.high - cuped.unadjusted.low
                    )
                rows.append(
                    {
                        "seed": seed,
                        "arm": arm,
                        "truth": exact,
                        "truth_ignoring_background": simple,
                        "estimate": effect.difference.estimate,
                        "low": effect.difference.low,
                        "high": effect.difference.high,
                        "std_error": effect.difference.std_error,
                        "cuped_low": effect.cuped.interval.low,
                        "cuped_high": effect.cuped.interval.high,
                        "width_ratio": widths,
                    }
                )
        finally:
            con.close()
    return rows


def test_conversion_intervals_cover_the_simulators_true_effect(tmp_path: Path) -> None:
    """Coverage of the true average treatment effect on conversion, 20 seeds × 3 arms.

    The estimand. In the simulator a human user ``i`` of arm ``a`` makes a sale purchase
    attempt with probability ``p_a,i`` (``sale_truth.p_<arm>``), a bot attempts whatever its
    arm; with ``sale_stock_factor=1000`` every attempt becomes an order (no item sells out,
    which the test checks), so the sale-order indicator is Bernoulli(``(1 − bot_i) p_a,i``)
    for humans and arm-independent for bots. The evaluated conversion is "any order from the
    sale's start to 24 h after its end", so it is also 1 when the user placed an ordinary
    (non-sale) order in that window, ``B_i = 1``. Those background orders come from their own
    random stream, independent of the arm, so ``B_i`` is a fixed trait of the user, and

        E[Y_i(a) − Y_i(control)] = (1 − bot_i) · (p_a,i − p_control,i) · (1 − B_i).

    A randomized arm makes the difference in means unbiased for the average of that over the
    campaign's assigned users, which is what the Welch interval must cover. Background orders
    add noise *and* mask the effect on users who would have converted anyway: the brief's
    ``mean (1 − bot)(p_a − p_control)`` overstates the effect (by ~13 % of users here, and more
    for the timed coupon, whose effect sits on active users who also buy outside the sale);
    it is reported alongside, not asserted. With sellouts (the default) the realized orders are
    fewer than the attempts, depending on arrival order and the stock draw, so no closed-form
    truth exists — hence the knob.

    CUPED: orders in the weeks before the sale predict orders in the sale window, so the
    CUPED interval of ``orders`` must be narrower on average (the mean width ratio is in the
    message). Bias: the mean of ``(estimate − truth) / SE`` stays near 0 (a swapped sign or a
    wrong estimand moves it).
    """
    rows = [row for seed in TRUTH_SEEDS for row in truth_case(seed, tmp_path)]
    n = len(rows)
    covered = [r["low"] <= r["truth"] <= r["high"] for r in rows]
    covered_simple = [r["low"] <= r["truth_ignoring_background"] <= r["high"] for r in rows]
    covered_cuped = [r["cuped_low"] <= r["truth"] <= r["cuped_high"] for r in rows]
    z = np.array([(r["estimate"] - r["truth"]) / r["std_error"] for r in rows])
    ratios = {
        m: float(np.mean([r["width_ratio"][m] for r in rows])) for m in rows[0]["width_ratio"]
    }
    summary = (
        f"coverage {np.mean(covered):.3f} of {n} (ignoring background orders "
        f"{np.mean(covered_simple):.3f}; CUPED {np.mean(covered_cuped):.3f}); mean z "
        f"{z.mean():+.3f}; mean CUPED/unadjusted width ratio {ratios}; true effects "
        f"{np.round([r['truth'] for r in rows[:3]], 4).tolist()} (seed 0)"
    )
    assert np.mean(covered) >= 0.90, summary
    assert np.mean(covered_cuped) >= 0.90, summary
    assert abs(z.mean()) < 0.5, summary
    assert ratios["orders"] < 0.95, summary
    assert all(r["width_ratio"]["conversion"] <= 1.0 + 1e-9 for r in rows), summary


def test_default_simulation_still_has_sellouts(tmp_path: Path) -> None:
    """The knob is off by default: the stock draw (and its sellouts) is today's behaviour."""
    lake = open_store(tmp_path.as_uri())
    result = simulate(SimulationConfig(users=1_500, days=8, seed=0), lake)
    with Snapshot(result.truth_uri) as truth:
        demand = truth.read_pandas("demand_truth")
    assert demand.sellout_ts.notna().any()
    wanted, stock = demand.true_demand_qty, demand.sale_stock - 1
    assert (stock >= np.ceil(0.45 * wanted)).all() and (stock <= np.ceil(1.6 * wanted)).all()
    assert (stock != np.ceil(1000 * wanted)).any()


# --- a team's own experiment ------------------------------------------------------------------


def _experiment_files(root: Path, repeat: int = 0) -> tuple[Path, Path]:
    rng = np.random.default_rng(3)
    n = 3_000
    customers = [f"c{i}" for i in range(n)]
    group = rng.choice(["No E-Mail", "Mail"], n)
    bought = (rng.random(n) < np.where(group == "Mail", 0.12, 0.08)).astype(int)
    assignments = pd.DataFrame({"customer": customers, "group": group})
    outcomes = pd.DataFrame({"customer": customers, "bought": bought})
    if repeat:
        outcomes = pd.concat([outcomes, outcomes.head(repeat)], ignore_index=True)
    assignments.to_csv(root / "a.csv", index=False)
    outcomes.to_csv(root / "o.csv", index=False)
    return root / "a.csv", root / "o.csv"


def test_an_external_experiment_is_evaluated_and_its_bad_files_refused(tmp_path: Path) -> None:
    from flashsale_ml.loaders import InputFileError

    mapping = {"user_id": "customer", "arm": "group", "conversion": "bought"}
    settings = settings_for(tmp_path).model_copy(update={"pseudonym_key": "k" * 32})
    a, o = _experiment_files(tmp_path)
    result = evaluate_step(
        "mail-test",
        assignments=str(a),
        outcomes=str(o),
        mapping=mapping,
        control="No E-Mail",
        settings=settings,
    )
    assert result["srm_p_value"] > 0.001 and result["headline"]
    with Snapshot(result["labels_uri"]) as snapshot:
        assert snapshot.manifest.tables["labels"].rows == 3_000

    # a user with two rows of outcomes would count twice: refused before anything is written
    a, o = _experiment_files(tmp_path, repeat=5)
    with pytest.raises(InputFileError, match="each user has one row of outcomes") as caught:
        evaluate_step(
            "mail-dup", assignments=str(a), outcomes=str(o), mapping=mapping,
            control="No E-Mail", settings=settings,
        )  # fmt: skip
    assert "row 3001: 'c0'" in str(caught.value)
    with pytest.raises(DataError, match="--holdout-share must lie strictly between 0 and 1"):
        evaluate_step(
            "mail-share", assignments=str(a), outcomes=str(o), mapping=mapping,
            control="No E-Mail", holdout_share=1.0, settings=settings,
        )  # fmt: skip
    lake = open_store((tmp_path / "lake").as_uri())
    assert len(list_snapshots(lake, "experiments")) == 1  # only the good one
