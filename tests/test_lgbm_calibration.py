"""The LightGBM propensity model's intercept correction (``LgbmConfig.recalibrate_intercept``):
one log-odds shift fitted on the validation sale and added to the leaves of the first tree,
so that the booster MLflow logs, and scoring loads, carries it."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

from flashsale_ml.datasets import Snapshot
from flashsale_ml.evaluation.binary import binary_metrics
from flashsale_ml.features import build_features
from flashsale_ml.models.propensity.lgbm import (
    LgbmConfig,
    TimeSplit,
    encode_features,
    intercept_shift,
    shift_first_tree,
    time_split,
    train_propensity_lgbm,
)
from flashsale_ml.simulation import SimulationConfig, simulate
from flashsale_ml.storage import open_store


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Four weekly sales of a simulated shop: train on two, validate on the third, test on the
    fourth. Cumulative counts grow with calendar time, so the uncorrected model over-predicts
    the later sales (by about a quarter here), as in the demo."""
    work = tmp_path_factory.mktemp("calibration")
    lake = open_store((work / "lake").as_uri())
    world = simulate(SimulationConfig(users=3_000, days=28, seed=5), lake)
    features_uri = build_features(world.raw_uri, lake)
    return {"work": work, "lake": lake, "features_uri": features_uri}


@pytest.fixture(scope="module")
def split(shop: dict) -> TimeSplit:
    with Snapshot(shop["features_uri"]) as snap:
        split = time_split(snap.read_pandas("propensity"), seed=3)
    assert (
        len(split.campaigns["train"]) == 2 and split.campaigns["valid"] != split.campaigns["test"]
    )
    return split


@pytest.fixture(scope="module")
def models(split: TimeSplit) -> dict:
    """The same fit with and without the correction (deterministic LightGBM, same seed)."""
    return {
        flag: train_propensity_lgbm(split, LgbmConfig(recalibrate_intercept=flag), seed=3)
        for flag in (True, False)
    }


def labels(frame) -> np.ndarray:
    return frame["label_purchase"].to_numpy(dtype="float64")


def test_the_mean_prediction_on_the_validation_sale_is_its_observed_rate(models, split) -> None:
    corrected, plain = models[True], models[False]
    x, y = encode_features(split.valid), labels(split.valid)
    p = corrected.booster.predict(x)
    assert abs(p.mean() - y.mean()) < 1e-6, (p.mean(), y.mean())
    # without the correction the model over-predicts this sale: the test is not vacuous
    before = plain.booster.predict(x).mean()
    assert before > y.mean() * 1.1, (before, y.mean())
    assert corrected.calibration["intercept_shift"] < -0.1
    calibration = corrected.calibration
    assert calibration["valid_mean_prediction_before"] == pytest.approx(before, abs=1e-12)
    assert calibration["valid_mean_prediction_after"] == pytest.approx(p.mean(), abs=1e-12)
    assert calibration["valid_positive_rate"] == y.mean()
    # Validation metrics are of the shifted model (the validation sale is smaller than the
    # metric sample, so they cover all of it) ...
    shifted = binary_metrics(y, p)
    for name in ("log_loss", "ece", "brier", "auc", "mean_prediction"):
        assert corrected.metrics["valid"][name] == pytest.approx(shifted[name], abs=1e-9), name
    assert corrected.metrics["valid"]["log_loss"] < plain.metrics["valid"]["log_loss"]
    # ... but what early stopping chose by is LightGBM's record of the unshifted model.
    unshifted = binary_metrics(y, plain.booster.predict(x))["log_loss"]
    assert corrected.metrics["valid"]["early_stopping_log_loss"] == pytest.approx(unshifted, 1e-6)
    assert plain.metrics["valid"]["log_loss"] == pytest.approx(unshifted, abs=1e-9)


def test_the_shift_moves_every_log_odds_alike_and_keeps_the_ranking(models, split) -> None:
    corrected, plain = models[True], models[False]
    shift = corrected.calibration["intercept_shift"]
    assert plain.calibration["intercept_shift"] == 0.0
    assert corrected.best_iteration == plain.best_iteration
    x, y = encode_features(split.test), labels(split.test)
    raw_corrected = corrected.booster.predict(x, raw_score=True)
    raw_plain = plain.booster.predict(x, raw_score=True)
    np.testing.assert_allclose(raw_corrected - raw_plain, shift, rtol=0, atol=1e-9)
    # every tree but the first is untouched
    trees = [m.booster.dump_model()["tree_info"] for m in (corrected, plain)]
    assert len(trees[0]) == len(trees[1]) == corrected.best_iteration
    assert trees[0][1:] == trees[1][1:] and trees[0][0] != trees[1][0]
    # a monotone shift: the test AUC is identical, the calibration of the level is not
    assert corrected.metrics["test"]["auc"] == pytest.approx(
        plain.metrics["test"]["auc"], abs=1e-12
    )
    assert corrected.metrics["test"]["pr_auc"] == pytest.approx(
        plain.metrics["test"]["pr_auc"], abs=1e-12
    )
    # The test metrics are the shifted booster's own, and the "before" figures the plain one's.
    p = corrected.booster.predict(x)
    expected = binary_metrics(y, p)
    for name in ("log_loss", "ece", "brier", "mean_prediction"):
        assert corrected.metrics["test"][name] == pytest.approx(expected[name], abs=1e-9), name
    assert corrected.calibration["test_mean_prediction_after"] == pytest.approx(p.mean(), 1e-12)
    assert corrected.calibration["test_mean_prediction_before"] == pytest.approx(
        plain.metrics["test"]["mean_prediction"], abs=1e-12
    )
    assert corrected.calibration["test_log_loss_before"] == pytest.approx(
        plain.metrics["test"]["log_loss"], abs=1e-9
    )
    # on the next sale, the correction brings the mean prediction to the observed rate
    observed = y.mean()
    assert abs(p.mean() - observed) < 0.5 * abs(plain.metrics["test"]["mean_prediction"] - observed)
    assert corrected.metrics["test"]["log_loss"] < plain.metrics["test"]["log_loss"]


def test_a_reloaded_model_predicts_the_shifted_probabilities(models, split, tmp_path) -> None:
    """What MLflow stores is the model string; scoring loads it through pyfunc."""
    import lightgbm as lgb
    import mlflow.lightgbm

    from flashsale_ml.scoring import load_predictor

    booster = models[True].booster
    expected = booster.predict(encode_features(split.test))
    reloaded = lgb.Booster(model_str=booster.model_to_string())
    np.testing.assert_array_equal(reloaded.predict(encode_features(split.test)), expected)

    mlflow.lightgbm.save_model(booster, str(tmp_path / "model"))
    scored = load_predictor(str(tmp_path / "model"))(split.test)
    np.testing.assert_allclose(scored, expected, rtol=0, atol=1e-12)
    y = labels(split.valid)
    assert load_predictor(str(tmp_path / "model"))(split.valid).mean() == pytest.approx(
        y.mean(), abs=1e-6
    )


def test_no_correction_when_the_validation_rows_come_from_a_training_sale() -> None:
    """With two campaigns the validation rows are a sample of the training sale: nothing
    later to correct towards, so no shift (it would fit only that sample's noise)."""
    import pandas as pd

    from flashsale_ml.models.propensity.lgbm import CATEGORY_VOCAB, FEATURES

    rng = np.random.default_rng(4)

    def campaign(n: int, level: float) -> pd.DataFrame:
        frame = pd.DataFrame({c: rng.normal(size=n) for c in FEATURES if c not in CATEGORY_VOCAB})
        for column, vocab in CATEGORY_VOCAB.items():
            frame[column] = rng.choice(vocab, n)
        logit = frame["events_7d"] + level
        frame["label_purchase"] = (rng.random(n) < expit(logit)).astype(int)
        return frame

    train, valid, test = campaign(3_000, -2.5), campaign(1_000, -2.0), campaign(1_000, -2.0)
    config = LgbmConfig(learning_rate=0.2, early_stopping_rounds=5)
    in_time = TimeSplit(train, valid, test, {"train": ["a"], "valid": ["a"], "test": ["b"]})
    later = TimeSplit(train, valid, test, {"train": ["a"], "valid": ["b"], "test": ["c"]})
    skipped = train_propensity_lgbm(in_time, config, seed=1)
    assert skipped.calibration["intercept_shift"] == 0.0
    applied = train_propensity_lgbm(later, config, seed=1)
    assert applied.calibration["intercept_shift"] > 0.1  # the later sale's higher level
    y = labels(valid)
    assert applied.booster.predict(encode_features(valid)).mean() == pytest.approx(y.mean(), 1e-6)
    assert skipped.booster.predict(encode_features(valid)).mean() < y.mean() - 0.02


def newton_intercept(raw: np.ndarray, y: np.ndarray) -> float:
    """The Bernoulli maximum-likelihood intercept for fixed offsets ``raw``, by Newton steps."""
    delta = 0.0
    for _ in range(100):
        p = expit(raw + delta)
        step = (y - p).sum() / (p * (1 - p)).sum()
        delta += step
        if abs(step) < 1e-14:
            break
    return delta


def test_the_shift_is_the_maximum_likelihood_intercept(models, split) -> None:
    from scipy.optimize import minimize_scalar

    raw = models[False].booster.predict(encode_features(split.valid), raw_score=True)
    y = labels(split.valid)
    shift = models[True].calibration["intercept_shift"]
    assert shift == pytest.approx(newton_intercept(raw, y), abs=1e-10)

    def negative_log_likelihood(delta: float) -> float:
        z = raw + delta
        return float(np.sum(np.logaddexp(0.0, z) - y * z))

    found = minimize_scalar(negative_log_likelihood, bracket=(-2.0, 0.0), tol=1e-12)
    assert shift == pytest.approx(found.x, abs=1e-6)
    assert intercept_shift(raw, y) == shift


def test_intercept_shift_edge_cases() -> None:
    rng = np.random.default_rng(0)
    raw = rng.normal(-2.0, 1.0, 5_000)
    y = (rng.random(5_000) < expit(raw + 0.8)).astype(float)
    assert intercept_shift(raw, y) == pytest.approx(newton_intercept(raw, y), abs=1e-10)
    assert intercept_shift(raw, y) == pytest.approx(0.8, abs=0.1)
    # one distinct score: the shift is logit(rate) - score exactly
    y = np.array([1.0, 0.0, 0.0, 0.0])
    assert intercept_shift(np.full(4, 0.3), y) == pytest.approx(np.log(1 / 3) - 0.3, abs=1e-12)
    # extreme offsets still bracket
    far = np.r_[np.full(50, -30.0), np.full(50, 30.0)]
    delta = intercept_shift(far, np.r_[np.zeros(90), np.ones(10)])
    assert expit(far + delta).mean() == pytest.approx(0.1, abs=1e-9)
    with pytest.raises(ValueError, match="both classes"):
        intercept_shift(raw, np.zeros(len(raw)))
    with pytest.raises(ValueError, match="equal length"):
        intercept_shift(raw, y)


def test_shift_first_tree_moves_every_raw_score_even_of_a_one_leaf_tree() -> None:
    import lightgbm as lgb

    rng = np.random.default_rng(1)
    x = rng.normal(size=(2_000, 3))
    y = (rng.random(2_000) < expit(x[:, 0] - 1)).astype(float)
    for leaves in (2, 31):
        booster = lgb.train(
            {"objective": "binary", "num_leaves": leaves, "verbosity": -1},
            lgb.Dataset(x, y),
            num_boost_round=5,
        )
        before = booster.predict(x, raw_score=True)
        shift_first_tree(booster, -0.37)
        np.testing.assert_allclose(booster.predict(x, raw_score=True), before - 0.37, atol=1e-12)
    # a constant first tree (nothing to split on) has a single leaf
    booster = lgb.train(
        {"objective": "binary", "verbosity": -1, "min_data_in_leaf": 5_000},
        lgb.Dataset(x, y),
        num_boost_round=2,
    )
    assert booster.dump_model()["tree_info"][0]["num_leaves"] == 1
    before = booster.predict(x, raw_score=True)
    shift_first_tree(booster, 0.25)
    np.testing.assert_allclose(booster.predict(x, raw_score=True), before + 0.25, atol=1e-12)


@pytest.mark.slow
def test_the_logged_model_and_run_carry_the_correction(shop: dict, split: TimeSplit) -> None:
    """The training step logs the shift (param and metric) and the before/after means, and the
    model it logs scores the validation sale at its observed rate through ``models:/``."""
    import mlflow

    from flashsale_ml.config import Settings
    from flashsale_ml.models.propensity import train_lgbm as train_propensity_lgbm_step
    from flashsale_ml.scoring import load_predictor

    work = shop["work"]
    settings = Settings(
        home=work / "home",
        storage_root=shop["lake"].uri(),
        mlflow_tracking_uri=f"sqlite:///{work / 'mlflow.db'}",
        seed=3,
        threads=1,  # the step's share of the cores reaches LightGBM
    )
    result = train_propensity_lgbm_step(shop["features_uri"], settings)
    mlflow.set_tracking_uri(settings.tracking_uri)
    run = mlflow.MlflowClient().get_run(result.run_id)
    metrics, params = run.data.metrics, run.data.params
    shift = metrics["calibration_intercept_shift"]
    assert shift < -0.1 and float(params["calibration_intercept_shift"]) == shift
    assert params["lgbm.recalibrate_intercept"] == "true"
    assert params["lgbm.num_threads"] == "1"
    y = labels(split.valid)
    assert metrics["calibration_valid_positive_rate"] == pytest.approx(y.mean(), abs=1e-12)
    assert metrics["calibration_valid_mean_prediction_after"] == pytest.approx(y.mean(), abs=1e-6)
    assert metrics["calibration_valid_mean_prediction_before"] > y.mean() * 1.1
    assert "valid_early_stopping_log_loss" in metrics
    scored = load_predictor(result.model_uri)(split.valid)
    assert scored.mean() == pytest.approx(y.mean(), abs=1e-6)
