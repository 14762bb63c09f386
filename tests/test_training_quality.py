"""Model quality against known answers: the simulator's oracle and real Online Shoppers data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flashsale_ml.datasets import Snapshot
from flashsale_ml.evaluation.binary import (
    binary_metrics,
    expected_calibration_error,
    ranking_curves,
    roc_auc,
)
from flashsale_ml.features import build_features
from flashsale_ml.loaders import ingest
from flashsale_ml.models.propensity.lgbm import LgbmConfig, time_split, train_propensity_lgbm
from flashsale_ml.simulation import SimulationConfig, simulate
from flashsale_ml.simulation.oracle import oracle_scores
from flashsale_ml.storage import open_store
from tests.conftest import shared_data
from tests.sessions_study import evaluate_sessions

# Seeds of the 30,000-user, 35-day shop (five sales: train on three, stop on the fourth, test
# on the fifth). Test AUC of the production configuration (LgbmConfig()) against the oracle's,
# measured 2026-11-24 on this code:
#
#   seed | oracle | LightGBM | gap    | test ECE | 20 rounds of 4 leaves: AUC, gap, ECE
#   11   | 0.8151 | 0.8037   | 0.0113 | 0.0077   | 0.7898, 0.0252, 0.0460
#   12   | 0.8071 | 0.7937   | 0.0134 | 0.0084   | 0.7891, 0.0180, 0.0381
#   13   | 0.8156 | 0.7931   | 0.0225 | 0.0072   | 0.7913, 0.0243, 0.0372
#
# The gap moves by a full 0.011 between seeds, as much as a crippled model loses on one of
# them, so the ranking bar is on the mean over the seeds, and calibration (which the crippled
# model misses by 5x) is barred per seed. A label leak scored 1.000 against 0.815: no model
# may beat the true probabilities.
ORACLE_SEEDS = (11, 12, 13)
MAX_GAP_PER_SEED = 0.027
MAX_MEAN_GAP = 0.019  # measured 0.0157; 20 rounds of 4 leaves: 0.0225
ABOVE_ORACLE_TOLERANCE = 0.003  # the oracle is exact up to stock-outs; a leak is far above
MAX_TEST_ECE = 0.02  # measured 0.007-0.008; crippled 0.037-0.046; without the intercept 0.020


@pytest.fixture(scope="module")
def oracle_gaps(tmp_path_factory: pytest.TempPathFactory) -> dict[int, dict[str, float]]:
    """The production configuration against the oracle on the test sale of each seed."""
    gaps = {}
    for seed in ORACLE_SEEDS:
        lake = open_store(tmp_path_factory.mktemp(f"quality-{seed}").as_uri())
        world = simulate(SimulationConfig(users=30_000, days=35, seed=seed), lake)
        with Snapshot(build_features(world.raw_uri, lake)) as snap:
            frame = snap.read_pandas("propensity")
        split = time_split(frame, seed=3)
        assert len(split.campaigns["train"]) == 3, split.campaigns
        model = train_propensity_lgbm(split, LgbmConfig(), seed=3)
        y = split.test["label_purchase"].to_numpy()
        oracle_auc = binary_metrics(y, oracle_scores(world.truth_uri, split.test))["auc"]
        gaps[seed] = {
            "oracle_auc": oracle_auc,
            "model_auc": model.metrics["test"]["auc"],
            "gap": oracle_auc - model.metrics["test"]["auc"],
            "ece": model.metrics["test"]["ece"],
        }
    return gaps


@pytest.mark.slow
def test_lgbm_auc_is_near_the_oracle_and_never_above_it(oracle_gaps) -> None:
    for seed, got in oracle_gaps.items():
        assert got["oracle_auc"] > 0.78, (seed, got)  # the truth is learnable at all
        # Above the true probabilities only by leaking the label (or something after it).
        assert got["gap"] >= -ABOVE_ORACLE_TOLERANCE, (seed, got)
        assert got["gap"] <= MAX_GAP_PER_SEED, (seed, got)
        assert got["ece"] < MAX_TEST_ECE, (seed, got)
    mean_gap = float(np.mean([got["gap"] for got in oracle_gaps.values()]))
    assert mean_gap <= MAX_MEAN_GAP, (mean_gap, oracle_gaps)


def test_calibration_error_known_values() -> None:
    y = np.array([0, 0, 1, 1])
    assert expected_calibration_error(y, np.array([0.0, 0.0, 1.0, 1.0]), bins=2) == 0.0
    assert expected_calibration_error(y, np.array([0.5, 0.5, 0.5, 0.5]), bins=1) == 0.0
    assert expected_calibration_error(y, np.array([0.5, 0.5, 0.5, 0.5]), bins=2) == pytest.approx(
        0.5
    )
    with pytest.raises(ValueError, match="only 0 and 1"):
        binary_metrics([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="only one class"):
        binary_metrics([1, 1], [0.1, 0.2])


@pytest.mark.slow
def test_online_shoppers_cv_and_time_forward(tmp_path: Path) -> None:
    lake = open_store(tmp_path.as_uri())
    raw = ingest("online-shoppers", shared_data("online_shoppers_intention.csv"), lake)
    sessions = Snapshot(build_features(raw, lake)).read_pandas("sessions")
    result = evaluate_sessions(sessions, seed=42)
    assert result.cv_auc_mean >= 0.93, result
    # 0.829 is what plain LightGBM (sessions_lgbm._params, 400 rounds, no month column)
    # trained on February-September and tested on October-December of this same file scored
    # (seed 42): the bar is our own measured result, not a published number. The published
    # references (AUROC about 0.94) are cross-validated, which mixes months.
    assert result.time_forward["auc"] >= 0.829, result.time_forward
    assert result.time_forward_rows["test"] > 3_000
    # Calibration on the shifted (holiday) season is reported, and not absurd.
    assert 0 <= result.time_forward["ece"] < 0.1


def test_staged_curves_equal_lightgbms_own_per_round_metrics() -> None:
    import lightgbm as lgb
    import pandas as pd

    from flashsale_ml.models.propensity.lgbm import staged_curves

    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(3_000, 4)), columns=list("abcd"))
    y = (rng.random(3_000) < 1 / (1 + np.exp(-2 * x["a"]))).astype(float)
    recorded: dict = {}
    data = lgb.Dataset(x, y)
    booster = lgb.train(
        {"objective": "binary", "metric": ["binary_logloss", "auc"], "verbosity": -1},
        data,
        num_boost_round=25,
        valid_sets=[lgb.Dataset(x, y, reference=data)],
        valid_names=["rows"],
        callbacks=[lgb.record_evaluation(recorded)],
    )
    curves = staged_curves(booster, x, y)
    np.testing.assert_allclose(
        curves["binary_logloss"], recorded["rows"]["binary_logloss"], atol=1e-9
    )
    np.testing.assert_allclose(curves["auc"], recorded["rows"]["auc"], atol=1e-9)


@pytest.mark.parametrize("distinct_scores", [7, 1000, None])
def test_binary_metrics_equal_scikit_learn(distinct_scores: int | None) -> None:
    """The one-sort metrics agree with scikit-learn, with and without tied scores."""
    from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

    rng = np.random.default_rng(distinct_scores or 0)
    n = 20_000
    p = rng.beta(1, 12, n)
    if distinct_scores:  # quantized scores: many ties, as from a small tree ensemble
        p = np.round(p * distinct_scores) / distinct_scores
    y = (rng.random(n) < p * 1.5).astype(int)
    got = binary_metrics(y, p)
    assert got["auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert roc_auc(y, np.log(p + 1e-3) - 7) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert got["pr_auc"] == pytest.approx(average_precision_score(y, p), abs=1e-12)
    assert got["log_loss"] == pytest.approx(log_loss(y, np.clip(p, 1e-7, 1 - 1e-7)), abs=1e-12)
    assert got["brier"] == pytest.approx(brier_score_loss(y, p), abs=1e-12)
    assert got["ece"] == pytest.approx(expected_calibration_error(y, p), abs=1e-15)
    assert got["positive_rate"] == pytest.approx(y.mean())


@pytest.mark.parametrize("distinct_scores", [7, None])
def test_ranking_curves_equal_scikit_learn(distinct_scores: int | None) -> None:
    """The plotted ROC and PR points are scikit-learn's, and thinning keeps both ends."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    rng = np.random.default_rng(distinct_scores or 0)
    p = rng.beta(1, 12, 5_000)
    if distinct_scores:
        p = np.round(p * distinct_scores) / distinct_scores
    y = (rng.random(len(p)) < p * 1.5).astype(int)
    full = ranking_curves(y, p, max_points=None)
    fpr, tpr, _ = roc_curve(y, p, drop_intermediate=False)
    np.testing.assert_allclose(full.false_positive_rate, fpr, atol=1e-12)
    np.testing.assert_allclose(full.true_positive_rate, tpr, atol=1e-12)
    precision, recall, _ = precision_recall_curve(y, p)
    np.testing.assert_allclose(full.precision, precision[:-1][::-1], atol=1e-12)
    np.testing.assert_allclose(full.recall, recall[:-1][::-1], atol=1e-12)
    assert full.auc == pytest.approx(binary_metrics(y, p)["auc"], abs=1e-12)
    assert full.average_precision == pytest.approx(binary_metrics(y, p)["pr_auc"], abs=1e-12)

    thinned = ranking_curves(y, p, max_points=50)
    assert len(thinned.recall) <= 50 and len(thinned.false_positive_rate) <= 50
    assert thinned.false_positive_rate[[0, -1]].tolist() == [0.0, 1.0]
    assert thinned.recall[-1] == 1.0 and thinned.auc == full.auc
    with pytest.raises(ValueError, match="only one class"):
        ranking_curves(np.zeros(3), [0.1, 0.2, 0.3])


def test_evaluate_scores_equals_its_three_separate_computations() -> None:
    """The test window's one-sort report: metrics, curves and calibration bins equal
    binary_metrics, ranking_curves and the bins of the ECE, each computed on its own."""
    from flashsale_ml.evaluation.binary import evaluate_scores

    rng = np.random.default_rng(3)
    p = np.round(rng.beta(1, 12, 9_000) * 300) / 300  # ties included
    y = (rng.random(len(p)) < p * 1.5).astype(int)
    got = evaluate_scores(y, p, max_points=500)
    assert got.metrics == binary_metrics(y, p)
    curves = ranking_curves(y, p, max_points=500)
    for name in ("false_positive_rate", "true_positive_rate", "recall", "precision"):
        np.testing.assert_array_equal(getattr(got.curves, name), getattr(curves, name))
    # equal-mass bins of ascending prediction: 15 bins of 600 rows
    order = np.argsort(p, kind="stable")
    bins = np.array_split(order, 15)
    np.testing.assert_allclose(got.calibration.mean_prediction, [p[b].mean() for b in bins])
    np.testing.assert_allclose(got.calibration.observed_rate, [y[b].mean() for b in bins])
    ece = sum(len(b) / len(p) * abs(y[b].mean() - p[b].mean()) for b in bins)
    assert got.metrics["ece"] == pytest.approx(ece, abs=1e-12)


def test_valid_metrics_equal_a_prediction_at_the_best_round() -> None:
    """Early stopping runs past the best round; the validation metrics are those of the best
    round, not of the last one trained (the learning curves go on to the last one), with the
    intercept correction fitted there applied (it is part of the model: ``booster.predict``
    includes it). The log loss is of the whole campaign; the other metrics come from a sample
    of ``valid_metric_rows`` rows, which is the whole campaign when it is smaller. What early
    stopping chose by, LightGBM's record at the best round, is ``early_stopping_log_loss``."""
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from flashsale_ml.models.propensity.lgbm import (
        CATEGORY_VOCAB,
        FEATURES,
        TimeSplit,
        encode_features,
        evaluation_sample,
    )

    rng = np.random.default_rng(5)

    def campaign(n: int) -> pd.DataFrame:
        frame = pd.DataFrame({c: rng.normal(size=n) for c in FEATURES if c not in CATEGORY_VOCAB})
        for column, vocab in CATEGORY_VOCAB.items():
            frame[column] = rng.choice(vocab, n)
        logit = frame["events_7d"] - 3 + 0.5 * (frame["arm"] != "control")
        frame["label_purchase"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
        return frame

    split = TimeSplit(campaign(4_000), campaign(2_000), campaign(2_000), {})
    config = LgbmConfig(learning_rate=0.3, early_stopping_rounds=5, max_rounds=400)
    model = train_propensity_lgbm(split, config, seed=1)
    # early stopping acted: LightGBM trained rounds past the best one; the learning curves
    # cover them all, the model keeps the rounds up to the best one
    trained = len(model.history["curve_valid_binary_logloss"])
    assert trained == model.best_iteration + config.early_stopping_rounds
    assert len(model.history["curve_valid_sample_auc"]) == trained
    assert model.booster.current_iteration() == model.best_iteration
    p = model.booster.predict(encode_features(split.valid), num_iteration=model.best_iteration)
    y = split.valid["label_purchase"].to_numpy()
    assert model.metrics["valid"]["auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-9)
    assert model.metrics["valid"]["ece"] == pytest.approx(binary_metrics(y, p)["ece"], abs=1e-9)
    assert model.metrics["valid"]["log_loss"] == pytest.approx(
        binary_metrics(y, p)["log_loss"], abs=1e-9
    )
    assert model.metrics["valid"]["early_stopping_log_loss"] == pytest.approx(
        model.history["curve_valid_binary_logloss"][model.best_iteration - 1], abs=1e-12
    )

    # A smaller sample: AUC and ECE of those rows, the log loss still of the whole campaign.
    sampled = train_propensity_lgbm(split, config.model_copy(update={"valid_metric_rows": 700}), 1)
    assert sampled.best_iteration == model.best_iteration
    rows = evaluation_sample(len(y), 700, seed=1 + 2)
    assert len(rows) == len(set(rows)) == 700
    assert sampled.metrics["valid"]["auc"] == pytest.approx(roc_auc_score(y[rows], p[rows]))
    assert sampled.metrics["valid"]["auc"] != pytest.approx(roc_auc_score(y, p), abs=1e-9)
    assert sampled.metrics["valid"]["ece"] == pytest.approx(
        binary_metrics(y[rows], p[rows])["ece"], abs=1e-9
    )
    assert sampled.metrics["valid"]["log_loss"] == model.metrics["valid"]["log_loss"]
