"""Multi-treatment meta-learners of promotion uplift with LightGBM base learners.

A flash sale assigns each user one arm: ``0`` is control (no promotion), ``1..K`` are the
promotions. The learners here estimate, for every promotion ``k``, the conditional average
treatment effect

    ``uplift_k(x) = E[y | x, arm k] - E[y | x, control]``

where ``y`` is binary (a purchase: the uplift is a difference of probabilities) or continuous
(margin). Pure functions of arrays: features, arms, outcomes and optionally propensities in,
a :class:`FittedLearner` out, whose :meth:`~FittedLearner.predict_uplift` returns an
``(n, K)`` matrix. No MLflow, no I/O.

The *effect models* of the X-, XL- and DR-learners (second stages) are additive models of
stumps with large leaves (``UpliftConfig.effect_*``): their targets are mostly noise.

* ``s`` — :class:`SLearner`: one outcome model on the features plus a one-hot arm.
* ``t`` — :class:`TLearner`: one outcome model per arm.
* ``x`` — :class:`XLearner`: cross-fitted outcome models, imputed effects, one effect model
  per arm and side, combined with propensity weights (Künzel et al. 2019).
* ``xl`` — :class:`LogitXLearner`: the X-learner with its imputation on the log-odds scale of
  a purchase (effect models boosted from the other arm's out-of-fold log-odds); the uplift
  kind's default.
* ``dr`` — :class:`DRLearner`: cross-fitted outcome models and propensities, AIPW
  pseudo-outcomes per arm against control, regressed on the features (Kennedy 2023).

The X and DR learners use the propensity ``e_a(x) = P(arm a | x)``. In a randomized sale it is
the design (pass it as an ``n × (K+1)`` matrix); without it a LightGBM multiclass classifier
estimates it, clipped to ``UpliftConfig.propensity_clip``, and the fit reports the overlap
(:class:`OverlapDiagnostics`).

References:
    Künzel, Sekhon, Bickel & Yu (2019), "Metalearners for estimating heterogeneous treatment
    effects using machine learning", PNAS 116(10), 4156-4165 — the S-, T- and X-learners.
    Kennedy (2023), "Towards optimal doubly robust estimation of heterogeneous causal
    effects", Electronic Journal of Statistics 17(2), 3008-3049 (arXiv:2004.14497, 2020) —
    the DR-learner. Chernozhukov et al. (2018), "Double/debiased machine learning for
    treatment and structural parameters", The Econometrics Journal 21(1), C1-C68 —
    cross-fitting. Cattaneo (2010), "Efficient semiparametric estimation of multi-valued
    treatment effects under ignorability", Journal of Econometrics 155(2), 138-154 — the
    AIPW score of a multi-valued treatment.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, Field, field_validator

from flashsale_ml.models.propensity.lgbm import lightgbm_log, lightgbm_logging

if TYPE_CHECKING:
    import lightgbm as lgb

log = logging.getLogger(__name__)

LearnerName = Literal["s", "t", "x", "xl", "dr"]
OutcomeKind = Literal["binary", "continuous"]
Features = np.ndarray | pd.DataFrame | pa.Table | pa.RecordBatch
# Share of the propensity model's training rows held out for its early stopping.
PROPENSITY_VALIDATION_SHARE = 0.2
# Outcome probabilities are clipped to [LOGIT_CLIP, 1 - LOGIT_CLIP] before taking log-odds.
LOGIT_CLIP = 1e-6


class UpliftConfig(BaseModel):
    """LightGBM parameters of every base learner, the seed and the nuisance settings.

    The outcome models (the S- and T-learners' models, the X- and DR-learners' first stage)
    and the propensity model train with ``num_leaves``, ``learning_rate``, ``n_estimators``
    and ``min_data_in_leaf``, for a fixed number of rounds by default, so the meta-learners
    compare outcome models of the same capacity. ``outcome_early_stopping_rounds`` stops the
    outcome models instead on a share of their own training rows; it is off: measured on the
    simulator and on Hillstrom (docs/uplift.md, "Stabilizing the default") it lowered the
    default flavor's simulator Qini and did not raise its Hillstrom uplift@30 %.

    The *effect models* (the X-learner's regressions of imputed effects, the DR-learner's
    regression of AIPW pseudo-outcomes) train with the ``effect_*`` parameters instead. Their
    targets are an outcome's noise plus an uplift a hundred times smaller in variance (a
    purchase's Bernoulli variance ~0.1 against uplifts of a few points), so they get additive
    models of stumps with leaves of at least ``effect_min_leaf_share`` of their rows: with
    the outcome models' 15 leaves the X- and DR-learners ranked the simulator's true uplift
    far below the S-learner (Spearman 0.05 / 0.17 / 0.36 against 0.23 / 0.28 / 0.61;
    ``benchmarks/bench_uplift.py``, docs/uplift.md).
    """

    model_config = {"frozen": True}

    num_leaves: int = Field(default=15, ge=2)
    learning_rate: float = Field(default=0.05, gt=0)
    # Fixed boosting rounds of each base model (no early stopping: see above).
    n_estimators: int = Field(default=200, ge=1)
    min_data_in_leaf: int = Field(default=50, ge=1)
    # Early stopping of the outcome models (0: off, fixed n_estimators rounds): patience in
    # rounds, on the loss of a seeded outcome_validation_share of each model's own training
    # rows, which it is then not fitted on.
    outcome_early_stopping_rounds: int = Field(default=0, ge=0)
    outcome_validation_share: float = Field(default=0.2, gt=0, lt=0.5)
    # The effect models (see above): 2 leaves = stumps, an additive effect model.
    effect_num_leaves: int = Field(default=2, ge=2)
    effect_learning_rate: float = Field(default=0.03, gt=0)
    effect_n_estimators: int = Field(default=100, ge=1)
    # An effect model's min_data_in_leaf: this share of the rows it is fitted on (and at least
    # min_data_in_leaf), so a split averages the noise of thousands of rows on a sale's data
    # and of a hundred on a test's 2,000.
    effect_min_leaf_share: float = Field(default=0.05, ge=0, lt=0.5)
    feature_fraction: float = Field(default=1.0, gt=0, le=1)
    lambda_l2: float = Field(default=1.0, ge=0)
    num_threads: int = Field(default=0, ge=0, description="0 = LightGBM's default")
    seed: int = 0
    # Folds of the DR-learner's cross-fitting (and of estimate_propensity's out-of-fold
    # estimates): each fold's nuisances are fitted on the other folds.
    folds: int = Field(default=2, ge=2)
    # Estimated propensities are clipped to this band, and the overlap diagnostics count the
    # rows with any arm's propensity outside it.
    propensity_clip: tuple[float, float] = (0.05, 0.95)
    # Patience of the propensity model's early stopping (see _multiclass).
    propensity_early_stopping_rounds: int = Field(default=20, ge=1)
    # "auto": binary when every outcome is 0 or 1, otherwise continuous.
    outcome: Literal["auto", "binary", "continuous"] = "auto"

    @field_validator("propensity_clip")
    @classmethod
    def _clip_band(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not 0.0 < low < high < 1.0:
            raise ValueError(f"propensity_clip must satisfy 0 < low < high < 1, got {value}")
        return value


@dataclass(frozen=True)
class OverlapDiagnostics:
    """How well the arms overlap in the propensities a learner used.

    Attributes:
        estimated: the propensities were estimated (LightGBM multiclass), not given.
        band: the band ``(low, high)`` checked (``UpliftConfig.propensity_clip``).
        share_outside: share of rows with any arm's propensity outside ``band``, before
            clipping.
        share_outside_by_arm: the same per arm, control first (``K + 1`` values).
        min_by_arm: each arm's smallest propensity, before clipping.
        max_by_arm: each arm's largest propensity, before clipping.
        clip: the bounds every arm's propensity was clipped to, or ``None`` when none was
            applied (given propensities are the design and are used as they are).
        share_clipped: share of rows where clipping changed any arm's propensity.
    """

    estimated: bool
    band: tuple[float, float]
    share_outside: float
    share_outside_by_arm: tuple[float, ...]
    min_by_arm: tuple[float, ...]
    max_by_arm: tuple[float, ...]
    clip: tuple[float, float] | None
    share_clipped: float


@dataclass(frozen=True)
class PropensityEstimate:
    """Out-of-fold propensities of :func:`estimate_propensity`.

    Attributes:
        raw: ``(n, K + 1)`` estimated ``P(arm a | x)`` of each row from the model fitted on
            the other folds (rows sum to 1).
        clipped: ``raw`` clipped to ``UpliftConfig.propensity_clip`` (not renormalised: the
            AIPW score and the X-learner weight use each arm's propensity on its own).
        overlap: the overlap diagnostics of ``raw``.
    """

    raw: np.ndarray
    clipped: np.ndarray
    overlap: OverlapDiagnostics


# ---------------------------------------------------------------------------------------------
# Validation


@dataclass(frozen=True)
class _Matrix:
    values: np.ndarray  # float64, 2-d; NaN = missing
    names: tuple[str, ...] | None  # column names of a frame or table, None for an array


@dataclass(frozen=True)
class _Data:
    x: np.ndarray
    names: tuple[str, ...] | None
    arm: np.ndarray  # int64 codes 0..K
    y: np.ndarray  # float64
    n_arms: int  # K, the promotion arms (control excluded)
    outcome: OutcomeKind
    propensity: np.ndarray | None  # (n, K + 1) given, or None


def _feature_matrix(x: Features, what: str = "x") -> _Matrix:
    """Numeric features as a float64 matrix (NaN is a missing value LightGBM handles).

    Raises:
        ValueError: not 2-d, no rows or columns, a non-numeric column, or an infinite value.
    """
    names: tuple[str, ...] | None = None
    if isinstance(x, pd.DataFrame):
        bad = [
            str(c)
            for c in x.columns
            if not (pd.api.types.is_numeric_dtype(x[c]) or pd.api.types.is_bool_dtype(x[c]))
        ]
        if bad:
            raise ValueError(f"{what}: column(s) {bad} are not numeric (encode them first)")
        names = tuple(str(c) for c in x.columns)
        values = x.to_numpy(dtype="float64", na_value=np.nan)
    elif isinstance(x, pa.Table | pa.RecordBatch):
        names = tuple(x.schema.names)
        bad = [
            field.name
            for field in x.schema
            if not (
                pa.types.is_integer(field.type)
                or pa.types.is_floating(field.type)
                or pa.types.is_boolean(field.type)
                or pa.types.is_decimal(field.type)
            )
        ]
        if bad:
            raise ValueError(f"{what}: column(s) {bad} are not numeric (encode them first)")
        columns = [
            x.column(i).cast(pa.float64()).to_numpy(zero_copy_only=False)
            for i in range(x.num_columns)
        ]
        values = np.column_stack(columns) if columns else np.empty((x.num_rows, 0))
    else:
        values = np.asarray(x)
        if values.dtype.kind not in "biuf":
            raise ValueError(f"{what} must be numeric, got dtype {values.dtype}")
        values = values.astype("float64", copy=False)
    if values.ndim != 2:
        raise ValueError(f"{what} must be 2-d (rows × features), got shape {values.shape}")
    if values.shape[0] == 0 or values.shape[1] == 0:
        raise ValueError(f"{what} must have rows and features, got shape {values.shape}")
    if np.isinf(values).any():
        raise ValueError(f"{what} holds infinite values (NaN is allowed as missing)")
    return _Matrix(values, names)


def _validate(
    x: Features,
    arm: np.ndarray,
    y: np.ndarray,
    propensity: np.ndarray | None,
    n_arms: int | None,
    outcome: Literal["auto", "binary", "continuous"],
) -> _Data:
    """Check and convert the inputs of a fit.

    Raises:
        ValueError: see :meth:`Learner.fit`.
    """
    matrix = _feature_matrix(x)
    n = matrix.values.shape[0]
    arm_raw = np.asarray(arm)
    y_values = np.asarray(y)
    if arm_raw.ndim != 1 or len(arm_raw) != n:
        raise ValueError(f"arm must be 1-d with one code per row of x ({n}), got {arm_raw.shape}")
    if y_values.ndim != 1 or len(y_values) != n:
        raise ValueError(f"y must be 1-d with one outcome per row of x ({n}), got {y_values.shape}")
    if arm_raw.dtype.kind in "iu" or (
        arm_raw.dtype.kind == "f" and np.isfinite(arm_raw).all() and (arm_raw % 1 == 0).all()
    ):
        codes = arm_raw.astype("int64")
    else:
        raise ValueError(f"arm must hold integer codes (0 = control, 1..K), got {arm_raw.dtype}")

    if propensity is not None:
        p = np.asarray(propensity, dtype="float64")
        if p.ndim != 2 or p.shape[0] != n or p.shape[1] < 2:
            raise ValueError(
                f"propensity must be an (n, K + 1) matrix with n = {n} rows, got {p.shape}"
            )
        if n_arms is not None and p.shape[1] != n_arms + 1:
            raise ValueError(
                f"propensity has {p.shape[1]} columns but n_arms = {n_arms} needs {n_arms + 1}"
            )
        n_arms = p.shape[1] - 1
    if n_arms is None:
        n_arms = int(codes.max())
    if n_arms < 1:
        raise ValueError(f"need at least one promotion arm besides control, got K = {n_arms}")
    outside = np.unique(codes[(codes < 0) | (codes > n_arms)])
    if len(outside):
        raise ValueError(f"arm codes outside 0..{n_arms} (0 = control): {outside[:10].tolist()}")
    counts = np.bincount(codes, minlength=n_arms + 1)
    empty = np.flatnonzero(counts == 0)
    if len(empty):
        raise ValueError(f"arm(s) {empty.tolist()} of 0..{n_arms} have no rows")

    if y_values.dtype.kind not in "biuf":
        raise ValueError(f"y must be numeric, got dtype {y_values.dtype}")
    y_float = y_values.astype("float64")
    if not np.isfinite(y_float).all():
        raise ValueError("y holds non-finite values (NaN or infinity)")
    binary = bool(np.isin(y_float, (0.0, 1.0)).all())
    if outcome == "binary" and not binary:
        raise ValueError("outcome is 'binary' but y holds values other than 0 and 1")
    kind: OutcomeKind = (
        "binary" if outcome == "binary" or (outcome == "auto" and binary) else "continuous"
    )

    if propensity is not None:
        if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
            raise ValueError("propensity must hold probabilities in [0, 1]")
        if not np.allclose(p.sum(axis=1), 1.0, atol=1e-6):
            raise ValueError("each row of propensity must sum to 1 over the K + 1 arms")
        if (p[np.arange(n), codes] <= 0).any():
            raise ValueError("propensity is 0 for the arm a row received")
        propensity = p
    return _Data(matrix.values, matrix.names, codes, y_float, n_arms, kind, propensity)


def _fold_of_rows(arm: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold of each row, stratified by arm: each arm's rows in a seeded order, dealt in turn.

    Raises:
        ValueError: an arm has fewer rows than folds (a fold's complement would lack it).
    """
    counts = np.bincount(arm)
    small = np.flatnonzero(counts < folds)
    if len(small):
        raise ValueError(
            f"arm(s) {small.tolist()} have fewer rows than the {folds} cross-fitting folds"
        )
    rng = np.random.default_rng(seed)
    fold = np.empty(len(arm), dtype="int64")
    for code in range(len(counts)):
        rows = rng.permutation(np.flatnonzero(arm == code))
        fold[rows] = np.arange(len(rows)) % folds
    return fold


# ---------------------------------------------------------------------------------------------
# LightGBM


def lgbm_params(config: UpliftConfig, objective: str, **extra: object) -> dict[str, object]:
    """Native LightGBM parameters of a base learner (``objective``: ``binary``,
    ``regression`` or ``multiclass`` with ``num_class`` in ``extra``).

    ``deterministic`` and ``force_row_wise`` make a fit reproducible for a seed and a number
    of threads.
    """
    params: dict[str, object] = {
        "objective": objective,
        "num_leaves": config.num_leaves,
        "learning_rate": config.learning_rate,
        "min_data_in_leaf": config.min_data_in_leaf,
        "feature_fraction": config.feature_fraction,
        "lambda_l2": config.lambda_l2,
        "seed": config.seed,
        "deterministic": True,
        "force_row_wise": True,
        "verbosity": lightgbm_logging(),
        **extra,
    }
    if config.num_threads:
        params["num_threads"] = config.num_threads
    return params


# LightGBM warns when a tree finds no split worth making, and when boosting stops for want of
# one: expected here (an arm's outcome or a propensity that the features do not explain,
# imputed effects of pure noise), so they are logged at DEBUG while the base learners train.
_EXPECTED_WARNINGS = (
    "No further splits with positive gain",
    "Stopped training because there are no more leaves",
)


class _ExpectedWarnings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.WARNING and str(record.msg).startswith(_EXPECTED_WARNINGS):
            if not lightgbm_log.isEnabledFor(logging.DEBUG):
                return False
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


@contextlib.contextmanager
def _quiet_expected_warnings() -> Iterator[None]:
    quiet = _ExpectedWarnings()
    lightgbm_log.addFilter(quiet)
    try:
        yield
    finally:
        lightgbm_log.removeFilter(quiet)


def _train(config: UpliftConfig, x: np.ndarray, y: np.ndarray, objective: str) -> lgb.Booster:
    """An outcome model (or, with :func:`effect_params`, an effect model): ``n_estimators``
    rounds, or, with ``outcome_early_stopping_rounds``, early-stopped on a seeded
    ``outcome_validation_share`` of its own training rows (those rows are not fitted on)."""
    import lightgbm as lgb

    params = lgbm_params(config, objective)
    patience = config.outcome_early_stopping_rounds
    if not patience or len(y) < 10:
        return lgb.train(
            params, lgb.Dataset(x, y, params=params), num_boost_round=config.n_estimators
        )
    rng = np.random.default_rng(config.seed)
    valid = np.zeros(len(y), dtype=bool)
    valid[rng.permutation(len(y))[: max(round(config.outcome_validation_share * len(y)), 1)]] = True
    train_set = lgb.Dataset(x[~valid], y[~valid], params=params)
    valid_set = lgb.Dataset(x[valid], y[valid], reference=train_set)
    return lgb.train(
        params,
        train_set,
        num_boost_round=config.n_estimators,
        valid_sets=[valid_set],
        callbacks=[lgb.early_stopping(patience, verbose=False)],
    )


def effect_params(config: UpliftConfig, rows: int) -> UpliftConfig:
    """``config`` with an effect model's parameters (the ``effect_*`` fields) in place of the
    outcome models', for an effect model fitted on ``rows`` rows."""
    leaf = max(config.min_data_in_leaf, math.ceil(config.effect_min_leaf_share * rows))
    return config.model_copy(
        update={
            "num_leaves": config.effect_num_leaves,
            "learning_rate": config.effect_learning_rate,
            "n_estimators": config.effect_n_estimators,
            "min_data_in_leaf": leaf,
            "outcome_early_stopping_rounds": 0,
        }
    )


def _train_effect(config: UpliftConfig, x: np.ndarray, target: np.ndarray) -> lgb.Booster:
    """An effect model: a LightGBM regression of imputed effects or pseudo-outcomes on ``x``
    with the effect parameters (:func:`effect_params`)."""
    return _train(effect_params(config, len(target)), x, target, "regression")


def _train_offset_effect(
    config: UpliftConfig, x: np.ndarray, y: np.ndarray, offset: np.ndarray
) -> lgb.Booster:
    """An effect model on the log-odds scale: a LightGBM ``binary`` model of purchases
    boosted from ``offset`` (another arm's out-of-fold log-odds, LightGBM's init score) with
    the effect parameters; its raw score is the log-odds ratio between the rows' arm and the
    offset's."""
    import lightgbm as lgb

    effect = effect_params(config, len(y))
    params = lgbm_params(effect, "binary")
    return lgb.train(
        params,
        lgb.Dataset(x, y, init_score=offset, params=params),
        num_boost_round=effect.n_estimators,
    )


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, LOGIT_CLIP, 1.0 - LOGIT_CLIP)
    return np.log(p / (1.0 - p))


def _objective(outcome: OutcomeKind) -> str:
    return "binary" if outcome == "binary" else "regression"


def _predict(
    booster: lgb.Booster, x: np.ndarray, config: UpliftConfig, *, raw: bool = False
) -> np.ndarray:
    """Probabilities for ``binary`` and ``multiclass`` models, values for ``regression``;
    with ``raw``, the boosted score (a ``binary`` model's log-odds, without any init score
    it was trained from)."""
    kwargs: dict[str, object] = {"num_threads": config.num_threads} if config.num_threads else {}
    if raw:
        kwargs["raw_score"] = True
    return np.asarray(booster.predict(x, **kwargs), dtype="float64")


# ---------------------------------------------------------------------------------------------
# Propensities


def overlap_diagnostics(
    propensity: np.ndarray, band: tuple[float, float], *, estimated: bool, clip: bool
) -> OverlapDiagnostics:
    """Overlap of an ``(n, K + 1)`` propensity matrix against ``band``.

    Args:
        propensity: ``P(arm a | x)`` per row and arm, before any clipping.
        band: ``(low, high)``: the band checked, and the clipping bounds when ``clip``.
        estimated: whether the propensities were estimated (reported as is).
        clip: whether the caller clips them to ``band``.

    Returns:
        The diagnostics; ``share_clipped`` equals ``share_outside`` when ``clip`` and is 0
        otherwise.
    """
    low, high = band
    outside = (propensity < low) | (propensity > high)
    share_outside = float(outside.any(axis=1).mean())
    return OverlapDiagnostics(
        estimated=estimated,
        band=(low, high),
        share_outside=share_outside,
        share_outside_by_arm=tuple(float(v) for v in outside.mean(axis=0)),
        min_by_arm=tuple(float(v) for v in propensity.min(axis=0)),
        max_by_arm=tuple(float(v) for v in propensity.max(axis=0)),
        clip=(low, high) if clip else None,
        share_clipped=share_outside if clip else 0.0,
    )


def _multiclass(config: UpliftConfig, x: np.ndarray, arm: np.ndarray) -> lgb.Booster:
    """A LightGBM multiclass model of ``P(arm | x)``, early-stopped on multi-class log loss
    of a seeded, arm-stratified :data:`PROPENSITY_VALIDATION_SHARE` of the rows (each arm
    keeps at least one training row, and gives one to validation when it has two).

    Without it the fixed ``n_estimators`` fit the noise of a randomized assignment: on 8,000
    rows of a 25% design the out-of-fold estimates ranged from 0.03 to 0.67 after 200 rounds,
    which manufactures overlap problems and inverse-propensity weights of 30. Stopped, the
    model stays near the design where the features carry no signal and follows them where
    they do (targeted assignment).
    """
    import lightgbm as lgb

    rng = np.random.default_rng(config.seed)
    valid = np.zeros(len(arm), dtype=bool)
    for code in range(int(arm.max()) + 1):
        rows = rng.permutation(np.flatnonzero(arm == code))
        share = round(PROPENSITY_VALIDATION_SHARE * len(rows))
        valid[rows[: min(max(share, 1), len(rows) - 1)]] = True
    params = lgbm_params(
        config,
        "multiclass",
        num_class=int(arm.max()) + 1,
        metric="multi_logloss",
    )
    train_set = lgb.Dataset(x[~valid], arm[~valid].astype("float64"), params=params)
    valid_set = lgb.Dataset(x[valid], arm[valid].astype("float64"), reference=train_set)
    return lgb.train(
        params,
        train_set,
        num_boost_round=config.n_estimators,
        valid_sets=[valid_set],
        callbacks=[lgb.early_stopping(config.propensity_early_stopping_rounds, verbose=False)],
    )


def _out_of_fold_propensity(
    config: UpliftConfig, x: np.ndarray, arm: np.ndarray, fold: np.ndarray
) -> np.ndarray:
    raw = np.empty((len(arm), int(arm.max()) + 1))
    for f in range(config.folds):
        held_out = fold == f
        model = _multiclass(config, x[~held_out], arm[~held_out])
        raw[held_out] = _predict(model, x[held_out], config)
    return raw


def estimate_propensity(
    x: Features, arm: np.ndarray, config: UpliftConfig, n_arms: int | None = None
) -> PropensityEstimate:
    """Cross-fitted ``P(arm a | x)`` from LightGBM multiclass classifiers, with overlap
    diagnostics: each fold's rows are scored by a model fitted on the other folds (folds
    stratified by arm, ``config.folds`` of them), so an overfitted model does not push the
    estimates of its own training rows towards 0 or 1.

    Args:
        x: features, one row per unit.
        arm: the arm each row received, ``0`` (control) to ``K``.
        config: LightGBM parameters, seed, folds and the clipping band.
        n_arms: ``K``; by default the largest code in ``arm``.

    Returns:
        The raw and clipped estimates and their :class:`OverlapDiagnostics`.

    Raises:
        ValueError: ``x`` not a numeric 2-d matrix, ``arm`` of another length, codes outside
            ``0..K``, an arm with no rows or with fewer rows than folds.
    """
    arm_values = np.asarray(arm)
    data = _validate(x, arm_values, np.zeros(len(arm_values)), None, n_arms, "auto")
    fold = _fold_of_rows(data.arm, config.folds, config.seed)
    with _quiet_expected_warnings():
        raw = _out_of_fold_propensity(config, data.x, data.arm, fold)
    low, high = config.propensity_clip
    overlap = overlap_diagnostics(raw, (low, high), estimated=True, clip=True)
    _log_overlap(overlap)
    return PropensityEstimate(raw, np.clip(raw, low, high), overlap)


def _log_overlap(overlap: OverlapDiagnostics) -> None:
    if overlap.share_outside > 0:
        log.warning(
            "Propensity overlap: %.1f%% of rows have an arm's propensity outside [%.2f, %.2f] "
            "(per arm %s); clipped to %s",
            100 * overlap.share_outside,
            *overlap.band,
            [round(v, 4) for v in overlap.share_outside_by_arm],
            overlap.clip,
        )


def aipw_pseudo_outcomes(
    y: np.ndarray, arm: np.ndarray, outcome: np.ndarray, propensity: np.ndarray
) -> np.ndarray:
    """The AIPW pseudo-outcome of each promotion arm against control, per row.

    ``phi_k = mu_k - mu_0 + 1[arm = k] (y - mu_k) / e_k - 1[arm = 0] (y - mu_0) / e_0``

    Its conditional mean given ``x`` is the uplift of arm ``k`` when either the outcome
    models ``mu`` or the propensities ``e`` are right (double robustness); with ``mu = 0`` it
    is the inverse-propensity-weighted outcome difference, with exact ``mu`` the outcome
    models' difference.

    Args:
        y: outcomes, ``(n,)``.
        arm: arm codes ``0..K``, ``(n,)``.
        outcome: ``mu_a(x)`` per row and arm, ``(n, K + 1)``, control first (cross-fitted:
            not fitted on the row itself).
        propensity: ``e_a(x)`` per row and arm, ``(n, K + 1)``, positive where a row's arm is.

    Returns:
        ``(n, K)``: column ``k - 1`` is arm ``k``'s pseudo-outcome.

    References:
        Robins, Rotnitzky & Zhao (1994), "Estimation of regression coefficients when some
        regressors are not always observed", JASA 89(427) — the augmented IPW score.
        Cattaneo (2010), Journal of Econometrics 155(2) — its multi-valued form. Kennedy
        (2023), Electronic Journal of Statistics 17(2) — the pseudo-outcome of the
        DR-learner.
    """
    rows = np.arange(len(y))
    # The correction of the arm each row received, (y - mu_a) / e_a, and zero for the others.
    correction = np.zeros(outcome.shape)
    correction[rows, arm] = (y - outcome[rows, arm]) / propensity[rows, arm]
    return outcome[:, 1:] - outcome[:, [0]] + correction[:, 1:] - correction[:, [0]]


# ---------------------------------------------------------------------------------------------
# Fitted learners


@dataclass(frozen=True)
class FittedLearner(ABC):
    """A fitted meta-learner.

    Attributes:
        learner: ``s``, ``t``, ``x`` or ``dr``.
        config: the configuration it was fitted with.
        n_arms: ``K``, the promotion arms (columns of :meth:`predict_uplift`).
        n_features: the number of feature columns.
        feature_names: the columns of a frame or table it was fitted on (``None`` for an
            array); a frame or table to predict must have them, in any order.
        outcome: ``binary`` (uplifts are differences of probabilities) or ``continuous``.
        overlap: diagnostics of the propensities used, ``None`` for the S- and T-learners,
            which use none.
    """

    learner: str
    config: UpliftConfig
    n_arms: int
    n_features: int
    feature_names: tuple[str, ...] | None
    outcome: OutcomeKind
    overlap: OverlapDiagnostics | None

    def predict_uplift(self, x: Features) -> np.ndarray:
        """``E[y | x, arm k] - E[y | x, control]`` for each promotion arm ``k = 1..K``.

        Args:
            x: features of the rows to score, as at fit time (same columns).

        Returns:
            An ``(n, K)`` float64 matrix; column ``k - 1`` is arm ``k``.

        Raises:
            ValueError: ``x`` is not a numeric 2-d matrix, has infinite values, another number
                of columns, or lacks a column the learner was fitted on.
        """
        if self.feature_names is not None and isinstance(
            x, pd.DataFrame | pa.Table | pa.RecordBatch
        ):
            columns = list(x.columns) if isinstance(x, pd.DataFrame) else x.schema.names
            missing = [c for c in self.feature_names if c not in columns]
            if missing:
                raise ValueError(f"x lacks the fitted feature column(s) {missing}")
            x = (
                x[list(self.feature_names)]
                if isinstance(x, pd.DataFrame)
                else x.select(list(self.feature_names))
            )
        values = _feature_matrix(x).values
        if values.shape[1] != self.n_features:
            raise ValueError(
                f"x has {values.shape[1]} feature columns, the learner was fitted on "
                f"{self.n_features}"
            )
        uplift = self._uplift(values)
        if self.outcome == "binary":
            # A difference of two probabilities lies in [-1, 1]; the X and DR second stages
            # regress imputed effects and AIPW pseudo-outcomes (as large as 1 / propensity),
            # which can step outside it (up to ±1.8 on a 4,000-user shop).
            uplift = np.clip(uplift, -1.0, 1.0)
        return uplift

    @abstractmethod
    def _uplift(self, x: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class FittedSLearner(FittedLearner):
    model: lgb.Booster

    def _uplift(self, x: np.ndarray) -> np.ndarray:
        base = _predict(self.model, _with_arm(x, 0, self.n_arms), self.config)
        return np.column_stack(
            [
                _predict(self.model, _with_arm(x, k, self.n_arms), self.config) - base
                for k in range(1, self.n_arms + 1)
            ]
        )


@dataclass(frozen=True)
class FittedTLearner(FittedLearner):
    models: tuple[lgb.Booster, ...]  # one outcome model per arm, control first

    def _uplift(self, x: np.ndarray) -> np.ndarray:
        outcome = [_predict(model, x, self.config) for model in self.models]
        return np.column_stack([outcome[k] - outcome[0] for k in range(1, self.n_arms + 1)])


@dataclass(frozen=True)
class FittedXLearner(FittedLearner):
    # Per promotion arm k: the effect model fitted on arm k's rows (imputed effects
    # y - mu_0(x)) and the one fitted on control rows (mu_k(x) - y).
    treated_effects: tuple[lgb.Booster, ...]
    control_effects: tuple[lgb.Booster, ...]
    # The multiclass propensity model, or the design's assignment shares (K + 1 values) when
    # propensities were given.
    propensity_model: lgb.Booster | None
    assignment_shares: np.ndarray | None

    def weights(self, x: np.ndarray) -> np.ndarray:
        """``g_k(x) = e_k(x) / (e_0(x) + e_k(x))``, the propensity of arm ``k`` among rows in
        arm ``k`` or control, per row and promotion arm (an ``(n, K)`` matrix)."""
        if self.propensity_model is not None:
            low, high = self.config.propensity_clip
            e = np.clip(_predict(self.propensity_model, x, self.config), low, high)
        else:
            e = np.broadcast_to(self.assignment_shares, (len(x), self.n_arms + 1))
        return e[:, 1:] / (e[:, [0]] + e[:, 1:])

    def _uplift(self, x: np.ndarray) -> np.ndarray:
        g = self.weights(x)
        tau_treated = np.column_stack([_predict(m, x, self.config) for m in self.treated_effects])
        tau_control = np.column_stack([_predict(m, x, self.config) for m in self.control_effects])
        # Künzel et al. (2019), the X-learner's third step with g the propensity: where arm k
        # is likely (g near 1), the control rows are the rarer group, and their effect model
        # rests on imputations by mu_k, fitted on the larger group: it gets the weight g.
        return g * tau_control + (1.0 - g) * tau_treated


@dataclass(frozen=True)
class FittedLogitXLearner(FittedXLearner):
    # Binary outcomes: the effect models are log-odds models (see LogitXLearner); the
    # control-side ones estimate logit mu_0 - logit mu_k, the opposite sign of the treated
    # side's. outcome_models: the pooled outcome model of each cross-fitting fold, whose mean
    # prediction under control is the baseline mu_0(x) of new rows.
    outcome_models: tuple[lgb.Booster, ...]

    def _uplift(self, x: np.ndarray) -> np.ndarray:
        g = self.weights(x)
        control = _with_arm(x, 0, self.n_arms)
        base = _logit(np.mean([_predict(m, control, self.config) for m in self.outcome_models], 0))
        treated = np.column_stack(
            [_predict(m, x, self.config, raw=True) for m in self.treated_effects]
        )
        opposite = np.column_stack(
            [_predict(m, x, self.config, raw=True) for m in self.control_effects]
        )
        log_odds_ratio = -g * opposite + (1.0 - g) * treated
        return _sigmoid(base[:, None] + log_odds_ratio) - _sigmoid(base)[:, None]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


@dataclass(frozen=True)
class FittedDRLearner(FittedLearner):
    effects: tuple[lgb.Booster, ...]  # regression of arm k's pseudo-outcome on x, k = 1..K

    def _uplift(self, x: np.ndarray) -> np.ndarray:
        return np.column_stack([_predict(m, x, self.config) for m in self.effects])


def _out_of_fold_pooled_outcomes(
    config: UpliftConfig, data: _Data, fold: np.ndarray
) -> tuple[np.ndarray, tuple[lgb.Booster, ...]]:
    """``mu_a(x)`` of every row under every arm, ``(n, K + 1)``, control first: each fold's
    rows predicted by one outcome model on the features and a one-hot arm fitted on the
    other folds; and the fold models, in fold order."""
    one_hot = np.eye(data.n_arms + 1)[data.arm]
    objective = _objective(data.outcome)
    mu = np.empty((len(data.y), data.n_arms + 1))
    models = []
    for f in range(config.folds):
        held_out = fold == f
        model = _train(
            config, np.hstack([data.x[~held_out], one_hot[~held_out]]), data.y[~held_out], objective
        )
        models.append(model)
        for code in range(data.n_arms + 1):
            mu[held_out, code] = _predict(
                model, _with_arm(data.x[held_out], code, data.n_arms), config
            )
    return mu, tuple(models)


def _with_arm(x: np.ndarray, code: int, n_arms: int) -> np.ndarray:
    """``x`` with ``K + 1`` one-hot columns of the arm appended, every row in arm ``code``."""
    one_hot = np.zeros((len(x), n_arms + 1))
    one_hot[:, code] = 1.0
    return np.hstack([x, one_hot])


# ---------------------------------------------------------------------------------------------
# Learners


class Learner(ABC):
    """A meta-learner: validates its inputs, then fits LightGBM base learners."""

    name: str

    def __init__(self, config: UpliftConfig | None = None) -> None:
        self.config = config if config is not None else UpliftConfig()

    def fit(
        self,
        x: Features,
        arm: np.ndarray,
        y: np.ndarray,
        propensity: np.ndarray | None = None,
        *,
        n_arms: int | None = None,
    ) -> FittedLearner:
        """Fit the learner.

        Args:
            x: numeric features, ``(n, p)``: an array, a pandas frame or an Arrow table
                (categoricals encoded first; NaN is missing).
            arm: the arm each row received: ``0`` is control, ``1..K`` the promotions.
            y: outcomes: 0/1 (a purchase; LightGBM's ``binary`` objective, uplifts are
                differences of probabilities) or real values (margin; ``regression``), see
                ``UpliftConfig.outcome``.
            propensity: ``(n, K + 1)`` known ``P(arm a | x)`` (the randomization design, rows
                summing to 1), or ``None`` to estimate it where the learner needs it (X, DR).
                The S- and T-learners only validate it.
            n_arms: ``K``; by default the propensity's columns minus one, else the largest
                code in ``arm``.

        Returns:
            The fitted learner.

        Raises:
            ValueError: ``x``, ``arm`` and ``y`` of different lengths; ``x`` not numeric 2-d
                or with infinite values; arm codes not integers or outside ``0..K``; an arm
                with no rows (or, for the cross-fitted X-, XL- and DR-learners, fewer rows
                than folds); ``y`` not finite, or not 0/1 with ``outcome="binary"``; a
                propensity matrix of the wrong shape, not probabilities, rows not summing to
                1, or 0 for a row's arm.
        """
        data = _validate(x, arm, y, propensity, n_arms, self.config.outcome)
        log.debug(
            "Fitting the %s-learner: %d rows, %d features, %d promotion arms, %s outcome",
            self.name,
            *data.x.shape,
            data.n_arms,
            data.outcome,
        )
        with _quiet_expected_warnings():
            return self._fit(data)

    def _common(self, data: _Data, overlap: OverlapDiagnostics | None) -> dict[str, object]:
        return {
            "learner": self.name,
            "config": self.config,
            "n_arms": data.n_arms,
            "n_features": data.x.shape[1],
            "feature_names": data.names,
            "outcome": data.outcome,
            "overlap": overlap,
        }

    def _given_overlap(self, data: _Data) -> OverlapDiagnostics | None:
        if data.propensity is None:
            return None
        return overlap_diagnostics(
            data.propensity, self.config.propensity_clip, estimated=False, clip=False
        )

    @abstractmethod
    def _fit(self, data: _Data) -> FittedLearner: ...


class SLearner(Learner):
    """One outcome model on the features and a one-hot arm; the uplift of arm ``k`` is its
    prediction with the arm set to ``k`` minus its prediction with the arm set to control.

    Trees split on the arm only where it pays on the whole sample, so a small effect tends to
    be shrunk towards zero (Künzel et al. 2019, section 3).
    """

    name = "s"

    def _fit(self, data: _Data) -> FittedSLearner:
        one_hot = np.eye(data.n_arms + 1)[data.arm]
        model = _train(self.config, np.hstack([data.x, one_hot]), data.y, _objective(data.outcome))
        return FittedSLearner(**self._common(data, self._given_overlap(data)), model=model)


class TLearner(Learner):
    """One outcome model per arm ``mu_a(x) = E[y | x, arm a]``; the uplift of arm ``k`` is
    ``mu_k(x) - mu_0(x)``."""

    name = "t"

    def _fit(self, data: _Data) -> FittedTLearner:
        models = tuple(
            _train(
                self.config,
                data.x[data.arm == code],
                data.y[data.arm == code],
                _objective(data.outcome),
            )
            for code in range(data.n_arms + 1)
        )
        return FittedTLearner(**self._common(data, self._given_overlap(data)), models=models)


class XLearner(Learner):
    """Künzel et al. (2019)'s X-learner, per promotion arm ``k`` against control, with
    cross-fitted outcome models and additive effect models.

    1. Outcome models ``mu_a(x) = E[y | x, arm a]``: rows are split into ``config.folds``
       folds (stratified by arm), and each fold's rows are predicted, under every arm, by one
       pooled model (features plus a one-hot arm, as the S-learner's) fitted on the other
       folds.
    2. Imputed effects: ``D = y - mu_0(x)`` on arm ``k``'s rows, ``D = mu_k(x) - y`` on
       control rows, and a regression of each on ``x`` (the effect parameters of
       :class:`UpliftConfig`): ``tau_1k`` and ``tau_0k``.
    3. ``tau_k(x) = g_k(x) tau_0k(x) + (1 - g_k(x)) tau_1k(x)`` with
       ``g_k = e_k / (e_0 + e_k)``, the propensity of arm ``k`` among rows in ``k`` or control.

    Out-of-fold outcome predictions keep the imputed effects honest: a pooled model has
    seen the very row it imputes for and has partly fitted its noise, which shrinks the
    imputed effects the effect models learn from (Chernozhukov et al. 2018 on cross-fitting;
    Künzel et al. leave the base learners open). Measured on the simulator, seeds 1-10, for
    ``xl``: Qini over the S-learner's +0.0083 cross-fitted, +0.0059 in-sample, with the same
    Spearman. One pooled outcome model
    rather than one per arm: the arms share a baseline, and every fold's model sees all of
    its rows (EconML's DR-learner fits its outcome model on features and treatment alike).
    On the simulator the pooled model ranked the true uplift better than per-arm models
    (Spearman 0.21 / 0.33 / 0.75 against 0.12 / 0.32 / 0.76 over 10 seeds, docs/uplift.md).

    With estimated propensities ``e`` is a LightGBM multiclass model on all rows (clipped),
    which also scores new rows, and the overlap diagnostics are of its predictions on the
    training rows; with given propensities ``g`` uses the design's mean
    assignment shares (exact for a randomized sale with fixed shares; any ``g`` in [0, 1]
    keeps the estimate consistent, it only trades the two effect models' variances).
    """

    name = "x"

    def _fit(self, data: _Data) -> FittedXLearner:
        fold = _fold_of_rows(data.arm, self.config.folds, self.config.seed)
        mu, _ = _out_of_fold_pooled_outcomes(self.config, data, fold)
        control = data.arm == 0
        treated_effects, control_effects = [], []
        for k in range(1, data.n_arms + 1):
            treated = data.arm == k
            imputed_treated = data.y[treated] - mu[treated, 0]
            imputed_control = mu[control, k] - data.y[control]
            treated_effects.append(_train_effect(self.config, data.x[treated], imputed_treated))
            control_effects.append(_train_effect(self.config, data.x[control], imputed_control))
        weighting = self._weighting(data)
        return FittedXLearner(
            **self._common(data, weighting.pop("overlap")),
            treated_effects=tuple(treated_effects),
            control_effects=tuple(control_effects),
            **weighting,
        )

    def _weighting(self, data: _Data) -> dict[str, object]:
        """What ``g_k`` is computed from: the propensity model (estimated on all rows) and its
        overlap diagnostics, or the design's mean assignment shares."""
        if data.propensity is not None:
            return {
                "propensity_model": None,
                "assignment_shares": data.propensity.mean(axis=0),
                "overlap": self._given_overlap(data),
            }
        propensity_model = _multiclass(self.config, data.x, data.arm)
        overlap = overlap_diagnostics(
            _predict(propensity_model, data.x, self.config),
            self.config.propensity_clip,
            estimated=True,
            clip=True,
        )
        _log_overlap(overlap)
        return {"propensity_model": propensity_model, "assignment_shares": None, "overlap": overlap}


class LogitXLearner(XLearner):
    """The X-learner on the log-odds scale of a purchase (flavor ``xl``); with a continuous
    outcome (identity link) it is the :class:`XLearner`.

    Steps 1 and 3 are the X-learner's. Step 2 imputes on the link scale: on arm ``k``'s rows
    a logistic effect model is boosted from the control log-odds ``logit mu_0(x)`` (out of
    fold) as a fixed offset, so its raw score estimates the log-odds ratio
    ``delta_k(x) = logit mu_k(x) - logit mu_0(x)``; on control rows one is boosted from
    ``logit mu_k(x)`` and estimates ``-delta_k(x)``. Both are combined with the X-learner's
    weights into ``delta_k``, and the uplift is ``sigmoid(b + delta_k) - sigmoid(b)`` with
    ``b = logit mu_0(x)`` from the folds' outcome models (their mean prediction under
    control).

    Why: a promotion's effect on a purchase is an odds ratio more nearly than a constant
    difference, so the difference of probabilities grows with ``mu_0 (1 - mu_0)``, a
    function of every feature the baseline depends on. The X-learner's effect models must
    learn that from imputed differences whose noise is the purchase's Bernoulli noise; here
    it comes from the offset, and the effect models only learn the log-odds ratio (additive
    stumps, the effect parameters of :class:`UpliftConfig`). Logistic regression with an
    offset is the classic way to model a treatment's odds ratio on top of a fixed baseline
    risk (McCullagh & Nelder 1989, "Generalized Linear Models", on offsets; the
    risk-modelling approach of Kent et al. 2020, "The Predictive Approaches to Treatment
    effect Heterogeneity (PATH) statement", Annals of Internal Medicine 172(1), 35-45).
    """

    name = "xl"

    def _fit(self, data: _Data) -> FittedXLearner:
        if data.outcome != "binary":
            fitted = super()._fit(data)
            return dataclasses.replace(fitted, learner=self.name)
        fold = _fold_of_rows(data.arm, self.config.folds, self.config.seed)
        mu, outcome_models = _out_of_fold_pooled_outcomes(self.config, data, fold)
        log_odds = _logit(mu)
        control = data.arm == 0
        treated_effects, control_effects = [], []
        for k in range(1, data.n_arms + 1):
            treated = data.arm == k
            treated_effects.append(
                _train_offset_effect(
                    self.config, data.x[treated], data.y[treated], log_odds[treated, 0]
                )
            )
            control_effects.append(
                _train_offset_effect(
                    self.config, data.x[control], data.y[control], log_odds[control, k]
                )
            )
        weighting = self._weighting(data)
        return FittedLogitXLearner(
            **self._common(data, weighting.pop("overlap")),
            treated_effects=tuple(treated_effects),
            control_effects=tuple(control_effects),
            outcome_models=outcome_models,
            **weighting,
        )


class DRLearner(Learner):
    """Kennedy (2023)'s DR-learner with cross-fitting, per promotion arm ``k`` against control.

    1. Rows are split into ``config.folds`` folds (stratified by arm). For each fold, outcome
       models ``mu_a`` (one per arm) and, unless given, a multiclass propensity model are
       fitted on the other folds and predict the fold's rows.
    2. The AIPW pseudo-outcome of arm ``k`` on every row:
       ``phi_k = mu_k - mu_0 + 1[arm = k] (y - mu_k) / e_k - 1[arm = 0] (y - mu_0) / e_0``,
       with estimated propensities clipped to ``config.propensity_clip``.
    3. ``tau_k`` is a LightGBM regression of ``phi_k`` on ``x`` over all rows, with the
       effect parameters of :class:`UpliftConfig` (additive stumps; Kennedy's second stage
       is any regression, and a pseudo-outcome with inverse-propensity weights of 4 or more
       is mostly noise).

    ``E[phi_k | x]`` is the uplift when either the outcome models or the propensities are
    right, and its error is second order in theirs (Kennedy 2023, theorem 2).
    """

    name = "dr"

    def _fit(self, data: _Data) -> FittedDRLearner:
        objective = _objective(data.outcome)
        fold = _fold_of_rows(data.arm, self.config.folds, self.config.seed)
        n, arms = len(data.y), data.n_arms + 1
        mu = np.empty((n, arms))
        for f in range(self.config.folds):
            held_out = fold == f
            for code in range(arms):
                fit_rows = ~held_out & (data.arm == code)
                model = _train(self.config, data.x[fit_rows], data.y[fit_rows], objective)
                mu[held_out, code] = _predict(model, data.x[held_out], self.config)
        if data.propensity is None:
            raw = _out_of_fold_propensity(self.config, data.x, data.arm, fold)
            overlap = overlap_diagnostics(
                raw, self.config.propensity_clip, estimated=True, clip=True
            )
            _log_overlap(overlap)
            e = np.clip(raw, *self.config.propensity_clip)
        else:
            overlap, e = self._given_overlap(data), data.propensity
        pseudo = aipw_pseudo_outcomes(data.y, data.arm, mu, e)
        effects = tuple(
            _train_effect(self.config, data.x, pseudo[:, k]) for k in range(data.n_arms)
        )
        return FittedDRLearner(**self._common(data, overlap), effects=effects)


LEARNERS: dict[str, type[Learner]] = {
    "s": SLearner,
    "t": TLearner,
    "x": XLearner,
    "xl": LogitXLearner,
    "dr": DRLearner,
}


def make_learner(name: LearnerName, config: UpliftConfig | None = None) -> Learner:
    """The meta-learner called ``name`` (``s``, ``t``, ``x`` or ``dr``) with ``config``.

    Raises:
        ValueError: an unknown name; the message lists the known ones.
    """
    try:
        return LEARNERS[name](config)
    except KeyError:
        raise ValueError(f"unknown learner {name!r}; known: {', '.join(LEARNERS)}") from None
