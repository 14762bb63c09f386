"""The uplift kind through the generic training runner, on a small simulated shop: every flavor
(meta-learner) logs its test metrics, plots and lineage, its logged model scores raw feature
rows, the kind's promotion holdout has one block of rows per arm, gate settings are read per
kind, and the T- and DR-learners rank users by the simulator's true uplift."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flashsale_ml.config import Settings, get_settings
from flashsale_ml.contract import CONTROL_ARM, PROMO_TYPES
from flashsale_ml.datasets import Snapshot
from flashsale_ml.features import build_features
from flashsale_ml.features.columns import LABEL, PROPENSITY_TABLE
from flashsale_ml.simulation import SimulationConfig, simulate
from flashsale_ml.storage import open_store

FLAVORS = ("dr", "x", "t", "s")
ARMS = tuple(sorted(PROMO_TYPES))  # the order of the logged model's columns
KIND_TAG = "flashsale.model_kind"
FLAVOR_TAG = "flashsale.model_flavor"
FITTED_TAG = "flashsale.fitted_campaigns"
TEST_TAG = "flashsale.test_campaigns"
HEADLINE = ("test_qini", "test_auuc", "test_uplift_at_30", "test_uplift_calibration_error")
# 4,000 users x 35 days: five weekly sales of ~3,300 eligible users each (four fitted, the
# newest one tested). Stock never caps a purchase, so outcomes follow the true probabilities.
SHOP = SimulationConfig(users=4_000, days=35, seed=7, sale_stock_factor=1000)
# Spearman bar of predicted against true uplift of the arm with the largest true heterogeneity
# on the test sale (~3,200 human users: under independence Spearman's rho has a standard error
# of 1/sqrt(n - 1) ~ 0.018, so 0.05 is ~2.8 standard errors, a one-sided p ~ 0.003).
# Measured with the default UpliftConfig on this shop size (that arm was pct_discount for seeds
# 2-8, timed_coupon for seed 1): T-learner 0.117, 0.123, 0.057, 0.082, 0.169, 0.135, 0.158,
# 0.013 for seeds 1-8; DR-learner 0.125, 0.078, 0.055, 0.055, 0.076, 0.081, 0.108, 0.029. At
# seed 7 (used here) T 0.158 and DR 0.108: both positive, the better one 3x the bar. Small
# shops make weak learners (seed 8), hence "the better of T and DR clears the bar".
MIN_SPEARMAN = 0.05


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A simulated shop's features and ground truth, and settings with a local SQLite store."""
    work = tmp_path_factory.mktemp("uplift")
    lake = open_store((work / "lake").as_uri())
    world = simulate(SHOP, lake)
    features_uri = build_features(world.raw_uri, lake)
    with Snapshot(features_uri) as snapshot:
        frame = snapshot.read_pandas(PROPENSITY_TABLE)
    with Snapshot(world.truth_uri) as truth:
        sale_truth = truth.read_pandas("sale_truth")
    starts = frame.groupby("campaign_id")["as_of"].min().sort_values()
    assert len(starts) == 5, starts
    settings = Settings(home=work, mlflow_tracking_uri=f"sqlite:///{work}/m.db", threads=2)
    return {
        "settings": settings,
        "features_uri": features_uri,
        "frame": frame,
        "truth": sale_truth,
        "campaigns": [str(c) for c in starts.index],
        "work": work,
        "raw_uri": world.raw_uri,
    }


@pytest.fixture(scope="module")
def trained(shop: dict) -> dict[str, dict]:
    """Each flavor trained once through the runner (``steps.train_model``)."""
    from flashsale_ml import steps

    return {
        flavor: steps.train_model(shop["features_uri"], "uplift", flavor, settings=shop["settings"])
        for flavor in FLAVORS
    }


def client(settings: Settings):
    import mlflow

    mlflow.set_tracking_uri(settings.tracking_uri)
    return mlflow.MlflowClient()


def newest_rows(shop: dict) -> pd.DataFrame:
    frame = shop["frame"]
    return frame[frame["campaign_id"] == shop["campaigns"][-1]].reset_index(drop=True)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_flavor_logs_test_metrics_plots_and_lineage(
    shop: dict, trained: dict, flavor: str
) -> None:
    result = trained[flavor]
    for metric in HEADLINE:
        assert np.isfinite(result[metric]), (metric, result)
    assert -1.0 <= result["test_qini"] <= 1.0 and result["test_uplift_calibration_error"] >= 0
    for arm in ARMS:  # each arm's own Qini (its treated users against control)
        assert np.isfinite(result[f"test_qini_{arm}"]), (arm, result)
    assert result["test_rows"] == len(newest_rows(shop))

    mlflow_client = client(shop["settings"])
    run = mlflow_client.get_run(result["run_id"])
    assert run.info.status == "FINISHED"
    for metric in HEADLINE:
        assert run.data.metrics[metric] == pytest.approx(result[metric])
    tags = run.data.tags
    assert tags[KIND_TAG] == "uplift" and tags[FLAVOR_TAG] == flavor, tags
    # Fitted on every older sale, tested on the newest, which it never saw.
    assert tags[TEST_TAG] == shop["campaigns"][-1]
    assert sorted(tags[FITTED_TAG].split(",")) == sorted(shop["campaigns"][:-1])
    assert run.data.params["learner"] == flavor
    plots = {a.path for a in mlflow_client.list_artifacts(result["run_id"], "plots")}
    assert {"plots/qini_curves.png", "plots/uplift_calibration.png"} <= plots, plots
    for path in ("plots/qini_curves.png", "plots/uplift_calibration.png"):
        local = Path(mlflow_client.download_artifacts(result["run_id"], path, str(shop["work"])))
        assert local.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and local.stat().st_size > 10_000


@pytest.mark.parametrize("flavor", FLAVORS)
def test_the_logged_model_scores_raw_feature_rows(shop: dict, trained: dict, flavor: str) -> None:
    import mlflow.pyfunc

    from flashsale_ml.models.uplift.scorer import FEATURES
    from flashsale_ml.scoring import load_predictor

    rows = newest_rows(shop)
    model_uri = trained[flavor]["model_uri"]
    predict = load_predictor(model_uri, shop["settings"])

    # The pyfunc: one uplift per promotion arm, in the order of the model's metadata.
    pyfunc = mlflow.pyfunc.load_model(model_uri)
    assert tuple(pyfunc.metadata.metadata["arms"]) == ARMS
    per_arm = np.asarray(pyfunc.predict(rows[list(FEATURES)]), dtype=float)
    assert per_arm.shape == (len(rows), len(ARMS)) and np.isfinite(per_arm).all()
    assert per_arm.std(axis=0).min() > 0  # it ranks users within every arm

    # The predictor: the best arm's uplift, or the arm a `scored_arm` column names.
    best = np.asarray(predict(rows), dtype=float)
    assert best.shape == (len(rows),) and np.isfinite(best).all()
    np.testing.assert_allclose(best, per_arm.max(axis=1))
    for column, arm in enumerate(ARMS):
        named = np.asarray(predict(rows.assign(scored_arm=arm)), dtype=float)
        np.testing.assert_allclose(named, per_arm[:, column], err_msg=arm)
    mixed = rows.assign(scored_arm=[ARMS[i % 3] for i in range(len(rows))])
    expected = per_arm[np.arange(len(rows)), np.arange(len(rows)) % 3]
    np.testing.assert_allclose(np.asarray(predict(mixed), dtype=float), expected)
    unknown = np.asarray(predict(rows.assign(scored_arm="free_shipping")), dtype=float)
    assert (unknown == 0).all()  # an arm the model was not trained on: no predicted uplift


@pytest.mark.parametrize(
    "flavor",
    [
        "dr",
        "x",
        "t",
        "s",
    ],
)
def test_uplifts_of_a_purchase_are_differences_of_probabilities(
    shop: dict, trained: dict, flavor: str
) -> None:
    import mlflow.pyfunc

    from flashsale_ml.models.uplift.scorer import FEATURES

    frame = shop["frame"]  # every sale's users: fitted and tested
    pyfunc = mlflow.pyfunc.load_model(trained[flavor]["model_uri"])
    uplift = np.asarray(pyfunc.predict(frame[list(FEATURES)]), dtype=float)
    assert np.isfinite(uplift).all()
    outside = np.abs(uplift) > 1.0
    assert not outside.any(), (outside.mean(), uplift.min(), uplift.max())


def test_the_holdout_expands_the_newest_sale_by_arm(shop: dict) -> None:
    from flashsale_ml.models import get_kind

    kind = get_kind("uplift")
    frame = shop["frame"]
    selection = kind.select_holdout(frame.sample(frac=1.0, random_state=3))  # any input order
    newest = newest_rows(shop)
    control = newest[newest["arm"] == CONTROL_ARM]
    assert selection.campaign_ids == (shop["campaigns"][-1],)
    rows = selection.rows
    assert len(rows) == len(selection.targets) == len(selection.segments)
    # Per arm: that arm's treated users and every control user of the sale.
    assert len(rows) == sum((newest["arm"] == arm).sum() + len(control) for arm in ARMS)
    assert set(rows["campaign_id"]) == {shop["campaigns"][-1]}
    for arm in ARMS:
        block = rows[rows["scored_arm"] == arm]
        assert set(block["arm"]) == {arm, CONTROL_ARM}
        assert set(block.loc[block["arm"] == CONTROL_ARM, "user_id"]) == set(control["user_id"])
        treated_ids = set(newest.loc[newest["arm"] == arm, "user_id"])
        assert set(block.loc[block["arm"] == arm, "user_id"]) == treated_ids
    # Sorted by arm and user; the key columns identify each row.
    keys = rows[list(selection.key_columns)]
    assert not keys.duplicated().any()
    assert rows[["scored_arm", "user_id"]].equals(
        rows[["scored_arm", "user_id"]].sort_values(["scored_arm", "user_id"])
    )
    # Targets encode (treated, purchase) as treated * 2 + purchase; segments are the arms.
    treated = (rows["arm"] == rows["scored_arm"]).to_numpy()
    np.testing.assert_array_equal(
        selection.targets, treated * 2.0 + rows[LABEL].to_numpy(dtype=float)
    )
    assert set(np.unique(selection.targets)) <= {0.0, 1.0, 2.0, 3.0}
    np.testing.assert_array_equal(selection.segments, rows["scored_arm"].to_numpy(dtype=object))


def targeted_campaign(seed: int = 0, users: int = 30_000) -> tuple[pd.DataFrame, dict]:
    """A targeted campaign as a plan makes one: each user's plan arm is the promotion the
    users like them respond to best, and each plan arm's users buy at a different base rate
    (who a promotion suits is not random); a 20 % keyed holdout becomes control, 10 % of the
    rest explore a random promotion. Returns the rows and each promotion's true mean effect on
    the users the plan gives it to."""
    rng = np.random.default_rng(seed)
    plan_code = rng.integers(0, len(ARMS), users)
    base = np.array([0.05, 0.10, 0.40])[plan_code]
    effect = np.array([0.02, 0.06, 0.10])  # of promotion k on plan arm k's users
    control = rng.random(users) < 0.2
    explore = ~control & (rng.random(users) < 0.1)
    arm_code = np.where(explore, rng.integers(0, len(ARMS), users), plan_code)
    bought = rng.random(users) < base + np.where(control, 0.0, effect[arm_code] * (~explore))
    names = np.asarray(ARMS, dtype=object)
    rows = pd.DataFrame(
        {
            "campaign_id": "fs-targeted",
            "as_of": pd.Timestamp("2026-01-01", tz="UTC"),
            "user_id": np.arange(users, dtype=np.int64),
            "arm": np.where(control, CONTROL_ARM, names[arm_code]),
            "plan_arm": np.where(explore, None, names[plan_code]),
            LABEL: bought.astype(int),
        }
    )
    return rows, dict(zip(ARMS, effect.tolist(), strict=True))


def test_a_targeted_campaign_compares_each_promotion_with_its_own_control_users() -> None:
    """On a targeted campaign the holdout of each promotion holds its treated users and the
    control users the plan meant for the same promotion (explorers left out), so the realized
    difference estimates that promotion's effect; against every control user it would mix in
    other plan arms' base rates. A randomized campaign (no plan arm) keeps every control row."""
    from flashsale_ml.models import get_kind

    rows, effect = targeted_campaign()
    selection = get_kind("uplift").select_holdout(rows)
    block_of = selection.rows.groupby("scored_arm")
    for arm in ARMS:
        block = block_of.get_group(arm)
        assert set(block["plan_arm"]) == {arm}
        treated = block[block["arm"] == arm][LABEL].to_numpy(float)
        held = block[block["arm"] == CONTROL_ARM][LABEL].to_numpy(float)
        se = np.sqrt(treated.var() / len(treated) + held.var() / len(held))
        assert abs(treated.mean() - held.mean() - effect[arm]) < 4 * se, arm
        # The naive comparison is far off here: it is why the plan arm is recorded.
        everyone = rows.loc[rows["arm"] == CONTROL_ARM, LABEL].to_numpy(float)
        naive = treated.mean() - everyone.mean()
        assert abs(naive - effect[arm]) > 8 * se, arm
    explorers = rows.loc[rows["plan_arm"].isna(), "user_id"]
    assert not selection.rows["user_id"].isin(explorers).any()

    randomized = get_kind("uplift").select_holdout(rows.assign(plan_arm=None))
    assert (
        len(randomized.rows)
        == len(rows)
        - (rows["arm"] == CONTROL_ARM).sum()
        + len(ARMS) * (rows["arm"] == CONTROL_ARM).sum()
    )


def test_design_propensities_are_shares_within_campaign_and_plan_arm() -> None:
    """A randomized campaign is one stratum; a targeted one has a stratum per plan arm (its
    treated users and control) and one of explorers (the promotions, no control)."""
    from flashsale_ml.models.uplift.flavors import design_propensities

    rows, _ = targeted_campaign(users=5_000)
    randomized = rows.assign(campaign_id="fs-random", plan_arm=None).iloc[:1000]
    both = pd.concat([randomized, rows], ignore_index=True)
    codes = {CONTROL_ARM: 0, **{a: i + 1 for i, a in enumerate(ARMS)}}
    arm = both["arm"].map(codes).to_numpy()
    e = design_propensities(both, arm, len(codes))
    np.testing.assert_allclose(e.sum(axis=1), 1.0)
    assert (e[np.arange(len(arm)), arm] > 0).all()
    first = np.bincount(arm[:1000], minlength=len(codes)) / 1000
    np.testing.assert_allclose(e[:1000], np.tile(first, (1000, 1)))
    targeted = both.iloc[1000:]
    for name, block in targeted.groupby(targeted["plan_arm"].fillna("explore")):
        shares = e[block.index]
        assert np.allclose(shares, shares[0]), name
        observed = block["arm"].map(codes).value_counts(normalize=True)
        np.testing.assert_allclose(shares[0][observed.index], observed.to_numpy())
        if name == "explore":
            assert shares[0][0] == 0.0  # explorers are never held out
        else:
            assert set(np.flatnonzero(shares[0])) == {0, codes[name]}


def test_the_test_campaign_plots_name_an_arm_they_cannot_measure() -> None:
    """A targeted campaign's plan may give a promotion to one user and hold nobody out for it:
    the training run's Qini and calibration figures draw the other arms and say which arm
    could not be measured, instead of failing the run."""
    from flashsale_ml.models.uplift.flavors import expand_by_arm
    from flashsale_ml.models.uplift.plots import qini_figure, uplift_calibration_figure

    rows, _ = targeted_campaign(users=3_000)
    lonely = rows.index[(rows["plan_arm"] == ARMS[0]) & (rows["arm"] == ARMS[0])][0]
    rows = rows[(rows["plan_arm"] != ARMS[0]) | (rows.index == lonely)]
    holdout = expand_by_arm(rows, ARMS, CONTROL_ARM)
    scores = np.random.default_rng(0).random(len(holdout))
    for make in (qini_figure, uplift_calibration_figure):
        figure = make(holdout, scores, LABEL, "test")
        texts = " ".join(t.get_text() for t in figure.axes[0].texts)
        assert f"{ARMS[0]} (1 treated, 0 control)" in texts
        legend = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
        assert any(ARMS[1] in label for label in legend) and not any(
            ARMS[0] in label for label in legend
        )


def test_promotion_scores_the_holdout_as_training_did(shop: dict, trained: dict) -> None:
    """The promotion holdout (the kind's selection, scored through the flavor's predictor)
    gives the Qini and uplift@30 % the training run logged on the same test sale."""
    from flashsale_ml.models import get_kind
    from flashsale_ml.scoring import load_predictor

    kind = get_kind("uplift")
    selection = kind.select_holdout(shop["frame"])
    for flavor in ("t", "dr"):
        predict = load_predictor(trained[flavor]["model_uri"], shop["settings"])
        metrics = kind.evaluate(selection.targets, predict(selection.rows))
        for name in ("qini", "uplift_at_30", "uplift_calibration_error"):
            assert metrics[name] == pytest.approx(trained[flavor][f"test_{name}"], abs=1e-6), (
                flavor,
                name,
            )


def test_t_and_dr_rank_users_by_their_true_uplift(shop: dict, trained: dict) -> None:
    from scipy.stats import spearmanr

    from flashsale_ml.scoring import load_predictor

    truth = shop["truth"].drop(columns="arm")
    rows = newest_rows(shop).merge(truth, on=["campaign_id", "user_id"], validate="1:1")
    assert len(rows) == len(newest_rows(shop))  # every assigned user has ground truth
    humans = rows[~rows["is_bot"]].reset_index(drop=True)  # bots never buy: no uplift to find
    spread = {arm: float(humans[f"uplift_{arm}"].std()) for arm in ARMS}
    arm = max(spread, key=spread.get)
    rho = {}
    for flavor in ("t", "dr"):
        predict = load_predictor(trained[flavor]["model_uri"], shop["settings"])
        predicted = np.asarray(predict(humans.assign(scored_arm=arm)), dtype=float)
        rho[flavor] = float(spearmanr(predicted, humans[f"uplift_{arm}"]).statistic)
    assert min(rho.values()) > 0, (arm, spread, rho)
    assert max(rho.values()) > MIN_SPEARMAN, (arm, spread, rho)


@pytest.fixture
def clean_promotion_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    import os

    for key in list(os.environ):
        if key.upper().startswith("FLASHSALE_PROMOTION"):
            monkeypatch.delenv(key)
    return monkeypatch


def test_uplift_gates_are_read_from_their_own_section(
    clean_promotion_env: pytest.MonkeyPatch,
) -> None:
    from flashsale_ml.models import get_kind

    kind = get_kind("uplift")
    assert get_settings().gate_settings("uplift").min_qini == 0.0  # the default
    clean_promotion_env.setenv("FLASHSALE_PROMOTION__UPLIFT__MIN_QINI", "0.02")
    clean_promotion_env.setenv("FLASHSALE_PROMOTION__UPLIFT__BOOTSTRAP_SAMPLES", "200")
    settings = get_settings()
    gates = settings.gate_settings("uplift")
    assert (gates.min_qini, gates.bootstrap_samples) == (0.02, 200)
    spec = kind.gates(settings)
    (bound,) = spec.absolute
    assert (bound.metric, bound.bound) == ("qini", 0.02)
    assert spec.bootstrap_samples == 200
    assert not bound.passed(0.01) and bound.passed(0.03)
    # Another kind's section and the flat (propensity) gates do not reach the uplift gates.
    clean_promotion_env.setenv("FLASHSALE_PROMOTION__PROPENSITY__BOOTSTRAP_SAMPLES", "300")
    clean_promotion_env.setenv("FLASHSALE_PROMOTION__MIN_AUC", "0.65")
    settings = get_settings()
    assert settings.gate_settings("uplift").bootstrap_samples == 200
    assert settings.gate_settings("propensity").bootstrap_samples == 300


def test_the_uplift_min_qini_decides_a_first_promotion(
    shop: dict, trained: dict, clean_promotion_env: pytest.MonkeyPatch
) -> None:
    """The kind's absolute gate, read from FLASHSALE_PROMOTION__UPLIFT__MIN_QINI, judges the
    T-learner's holdout Qini (decide_promotion on the kind's holdout, no registry)."""
    from flashsale_ml.models import get_kind
    from flashsale_ml.promotion.decision import ModelEvaluation, decide_promotion
    from flashsale_ml.promotion.holdout import HoldoutWindow
    from flashsale_ml.scoring import load_predictor

    kind = get_kind("uplift")
    selection = kind.select_holdout(shop["frame"])
    predict = load_predictor(trained["t"]["model_uri"], shop["settings"])
    window = HoldoutWindow("features", selection.campaign_ids, "as-of", len(selection.rows), "d")
    evaluation = ModelEvaluation(
        model="uplift/1",
        holdout=window,
        fitted_on=frozenset(shop["campaigns"][:-1]),
        labels=selection.targets,
        scores=predict(selection.rows),
        segments=selection.segments,
    )
    qini = trained["t"]["test_qini"]
    verdicts = {}
    for bound in (round(qini - 0.01, 6), round(qini + 0.01, 6)):
        clean_promotion_env.setenv("FLASHSALE_PROMOTION__UPLIFT__MIN_QINI", str(bound))
        decision = decide_promotion(evaluation, None, kind.gates(get_settings()), seed=0)
        absolute = next(g for g in decision.gates if g.name == "absolute")
        assert absolute.detail == f"Qini {qini:.4f} (min {bound})", absolute
        verdicts[bound > qini] = (decision.promote, absolute.passed)
    assert verdicts == {False: (True, True), True: (False, False)}, verdicts


@pytest.mark.parametrize(
    ("value", "field"),
    [("abc", "min_qini"), ("10", "bootstrap_samples")],
)
def test_bad_uplift_gates_fail_when_settings_are_read(
    clean_promotion_env: pytest.MonkeyPatch, value: str, field: str
) -> None:
    clean_promotion_env.setenv(f"FLASHSALE_PROMOTION__UPLIFT__{field.upper()}", value)
    with pytest.raises(ValueError, match=field):
        get_settings()


def test_an_unknown_uplift_gate_is_refused(clean_promotion_env: pytest.MonkeyPatch) -> None:
    clean_promotion_env.setenv("FLASHSALE_PROMOTION__UPLIFT__MIN_QUINI", "0.1")
    with pytest.raises(ValueError, match="min_quini"):
        get_settings()


def test_retraining_reads_what_evaluation_measured(shop: dict, trained: dict) -> None:
    """The loop: `flashsale evaluate` writes each campaign's realized outcomes as a
    campaign_labels snapshot; the next uplift training reads them and learns the incremental
    margin per arm. Without them it says which campaigns to evaluate first."""
    from flashsale_ml import steps
    from flashsale_ml.tracking import load_pyfunc

    settings = shop["settings"]
    before = client(settings).get_run(trained["t"]["run_id"]).data.params
    fitted = shop["campaigns"][:-1]
    assert before["margin_model.trained"] == "false"
    assert all(c in before["margin_model.why"] for c in fitted), before["margin_model.why"]

    written = {
        c: steps.evaluate_campaign(c, shop["raw_uri"], settings=settings)["labels_uri"]
        for c in fitted
    }
    retrained = steps.train_model(shop["features_uri"], "uplift", "t", settings=settings)
    params = client(settings).get_run(retrained["run_id"]).data.params
    assert params["margin_model.trained"] == "true"
    assert {c: params[f"margin_model.labels_snapshots.{c}"] for c in fitted} == written

    served = load_pyfunc(retrained["model_uri"])
    scorer = served.unwrap_python_model().model
    rows = newest_rows(shop)
    margin = scorer.predict_margin(rows)
    assert margin.shape == (len(rows), len(scorer.arms)) and np.isfinite(margin).all()
    # margins are money, not probabilities: the learner is the continuous one
    assert scorer.margin_learner.outcome == "continuous"
    # The served model gives both through its `output` parameter (purchase by default), as
    # MLflow's signature declares it.
    from flashsale_ml.models.uplift.scorer import FEATURES

    frame = rows[list(FEATURES)]
    served_margin = np.asarray(served.predict(frame, params={"output": "margin"}))
    np.testing.assert_allclose(served_margin, margin)
    purchase = np.asarray(served.predict(frame))
    np.testing.assert_allclose(purchase, scorer.predict(rows))
    assert not np.allclose(purchase, served_margin)
    assert served.metadata.get_params_schema().to_dict() == [
        {"name": "output", "type": "string", "default": "purchase", "shape": None}
    ]
    with pytest.raises(ValueError, match="output must be one of"):
        scorer.predict(rows, output="revenue")
    # A model trained before the labels existed says so when asked for margins.
    first = load_pyfunc(trained["t"]["model_uri"])
    with pytest.raises(ValueError, match="has no margin model"):
        first.predict(frame, params={"output": "margin"})


def test_uplift_metrics_on_a_holdout_without_buyers_raise_a_data_error() -> None:
    """Promotion evaluates the holdout with ``uplift_metrics`` and gates each arm with
    ``arm_qinis``: a campaign without buyers is a data error naming the rows and the arm."""
    from flashsale_ml.errors import DataError
    from flashsale_ml.models.uplift.gates import arm_qinis, uplift_metrics

    treated = np.tile([0.0, 1.0], 300)
    targets = treated * 2.0  # nobody bought, in either group
    scores = np.linspace(0.0, 1.0, len(targets))
    with pytest.raises(DataError, match="holdout campaign rows \\(600 rows") as raised:
        uplift_metrics(targets, scores)
    assert "no buyers in control and treated" in str(raised.value)
    arms = np.array(["pct_discount"] * len(targets), dtype=object)
    with pytest.raises(DataError, match="arm 'pct_discount' on its 600 campaign rows"):
        arm_qinis(targets, scores, arms, 200)


def test_an_arm_without_buyers_is_left_out_of_the_per_arm_qinis(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A targeted campaign may give a promotion to a handful of users, none of whom bought:
    that arm cannot be gated, like an arm below the minimum rows, and is named in a warning;
    the other arms are still measured."""
    from flashsale_ml.evaluation.uplift import qini_coefficient
    from flashsale_ml.models.uplift.gates import arm_qinis

    rng = np.random.default_rng(0)
    treated = np.tile([0.0, 1.0], 300)
    bought = (rng.random(600) < 0.1 + 0.1 * treated).astype(float)
    scores = rng.random(600)
    targets = np.r_[treated * 2.0 + bought, np.tile([0.0, 2.0], 3)]  # 6 rows, no buyers
    arms = np.array(["pct_discount"] * 600 + ["gift_with_purchase"] * 6, dtype=object)
    with caplog.at_level("WARNING"):
        qinis = arm_qinis(targets, np.r_[scores, np.zeros(6)], arms, 1)
    assert qinis == {"pct_discount": qini_coefficient(bought, treated, scores)}
    assert "arm 'gift_with_purchase' on its 6 campaign rows" in caplog.text
