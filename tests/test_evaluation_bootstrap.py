"""The paired bootstrap parameterised by a per-row statistic (flashsale_ml.evaluation.bootstrap)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from scipy.stats import bootstrap
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

from flashsale_ml.evaluation.bootstrap import (
    STATISTICS,
    PairedStatistic,
    RocAuc,
    RowMean,
    paired_bootstrap,
    statistic,
)


def absolute_error(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    return np.abs(labels - scores)


def pinball_loss(quantile: float):
    def per_row(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
        residual = labels - scores
        return np.maximum(quantile * residual, (quantile - 1.0) * residual)

    return per_row


ABSOLUTE_ERROR = RowMean("absolute_error", absolute_error, higher_is_better=False)


@dataclass(frozen=True)
class ViaPrepare:
    """A statistic that is not a :class:`RowMean`, so the bootstrap takes its generic path
    (``prepare`` per model, difference per replicate) instead of the dot-product fast path."""

    inner: RowMean

    @property
    def name(self) -> str:
        return f"generic_{self.inner.name}"

    @property
    def higher_is_better(self) -> bool:
        return self.inner.higher_is_better

    def validate(self, labels: np.ndarray, scores: np.ndarray) -> None:
        self.inner.validate(labels, scores)

    def prepare(self, labels: np.ndarray, scores: np.ndarray):
        return self.inner.prepare(labels, scores)


@pytest.fixture(scope="module")
def revenue() -> dict[str, np.ndarray]:
    """A continuous target (spend per customer in a sale) and two forecasts of it; the
    challenger's error is smaller than the champion's."""
    rng = np.random.default_rng(20240601)
    n = 5_000
    target = rng.gamma(2.0, 30.0, n)
    return {
        "target": target,
        "good": target + rng.normal(0.0, 10.0, n),
        "poor": target + rng.normal(5.0, 20.0, n),
    }


@pytest.fixture(scope="module")
def purchases() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    n = 3_000
    logit = rng.normal(-1.5, 1.2, n)
    truth = 1.0 / (1.0 + np.exp(-logit))
    labels = (rng.random(n) < truth).astype(float)
    noisy = 1.0 / (1.0 + np.exp(-(logit + rng.normal(0.0, 1.0, n))))
    return {
        "labels": labels,
        "truth": np.clip(truth, 0.02, 0.98),
        "noisy": np.clip(noisy, 0.02, 0.98),
    }


# (a) a RowMean statistic: plain mean difference, and scipy's paired percentile interval


def test_row_mean_point_is_the_mean_difference_and_interval_matches_scipy(revenue) -> None:
    y, good, poor = revenue["target"], revenue["good"], revenue["poor"]
    samples, confidence = 2_000, 0.95
    got = paired_bootstrap(y, good, poor, ABSOLUTE_ERROR, samples, confidence, seed=3)

    challenger_loss, champion_loss = absolute_error(y, good), absolute_error(y, poor)
    assert got.difference == pytest.approx(champion_loss.mean() - challenger_loss.mean(), 1e-12)
    assert got.metric == "absolute_error" and got.samples == samples
    assert got.low < got.difference < got.high

    def champion_minus_challenger(challenger, champion, axis=-1):
        return np.mean(champion, axis=axis) - np.mean(challenger, axis=axis)

    reference = bootstrap(
        (challenger_loss, champion_loss),
        champion_minus_challenger,
        paired=True,
        vectorized=True,
        n_resamples=samples,
        batch=250,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(99),
    )
    # Both are Monte Carlo estimates of the same percentile interval from independent RNG
    # streams. With B = 2000 resamples, an estimated 2.5 % quantile of a (here, n = 5000,
    # near-normal) bootstrap distribution with spread sigma has a standard error of about
    # sqrt(0.025 * 0.975 / B) / phi(1.96) * sigma ~= 0.06 sigma, so the gap between the two
    # estimates has a standard error of about 0.085 sigma. 0.35 sigma is ~4 standard errors:
    # loose enough not to flake (over 40 seed pairs the gap had a standard deviation of 0.078
    # sigma and never exceeded 0.2 sigma), yet a wrong orientation (an interval around
    # -difference, ~85 sigma away here) fails it by a wide margin.
    sigma = reference.standard_error
    assert got.difference > 10 * sigma  # the orientation check below has teeth
    assert got.low == pytest.approx(reference.confidence_interval.low, abs=0.35 * sigma)
    assert got.high == pytest.approx(reference.confidence_interval.high, abs=0.35 * sigma)
    assert np.std(got.distribution) == pytest.approx(sigma, rel=0.1)


def test_row_mean_replicates_are_means_over_the_documented_resamples(revenue) -> None:
    """Exact check of the resampling: replicate i is the mean gain over the rows of the i-th
    ``default_rng(seed).integers(0, n, n)`` draw."""
    n, samples = 800, 60
    y, good, poor = revenue["target"][:n], revenue["good"][:n], revenue["poor"][:n]
    got = paired_bootstrap(y, good, poor, ABSOLUTE_ERROR, samples, 0.9, seed=5)
    gain = absolute_error(y, poor) - absolute_error(y, good)
    rng = np.random.default_rng(5)
    expected = np.array([gain[rng.integers(0, n, n)].mean() for _ in range(samples)])
    np.testing.assert_allclose(got.distribution, expected, rtol=0, atol=1e-10)
    low, high = np.quantile(expected, [0.05, 0.95])
    assert (got.low, got.high) == pytest.approx((low, high), abs=1e-10)


# (b) a custom RowMean on a continuous target through the object path; sign orientation


@pytest.mark.parametrize(
    "stat",
    [ABSOLUTE_ERROR, RowMean("pinball_q90", pinball_loss(0.9), higher_is_better=False)],
    ids=["absolute_error", "pinball_q90"],
)
def test_a_custom_loss_is_oriented_challenger_better_positive(revenue, stat) -> None:
    y, good, poor = revenue["target"], revenue["good"], revenue["poor"]
    better = paired_bootstrap(y, good, poor, stat, 300, 0.95, seed=1)
    worse = paired_bootstrap(y, poor, good, stat, 300, 0.95, seed=1)
    assert better.difference > 0 and better.excludes_zero()
    assert worse.difference < 0 and worse.high < 0 and not worse.excludes_zero()
    # The same resamples with the models swapped: exactly the mirror image.
    assert worse.difference == pytest.approx(-better.difference, abs=1e-12)
    assert (worse.low, worse.high) == pytest.approx((-better.high, -better.low), abs=1e-12)
    np.testing.assert_allclose(worse.distribution, -better.distribution, rtol=0, atol=1e-12)


def test_a_higher_is_better_row_mean_is_not_negated(revenue) -> None:
    """E.g. revenue captured by targeting: the challenger's larger mean is a positive gain."""
    y = revenue["target"]
    captured = RowMean("captured", lambda labels, scores: labels * scores, higher_is_better=True)
    challenger, champion = np.full(len(y), 0.6), np.full(len(y), 0.5)
    got = paired_bootstrap(y, challenger, champion, captured, 200, 0.95, seed=2)
    assert got.difference == pytest.approx(0.1 * y.mean(), rel=1e-12)
    assert got.excludes_zero()


def test_the_generic_prepare_path_agrees_with_the_row_mean_fast_path(revenue) -> None:
    y, good, poor = revenue["target"], revenue["good"], revenue["poor"]
    generic = ViaPrepare(ABSOLUTE_ERROR)
    assert isinstance(generic, PairedStatistic) and not isinstance(generic, RowMean)
    fast = paired_bootstrap(y, good, poor, ABSOLUTE_ERROR, 200, 0.95, seed=4)
    slow = paired_bootstrap(y, good, poor, generic, 200, 0.95, seed=4)
    assert slow.metric == "generic_absolute_error"
    assert slow.difference == pytest.approx(fast.difference, abs=1e-9)
    np.testing.assert_allclose(slow.distribution, fast.distribution, rtol=0, atol=1e-9)
    assert slow.difference > 0  # the generic path orients a loss the same way


def test_non_binary_labels_pass_a_generic_row_mean_but_not_the_binary_metrics(revenue) -> None:
    y = revenue["target"][:500]
    p = np.full(500, 0.5)
    paired_bootstrap(y, p, p, ABSOLUTE_ERROR, 100, 0.95, seed=0)  # any finite target is fine
    for name in ("auc", "log_loss", "brier"):
        with pytest.raises(ValueError, match="only 0 and 1"):
            paired_bootstrap(y, p, p, name, 100, 0.95, seed=0)


# (c) resolving statistics by name


def test_the_registry_resolves_names_and_passes_objects_through() -> None:
    assert set(STATISTICS) == {"auc", "log_loss", "brier"}
    for name, stat in STATISTICS.items():
        assert isinstance(stat, PairedStatistic) and stat.name == name
        assert statistic(name) is stat
    assert isinstance(STATISTICS["auc"], RocAuc) and STATISTICS["auc"].higher_is_better
    assert not STATISTICS["log_loss"].higher_is_better and not STATISTICS["brier"].higher_is_better
    assert statistic(ABSOLUTE_ERROR) is ABSOLUTE_ERROR


@pytest.mark.parametrize("bad", ["qini", "AUC", "", 42, None])
def test_unknown_statistics_raise_naming_the_known_ones(bad) -> None:
    with pytest.raises(ValueError, match="auc, brier, log_loss"):
        statistic(bad)
    y, p = np.array([0.0, 1.0, 0.0, 1.0]), np.array([0.2, 0.8, 0.3, 0.6])
    with pytest.raises(ValueError, match="auc, brier, log_loss"):
        paired_bootstrap(y, p, p, bad, 100, 0.95, seed=0)


# (d) invalid inputs are refused before anything is computed


def _never_called(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    raise AssertionError("per_row ran on inputs that should have been refused")


GUARDED = RowMean("guarded", _never_called, higher_is_better=False)


@pytest.mark.parametrize(
    ("labels", "challenger", "champion", "match"),
    [
        ([1.0, 2.0, 3.0], [1.0, 2.0], [1.0, 2.0, 3.0], "align"),
        ([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0], "align"),
        ([[1.0, 2.0]], [[1.0, 2.0]], [[1.0, 2.0]], "align"),
        ([], [], [], "empty"),
        ([1.0, np.nan, 3.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0], "labels must be finite"),
        ([1.0, 2.0, 3.0], [1.0, np.nan, 3.0], [1.0, 2.0, 3.0], "scores must be finite"),
        ([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 2.0, np.inf], "scores must be finite"),
    ],
    ids=["short_challenger", "long_champion", "two_d", "empty", "nan_label", "nan", "inf"],
)
def test_misaligned_or_non_finite_inputs_raise(labels, challenger, champion, match) -> None:
    with pytest.raises(ValueError, match=match):
        paired_bootstrap(labels, challenger, champion, GUARDED, 100, 0.95, seed=0)


def test_the_binary_statistics_refuse_nan_probabilities_and_a_single_class() -> None:
    y, p = np.array([0.0, 1.0, 0.0, 1.0]), np.array([0.2, 0.8, 0.3, 0.6])
    for name in ("auc", "log_loss", "brier"):
        with pytest.raises(ValueError, match="probabilities"):
            paired_bootstrap(y, p, np.array([0.2, np.nan, 0.3, 0.6]), name, 100, 0.95, seed=0)
        with pytest.raises(ValueError, match="probabilities"):
            paired_bootstrap(y, p * 2, p, name, 100, 0.95, seed=0)
        with pytest.raises(ValueError, match="only one class"):
            paired_bootstrap(np.zeros(4), p, p, name, 100, 0.95, seed=0)


@pytest.mark.parametrize(
    ("samples", "confidence", "match"),
    [(0, 0.95, "samples"), (2.5, 0.95, "samples"), (100, 1.0, "confidence"), (100, 0, "conf")],
)
def test_bad_samples_or_confidence_raise(samples, confidence, match) -> None:
    y = np.arange(5.0)
    with pytest.raises(ValueError, match=match):
        paired_bootstrap(y, y, y, GUARDED, samples, confidence, seed=0)


def test_per_row_values_that_do_not_fit_raise() -> None:
    y = np.arange(1.0, 6.0)
    wrong_shape = RowMean("wrong_shape", lambda labels, scores: labels[:-1], False)
    with pytest.raises(ValueError, match="expected one value per row"):
        paired_bootstrap(y, y, y, wrong_shape, 100, 0.95, seed=0)
    log_of_negative = RowMean("log", lambda labels, scores: np.log(scores - 3.0), False)
    with (
        np.errstate(invalid="ignore", divide="ignore"),
        pytest.raises(ValueError, match="NaN or infinite"),
    ):
        paired_bootstrap(y, y, y, log_of_negative, 100, 0.95, seed=0)


# (e) the built-in binary statistics agree with scikit-learn


def test_auc_point_difference_equals_sklearn(purchases) -> None:
    y, truth, noisy = purchases["labels"], purchases["truth"], purchases["noisy"]
    got = paired_bootstrap(y, truth, noisy, "auc", 200, 0.95, seed=6)
    expected = roc_auc_score(y, truth) - roc_auc_score(y, noisy)
    assert expected > 0.02
    assert got.difference == pytest.approx(expected, abs=1e-12)
    assert got.metric == "auc" and got.excludes_zero()
    # With ties (rounded scores) too, and through the object path.
    rounded = np.round(truth, 1)
    tied = paired_bootstrap(y, rounded, noisy, RocAuc(), 50, 0.95, seed=6)
    assert tied.difference == pytest.approx(
        roc_auc_score(y, rounded) - roc_auc_score(y, noisy), abs=1e-12
    )


@pytest.mark.parametrize(("name", "loss"), [("log_loss", log_loss), ("brier", brier_score_loss)])
def test_loss_point_differences_equal_sklearn_champion_minus_challenger(
    purchases, name, loss
) -> None:
    y, truth, noisy = purchases["labels"], purchases["truth"], purchases["noisy"]
    got = paired_bootstrap(y, truth, noisy, name, 200, 0.95, seed=6)
    expected = loss(y, noisy) - loss(y, truth)
    assert expected > 0
    assert got.difference == pytest.approx(expected, abs=1e-12)
    assert got.metric == name and got.excludes_zero()
