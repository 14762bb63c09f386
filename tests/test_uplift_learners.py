"""Multi-treatment meta-learners of promotion uplift (flashsale_ml.models.uplift.learners).

The synthetic sale: five standard-normal features, arms 0 (control) and 1..3 drawn uniformly
(a randomized design, 25% each), and a known heterogeneous uplift. On the logit scale, arm k
adds ``C[k] + A[k] * x0`` to a shared baseline ``-1 + 0.5 x1 + 0.3 x2``; the binary outcome
is a Bernoulli draw of the sigmoid (the true uplift is the difference of probabilities), the
continuous one adds N(0, 1) noise to the linear index (the true uplift is ``C[k] + A[k] x0``).
Slopes ``A = (1.0, 0.5, 0.25)``: every promotion is heterogeneous, arm 3 only weakly.
"""

from __future__ import annotations

import functools
import logging

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from scipy.special import expit, softmax
from scipy.stats import spearmanr

from flashsale_ml.models.uplift.learners import (
    DRLearner,
    FittedLogitXLearner,
    FittedXLearner,
    OverlapDiagnostics,
    SLearner,
    TLearner,
    UpliftConfig,
    XLearner,
    _fold_of_rows,
    _out_of_fold_pooled_outcomes,
    _train,
    _validate,
    _with_arm,
    aipw_pseudo_outcomes,
    effect_params,
    estimate_propensity,
    make_learner,
)

LEARNER_NAMES = ("s", "t", "x", "xl", "dr")
SLOPES = np.array([1.0, 0.5, 0.25])  # A[k]: heterogeneity of arm k + 1 along x0
SHIFTS = np.array([0.0, 0.3, 0.5])  # C[k]
ARMS = len(SLOPES)
TRAIN_ROWS, TEST_ROWS = 8_000, 2_000
SEEDS = (0, 1, 2)
# 8,000 rows split four ways: small trees and 100 rounds (the defaults, 15 leaves and 200
# rounds, are sized for a sale's millions of rows and overfit a 2,000-row arm). One thread:
# the fastest on a loaded 2-core runner, and the same models as any other thread count here.
FAST = UpliftConfig(num_leaves=7, n_estimators=100, num_threads=1)
# Spearman correlation every learner must exceed on every arm and seed, for 2,000 test rows.
# Under independence the Spearman correlation of 2,000 rows has a standard deviation of
# 1 / sqrt(1999) = 0.022, so 0.1 is 4.5 of them: a learner that learned nothing passes by
# chance with probability ~1e-5 per arm. It is deliberately not higher: arm 3's uplift spans
# only a few points of purchase probability, and the T- and DR-learners' weakest seed reaches
# 0.27 there (see test_meta_learners_against_the_s_learner for the full table).
RANK_BAR = 0.1


def randomized_sale(
    rows: int, seed: int, outcome: str, design: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Features, arms, outcomes and the true uplift ``(rows, 3)`` of the synthetic sale."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 5))
    shares = np.full(ARMS + 1, 1 / (ARMS + 1)) if design is None else design
    arm = rng.choice(ARMS + 1, size=rows, p=shares)
    baseline = -1.0 + 0.5 * x[:, 1] + 0.3 * x[:, 2]
    effect = SHIFTS + SLOPES * x[:, [0]]  # (rows, 3)
    index = np.column_stack([baseline, baseline[:, None] + effect])  # (rows, 4), control first
    taken = index[np.arange(rows), arm]
    if outcome == "binary":
        y = rng.binomial(1, expit(taken)).astype("float64")
        truth = expit(index[:, 1:]) - expit(index[:, [0]])
    else:
        y = taken + rng.normal(size=rows)
        truth = effect
    return x, arm, y, truth


@functools.cache
def spearman_table(outcome: str) -> dict[str, np.ndarray]:
    """Spearman correlation of predicted and true uplift on fresh test rows: per learner, a
    ``(seeds, arms)`` array. Computed once per outcome (about 2 s on two cores)."""
    table: dict[str, list[list[float]]] = {name: [] for name in LEARNER_NAMES}
    for seed in SEEDS:
        x, arm, y, _ = randomized_sale(TRAIN_ROWS, seed, outcome)
        x_test, _, _, truth = randomized_sale(TEST_ROWS, 1_000 + seed, outcome)
        config = FAST.model_copy(update={"seed": seed})
        for name in LEARNER_NAMES:
            uplift = make_learner(name, config).fit(x, arm, y).predict_uplift(x_test)
            table[name].append(
                [float(spearmanr(uplift[:, k], truth[:, k]).statistic) for k in range(ARMS)]
            )
    return {name: np.array(rows) for name, rows in table.items()}


@pytest.mark.parametrize("outcome", ["binary", "continuous"])
def test_every_learner_ranks_the_true_uplift_of_every_arm(outcome: str) -> None:
    table = spearman_table(outcome)
    for name, rho in table.items():
        assert rho.shape == (len(SEEDS), ARMS)
        assert (rho > RANK_BAR).all(), f"{name}-learner, {outcome}: Spearman {rho.round(3)}"


@pytest.mark.parametrize("outcome", ["binary", "continuous"])
def test_meta_learners_against_the_t_learner(outcome: str) -> None:
    """What holds on this design, averaged over three seeds (Spearman, arms 1 / 2 / 3):

    ============  ======================  ======================
    learner       binary                  continuous
    ============  ======================  ======================
    S             0.957 / 0.939 / 0.846   0.985 / 0.977 / 0.898
    T             0.876 / 0.717 / 0.411   0.965 / 0.894 / 0.651
    X             0.977 / 0.955 / 0.795   0.997 / 0.995 / 0.968
    XL            0.989 / 0.966 / 0.832   0.997 / 0.995 / 0.968
    DR            0.967 / 0.917 / 0.703   0.995 / 0.991 / 0.925
    ============  ======================  ======================

    Every learner that pools the arms (S), or regresses effects directly with additive
    effect models (X, XL, DR), beats the T-learner, whose uplift is the difference of two
    outcome models that each fit one arm's 2,000 rows, on every arm. (With the effect models
    at the outcome models' capacity, 7 leaves and no leaf-size floor, X and DR were at
    0.920 / 0.796 / 0.508 and 0.870 / 0.693 / 0.414 with binary outcomes.) The
    S-learner keeps the weakly heterogeneous arm 3 with binary outcomes: see
    test_the_default_learner_ranks_the_true_uplift_better_than_the_s_learner.
    """
    mean = {name: rho.mean(axis=0) for name, rho in spearman_table(outcome).items()}
    logging.getLogger(__name__).info("%s Spearman by arm: %s", outcome, mean)
    for name in ("s", "x", "xl", "dr"):
        assert (mean[name] > mean["t"]).all(), (name, mean)


@pytest.mark.parametrize("outcome", ["binary", "continuous"])
def test_the_default_learner_ranks_the_true_uplift_better_than_the_s_learner(
    outcome: str,
) -> None:
    """The small version of benchmarks/bench_uplift.py's target: the uplift kind's default
    flavor (``xl``) against the S-learner baseline, Spearman with the true uplift averaged
    over the three seeds and arms (binary 0.929 against 0.914; continuous, where ``xl`` is
    the X-learner, 0.987 against 0.953). On the arms with clear heterogeneity (1 and 2) it
    is ahead on each arm.

    Fails when the learner is broken: with the effect models at the outcome models'
    capacity (``effect_num_leaves=7``, ``effect_learning_rate=0.05``,
    ``effect_min_leaf_share=0``) it falls to 0.764 (binary) and 0.931 (continuous), and
    without the log-odds offset (``x``, binary) to 0.909.
    """
    from flashsale_ml.models.uplift.kind import KIND

    table = spearman_table(outcome)
    chosen, baseline = table[KIND.default_flavor], table["s"]
    assert chosen.mean() > baseline.mean(), (chosen.mean(axis=0), baseline.mean(axis=0))
    assert (chosen.mean(axis=0)[:2] > baseline.mean(axis=0)[:2]).all(), (
        chosen.mean(axis=0),
        baseline.mean(axis=0),
    )


def test_the_logit_x_learner_is_the_x_learner_for_a_continuous_outcome() -> None:
    x, arm, y, _ = randomized_sale(2_000, 4, "continuous")
    config = FAST.model_copy(update={"n_estimators": 30})
    x_learner = make_learner("x", config).fit(x, arm, y)
    logit_x = make_learner("xl", config).fit(x, arm, y)
    assert (logit_x.learner, logit_x.outcome) == ("xl", "continuous")
    np.testing.assert_array_equal(logit_x.predict_uplift(x), x_learner.predict_uplift(x))


def test_the_x_learners_outcome_models_are_cross_fitted() -> None:
    """Each fold's rows get the outcome predictions of the pooled model fitted on the other
    folds, never of one that saw them."""
    x, arm, y, _ = randomized_sale(2_000, 6, "binary")
    config = FAST.model_copy(update={"n_estimators": 20, "folds": 3})
    data = _validate(x, arm, y, None, None, "auto")
    fold = _fold_of_rows(data.arm, config.folds, config.seed)
    mu, models = _out_of_fold_pooled_outcomes(config, data, fold)
    assert mu.shape == (len(y), ARMS + 1) and len(models) == config.folds
    for f, model in enumerate(models):
        rows = fold == f
        for code in range(ARMS + 1):
            fitted_elsewhere = model.predict(_with_arm(x[rows], code, ARMS))
            np.testing.assert_allclose(mu[rows, code], fitted_elsewhere)
            other = models[(f + 1) % config.folds].predict(_with_arm(x[rows], code, ARMS))
            assert not np.allclose(mu[rows, code], other)


def test_effect_models_get_the_effect_parameters() -> None:
    config = UpliftConfig(min_data_in_leaf=50, effect_min_leaf_share=0.05)
    effect = effect_params(config, 10_000)
    assert (effect.num_leaves, effect.learning_rate, effect.n_estimators) == (2, 0.03, 100)
    assert effect.min_data_in_leaf == 500
    # The outcome models' leaf size is the floor.
    assert effect_params(config, 400).min_data_in_leaf == 50


def test_outcome_early_stopping_is_off_by_default_and_stops_on_the_training_rows() -> None:
    """``outcome_early_stopping_rounds`` (off by default: fixed rounds) stops an outcome model
    on a share of its own rows; the effect models never stop early."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4_000, 5))
    y = rng.binomial(1, 0.2, size=4_000).astype("float64")  # pure noise: nothing to learn
    assert UpliftConfig().outcome_early_stopping_rounds == 0
    assert _train(FAST, x, y, "binary").num_trees() == FAST.n_estimators
    stopping = FAST.model_copy(update={"outcome_early_stopping_rounds": 5})
    stopped = _train(stopping, x, y, "binary")
    assert stopped.num_trees() < FAST.n_estimators and stopped.best_iteration >= 1
    assert effect_params(stopping, len(y)).outcome_early_stopping_rounds == 0


@pytest.mark.parametrize("name", LEARNER_NAMES)
def test_predictions_are_deterministic_for_a_seed_and_shaped_rows_by_arms(name: str) -> None:
    x, arm, y, _ = randomized_sale(3_000, 7, "binary")
    config = FAST.model_copy(update={"n_estimators": 40, "seed": 11})
    first = make_learner(name, config).fit(x, arm, y)
    second = make_learner(name, config).fit(x, arm, y)
    uplift = first.predict_uplift(x[:500])
    assert uplift.shape == (500, ARMS)
    assert uplift.dtype == np.float64
    assert np.isfinite(uplift).all()
    np.testing.assert_array_equal(uplift, second.predict_uplift(x[:500]))
    # Binary outcomes: an uplift is a difference of two probabilities.
    assert first.outcome == "binary"
    if name in ("s", "t", "xl"):
        assert (np.abs(uplift) <= 1.0).all()
    assert (first.learner, first.n_arms, first.n_features) == (name, ARMS, 5)
    # Two threads build the same models (deterministic=True, force_row_wise=True).
    two_threads = make_learner(name, config.model_copy(update={"num_threads": 2})).fit(x, arm, y)
    np.testing.assert_allclose(two_threads.predict_uplift(x[:500]), uplift, atol=1e-12)


def test_the_dr_learners_folds_follow_the_seed() -> None:
    x, arm, y, _ = randomized_sale(3_000, 7, "continuous")
    config = FAST.model_copy(update={"n_estimators": 40})
    one = DRLearner(config).fit(x, arm, y).predict_uplift(x[:200])
    other = DRLearner(config.model_copy(update={"seed": 1})).fit(x, arm, y).predict_uplift(x[:200])
    assert not np.array_equal(one, other)


def test_frames_and_arrow_tables_predict_like_arrays() -> None:
    x, arm, y, _ = randomized_sale(2_000, 3, "continuous")
    names = [f"f{i}" for i in range(x.shape[1])]
    frame = pd.DataFrame(x, columns=names)
    config = FAST.model_copy(update={"n_estimators": 30})
    from_array = TLearner(config).fit(x, arm, y)
    from_frame = TLearner(config).fit(frame, arm, y)
    from_table = TLearner(config).fit(pa.Table.from_pandas(frame), arm, y)
    expected = from_array.predict_uplift(x)
    assert from_frame.feature_names == tuple(names)
    np.testing.assert_array_equal(from_frame.predict_uplift(frame), expected)
    # Columns are matched by name, in any order.
    np.testing.assert_array_equal(from_frame.predict_uplift(frame[names[::-1]]), expected)
    np.testing.assert_array_equal(from_table.predict_uplift(pa.Table.from_pandas(frame)), expected)
    assert from_array.outcome == "continuous"


# ---------------------------------------------------------------------------------------------
# Validation


@pytest.fixture(scope="module")
def small_sale() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, arm, y, _ = randomized_sale(400, 5, "binary")
    return x, arm, y


TINY = UpliftConfig(num_leaves=4, n_estimators=5, num_threads=1)


@pytest.mark.parametrize("name", LEARNER_NAMES)
@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda x, a, y: (x[:-1], a, y), r"arm must be 1-d with one code per row of x \(399\)"),
        (lambda x, a, y: (x, a[:-1], y), r"arm must be 1-d with one code per row of x \(400\)"),
        (lambda x, a, y: (x, a, y[:-1]), r"y must be 1-d with one outcome per row of x \(400\)"),
        (lambda x, a, y: (x, np.where(a == 2, -1, a), y), r"arm codes outside 0\.\.3.*\[-1\]"),
        (lambda x, a, y: (x, np.where(a == 2, 0, a), y), r"arm\(s\) \[2\] of 0\.\.3 have no rows"),
        (lambda x, a, y: (x, np.where(a == 0, 1, a), y), r"arm\(s\) \[0\] of 0\.\.3 have no rows"),
        (lambda x, a, y: (x, a + 0.5, y), r"arm must hold integer codes"),
        (lambda x, a, y: (x, a, np.where(a == 1, np.nan, y)), r"y holds non-finite values"),
        (lambda x, a, y: (x, a, np.where(a == 1, np.inf, y)), r"y holds non-finite values"),
        (lambda x, a, y: (np.where(x > 2, np.inf, x), a, y), r"x holds infinite values"),
        (lambda x, a, y: (x[:, 0], a, y), r"x must be 2-d"),
    ],
    ids=[
        "x-shorter",
        "arm-shorter",
        "y-shorter",
        "negative-arm",
        "empty-arm",
        "no-control",
        "fractional-arm",
        "nan-y",
        "infinite-y",
        "infinite-x",
        "1d-x",
    ],
)
def test_invalid_inputs_raise_value_errors_naming_the_problem(
    name: str, change, message: str, small_sale
) -> None:
    x, arm, y = change(*small_sale)
    with pytest.raises(ValueError, match=message):
        make_learner(name, TINY).fit(x, arm, y)


def test_arm_codes_beyond_the_declared_arms_are_rejected(small_sale) -> None:
    x, arm, y = small_sale
    with pytest.raises(ValueError, match=r"arm codes outside 0\.\.2 \(0 = control\): \[3\]"):
        TLearner(TINY).fit(x, arm, y, n_arms=2)
    design = np.full((len(arm), 3), 1 / 3)  # a propensity matrix declares K = 2
    with pytest.raises(ValueError, match=r"arm codes outside 0\.\.2"):
        DRLearner(TINY).fit(x, arm, y, design)
    # An arm declared but never assigned has no rows.
    with pytest.raises(ValueError, match=r"arm\(s\) \[4\] of 0\.\.4 have no rows"):
        SLearner(TINY).fit(x, arm, y, n_arms=4)


def test_invalid_propensities_and_outcomes_are_rejected(small_sale) -> None:
    x, arm, y = small_sale
    n = len(arm)
    design = np.full((n, ARMS + 1), 0.25)
    with pytest.raises(ValueError, match=r"propensity must be an \(n, K \+ 1\) matrix"):
        DRLearner(TINY).fit(x, arm, y, design[:-1])
    with pytest.raises(ValueError, match=r"each row of propensity must sum to 1"):
        DRLearner(TINY).fit(x, arm, y, design * 0.9)
    with pytest.raises(ValueError, match=r"propensity must hold probabilities"):
        DRLearner(TINY).fit(x, arm, y, np.where(design == 0.25, np.nan, design))
    zero_for_taken = design.copy()
    zero_for_taken[np.arange(n), arm] = 0.0
    zero_for_taken[np.arange(n), (arm + 1) % (ARMS + 1)] = 0.5
    with pytest.raises(ValueError, match=r"propensity is 0 for the arm a row received"):
        XLearner(TINY).fit(x, arm, y, zero_for_taken)
    binary = TINY.model_copy(update={"outcome": "binary"})
    with pytest.raises(ValueError, match=r"outcome is 'binary' but y holds values other than"):
        TLearner(binary).fit(x, arm, y * 2.5)
    with pytest.raises(ValueError, match=r"column\(s\) \['segment'\] are not numeric"):
        TLearner(TINY).fit(pd.DataFrame({"a": x[:, 0], "segment": "vip"}), arm, y)


def test_prediction_inputs_and_names_are_checked(small_sale) -> None:
    x, arm, y = small_sale
    fitted = TLearner(TINY).fit(pd.DataFrame(x, columns=list("abcde")), arm, y)
    with pytest.raises(ValueError, match=r"x lacks the fitted feature column\(s\) \['e'\]"):
        fitted.predict_uplift(pd.DataFrame(x[:, :4], columns=list("abcd")))
    with pytest.raises(ValueError, match=r"x has 4 feature columns, the learner was fitted on 5"):
        fitted.predict_uplift(x[:, :4])
    with pytest.raises(ValueError, match=r"unknown learner 'r'; known: s, t, x, xl, dr"):
        make_learner("r", TINY)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"propensity_clip must satisfy 0 < low < high < 1"):
        UpliftConfig(propensity_clip=(0.5, 0.2))


@pytest.mark.parametrize("name", ["x", "xl", "dr"])
def test_an_arm_smaller_than_the_folds_is_rejected_by_the_cross_fitted_learners(
    small_sale, name: str
) -> None:
    x, arm, y = small_sale
    arm = np.where(arm == 3, 2, arm)
    arm[0] = 3  # one row in arm 3, fewer than the two folds
    with pytest.raises(ValueError, match=r"arm\(s\) \[3\] have fewer rows than the 2"):
        make_learner(name, TINY).fit(x, arm, y)
    # The learners without cross-fitting accept it.
    assert TLearner(TINY).fit(x, arm, y).n_arms == 3


# ---------------------------------------------------------------------------------------------
# Propensities and overlap


def test_estimated_propensities_recover_a_randomized_design() -> None:
    design = np.array([0.4, 0.3, 0.2, 0.1])
    x, arm, y, _ = randomized_sale(8_000, 21, "binary", design)
    estimate = estimate_propensity(x, arm, FAST)
    assert estimate.raw.shape == (8_000, ARMS + 1)
    np.testing.assert_allclose(estimate.raw.sum(axis=1), 1.0, atol=1e-9)
    # The features carry no information on the arm: early stopping keeps the estimates at
    # the assignment shares of the training folds (within ±0.02 of the design's).
    assert np.abs(estimate.raw - design).max() < 0.03, np.abs(estimate.raw - design).max()
    assert estimate.overlap == OverlapDiagnostics(
        estimated=True,
        band=(0.05, 0.95),
        share_outside=0.0,
        share_outside_by_arm=(0.0, 0.0, 0.0, 0.0),
        min_by_arm=estimate.overlap.min_by_arm,
        max_by_arm=estimate.overlap.max_by_arm,
        clip=(0.05, 0.95),
        share_clipped=0.0,
    )
    np.testing.assert_array_equal(estimate.clipped, estimate.raw)
    # The learners that estimate propensities report the same clean overlap.
    for learner in (XLearner(FAST), make_learner("xl", FAST), DRLearner(FAST)):
        overlap = learner.fit(x, arm, y).overlap
        assert overlap is not None and overlap.estimated
        assert overlap.share_outside == 0.0 and overlap.share_clipped == 0.0
    # S and T use no propensities; given ones are the design, reported but never clipped.
    assert TLearner(FAST).fit(x, arm, y).overlap is None
    given = DRLearner(FAST).fit(x, arm, y, np.tile(design, (len(arm), 1))).overlap
    assert given is not None and not given.estimated and given.clip is None
    assert given.share_outside == 0.0


def confounded_sale(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Targeted assignment: arm 1 goes to high x0, arm 2 to low x0, arm 3 to high x1."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 5))
    truth = softmax(np.column_stack([np.zeros(rows), 3 * x[:, 0], -3 * x[:, 0], 2 * x[:, 1]]), 1)
    arm = (rng.random(rows)[:, None] > truth.cumsum(axis=1)).sum(axis=1)
    y = rng.binomial(1, expit(-1 + 0.5 * x[:, 1] + 0.5 * (arm > 0) * x[:, 0])).astype(float)
    return x, arm, y, truth


def test_targeted_assignment_shows_in_the_overlap_diagnostics_and_is_clipped() -> None:
    x, arm, y, truth = confounded_sale(8_000, 4)
    true_outside = float(((truth < 0.05) | (truth > 0.95)).any(axis=1).mean())
    estimate = estimate_propensity(x, arm, FAST)
    overlap = estimate.overlap
    assert true_outside > 0.5  # the design itself lacks overlap on most rows
    assert overlap.share_outside > 0.3, overlap
    assert overlap.clip == (0.05, 0.95)
    assert overlap.share_clipped == overlap.share_outside
    assert min(overlap.min_by_arm) < 0.05
    assert estimate.clipped.min() >= 0.05 and estimate.clipped.max() <= 0.95
    assert (estimate.clipped != estimate.raw).any(axis=1).mean() == overlap.share_clipped
    # The estimates follow the targeting: arm 1's propensity rises with x0, arm 2's falls.
    assert spearmanr(estimate.raw[:, 1], x[:, 0]).statistic > 0.8
    assert spearmanr(estimate.raw[:, 2], x[:, 0]).statistic < -0.8
    # A fitted DR-learner reports it (its cross-fitted propensities are the same estimates).
    dr = DRLearner(FAST).fit(x, arm, y)
    assert dr.overlap == overlap
    # The X-learner's weights g_k = e_k / (e_0 + e_k) come from the clipped model.
    x_learner = XLearner(FAST).fit(x, arm, y)
    assert isinstance(x_learner, FittedXLearner)
    assert x_learner.overlap is not None and x_learner.overlap.share_outside > 0.3
    g = x_learner.weights(x)
    assert g.shape == (len(x), ARMS) and (g > 0).all() and (g < 1).all()


def test_given_propensities_weight_the_x_learner_by_the_design_shares() -> None:
    design = np.array([0.4, 0.3, 0.2, 0.1])
    x, arm, y, _ = randomized_sale(2_000, 8, "continuous", design)
    config = FAST.model_copy(update={"n_estimators": 30})
    fitted = XLearner(config).fit(x, arm, y, np.tile(design, (len(arm), 1)))
    assert isinstance(fitted, FittedXLearner) and fitted.propensity_model is None
    expected = design[1:] / (design[0] + design[1:])
    np.testing.assert_allclose(fitted.weights(x[:3]), np.tile(expected, (3, 1)))


# ---------------------------------------------------------------------------------------------
# The second stages' formulas


def test_aipw_pseudo_outcomes_by_hand() -> None:
    y = np.array([1.0, 0.0, 1.0, 3.0])
    arm = np.array([0, 1, 2, 1])
    mu = np.array([[0.2, 0.5, 0.4], [0.3, 0.1, 0.6], [0.5, 0.5, 0.9], [1.0, 2.0, 0.0]])
    e = np.array([[0.5, 0.25, 0.25], [0.4, 0.4, 0.2], [0.5, 0.25, 0.25], [0.2, 0.5, 0.3]])
    expected = np.array(
        [
            # control row: mu_k - mu_0 - (y - mu_0) / e_0
            [0.5 - 0.2 - 0.8 / 0.5, 0.4 - 0.2 - 0.8 / 0.5],
            # arm-1 row: arm 1 gains (y - mu_1) / e_1, arm 2 none
            [0.1 - 0.3 + (0.0 - 0.1) / 0.4, 0.6 - 0.3],
            # arm-2 row
            [0.5 - 0.5, 0.9 - 0.5 + (1.0 - 0.9) / 0.25],
            [2.0 - 1.0 + (3.0 - 2.0) / 0.5, 0.0 - 1.0],
        ]
    )
    np.testing.assert_allclose(aipw_pseudo_outcomes(y, arm, mu, e), expected)


def test_aipw_pseudo_outcomes_are_doubly_robust() -> None:
    """The mean pseudo-outcome of arm k estimates its average uplift when the outcome models
    are wrong (all zero) but the propensities right, or the other way round, and not when
    both are wrong: the test has the power to see a wrong score."""
    design = np.array([0.4, 0.3, 0.2, 0.1])
    x, arm, y, truth = randomized_sale(200_000, 31, "continuous", design)
    ate = truth.mean(axis=0)
    baseline = -1.0 + 0.5 * x[:, 1] + 0.3 * x[:, 2]
    exact_mu = np.column_stack([baseline, baseline[:, None] + SHIFTS + SLOPES * x[:, [0]]])
    wrong_mu = np.zeros_like(exact_mu)
    exact_e = np.tile(design, (len(arm), 1))
    wrong_e = np.full_like(exact_e, 0.25)
    for mu, e, right in [
        (wrong_mu, exact_e, True),
        (exact_mu, wrong_e, True),
        (wrong_mu, wrong_e, False),
    ]:
        pseudo = aipw_pseudo_outcomes(y, arm, mu, e)
        error = pseudo.mean(axis=0) - ate
        tolerance = 4 * pseudo.std(axis=0) / np.sqrt(len(y))
        assert (np.abs(error) < tolerance).all() == right, (right, error, tolerance)


class Constant:
    """A stand-in booster that predicts the same value (a vector: one per class) everywhere."""

    def __init__(self, value: float | list[float]) -> None:
        self.value = np.asarray(value, dtype="float64")

    def predict(self, x: np.ndarray, **_: object) -> np.ndarray:
        return np.tile(self.value, (len(x), 1)).squeeze(axis=1 if self.value.ndim == 0 else ())


def test_x_learner_weights_the_control_side_effect_by_the_propensity() -> None:
    """``tau_k = g_k tau_0k + (1 - g_k) tau_1k`` with ``g_k = e_k / (e_0 + e_k)`` (Künzel et
    al. 2019): where arm k is rare, the effect model fitted on its rows (imputed with the
    control model, fitted on many rows) dominates."""
    shares = np.array([0.7, 0.1, 0.1, 0.1])
    common = {
        "learner": "x",
        "config": TINY,
        "n_arms": 3,
        "n_features": 2,
        "feature_names": None,
        "outcome": "continuous",
        "overlap": None,
        "treated_effects": (Constant(1.0), Constant(2.0), Constant(3.0)),
        "control_effects": (Constant(-1.0), Constant(-2.0), Constant(-3.0)),
    }
    by_design = FittedXLearner(**common, propensity_model=None, assignment_shares=shares)
    g = 0.1 / 0.8
    x = np.zeros((4, 2))
    np.testing.assert_allclose(by_design.weights(x), np.full((4, 3), g))
    np.testing.assert_allclose(
        by_design.predict_uplift(x), np.tile([1.0, 2.0, 3.0], (4, 1)) * (1 - 2 * g)
    )
    # An estimated propensity is clipped to [0.05, 0.95] before it weighs: e_1 = 0.01 -> 0.05.
    estimated = FittedXLearner(
        **common, propensity_model=Constant([0.5, 0.01, 0.29, 0.2]), assignment_shares=None
    )
    np.testing.assert_allclose(estimated.weights(x)[0], [0.05 / 0.55, 0.29 / 0.79, 0.2 / 0.7])


def test_logit_x_learner_combines_log_odds_ratios_on_the_control_baseline() -> None:
    """``uplift_k = sigmoid(b + delta_k) - sigmoid(b)`` with ``b`` the log-odds of the fold
    models' mean control prediction and ``delta_k = (1 - g_k) d_1k - g_k d_0k`` from the raw
    scores of the treated-side (``d_1k``) and control-side (``d_0k``, the opposite sign)
    effect models."""
    shares = np.array([0.7, 0.1, 0.1, 0.1])
    fitted = FittedLogitXLearner(
        learner="xl",
        config=TINY,
        n_arms=3,
        n_features=2,
        feature_names=None,
        outcome="binary",
        overlap=None,
        treated_effects=(Constant(0.5), Constant(1.0), Constant(-0.4)),
        control_effects=(Constant(-0.3), Constant(-1.0), Constant(0.2)),
        propensity_model=None,
        assignment_shares=shares,
        outcome_models=(Constant(0.1), Constant(0.3)),
    )
    g = 0.1 / 0.8
    b = np.log(0.2 / 0.8)  # the folds' mean control probability, 0.2
    delta = (1 - g) * np.array([0.5, 1.0, -0.4]) - g * np.array([-0.3, -1.0, 0.2])
    expected = expit(b + delta) - 0.2
    np.testing.assert_allclose(fitted.predict_uplift(np.zeros((2, 2))), np.tile(expected, (2, 1)))


# ---------------------------------------------------------------------------------------------
# Cross-check against causalml


@pytest.mark.parametrize("outcome", ["binary", "continuous"])
def test_t_learner_matches_causalml(outcome: str) -> None:
    """causalml's BaseTClassifier / BaseTRegressor with LightGBM's scikit-learn estimators on
    the same parameters and seed. Skipped where causalml is not installed (it is not a
    dependency; see the module's report for the environment it was run in)."""
    meta = pytest.importorskip("causalml.inference.meta")
    import lightgbm as lgb

    x, arm, y, _ = randomized_sale(4_000, 13, outcome)
    x_test, _, _, _ = randomized_sale(1_000, 14, outcome)
    config = FAST
    estimator = {"binary": lgb.LGBMClassifier, "continuous": lgb.LGBMRegressor}[outcome](
        n_estimators=config.n_estimators,
        num_leaves=config.num_leaves,
        learning_rate=config.learning_rate,
        min_child_samples=config.min_data_in_leaf,
        colsample_bytree=config.feature_fraction,
        reg_lambda=config.lambda_l2,
        random_state=config.seed,
        n_jobs=config.num_threads,
        deterministic=True,
        force_row_wise=True,
        verbosity=-1,
    )
    base = {"binary": meta.BaseTClassifier, "continuous": meta.BaseTRegressor}[outcome]
    theirs = base(learner=estimator, control_name=0)
    theirs.fit(x, treatment=arm, y=y)  # keywords: causalml 1.0 reorders the positionals
    expected = np.asarray(theirs.predict(x_test))
    ours = TLearner(config).fit(x, arm, y).predict_uplift(x_test)
    assert expected.shape == ours.shape == (len(x_test), ARMS)
    for k in range(ARMS):
        assert np.corrcoef(ours[:, k], expected[:, k])[0, 1] > 0.99
    np.testing.assert_allclose(ours, expected, atol=1e-9)
