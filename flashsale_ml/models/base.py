"""The small interface every model kind implements, and what its flavors exchange with the
generic training runner, the promotion flow and scoring.

A *kind* is a question the business asks (who buys: ``propensity``; who buys because of
which promotion: ``uplift``; ...). It owns its feature table and target, how its holdout is
selected, its metrics, its promotion gates (as data) and its behavioural checks. A *flavor*
is one way to answer it (``lgbm``, ``dcn``...): it fits on the shared campaign split, logs
its model to MLflow through the tracking adapter, and turns a logged model back into a
predictor of the kind's raw feature frame. Generic layers (``training.runner``,
``promotion``, ``scoring``, ``steps``) talk to kinds only through this module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from pydantic import BaseModel

    from flashsale_ml.config import Settings
    from flashsale_ml.promotion.gates import CheckResult, GateSpec
    from flashsale_ml.training.splits import CampaignSplit

# What campaign planning asks the champions for: each user's purchase probability (scored with
# the arm ``control``) and each promotion's incremental purchase probability (scored per arm,
# the arm named in the frame's ``scored_arm`` column).
PURCHASE_PROBABILITY = "purchase_probability"
PURCHASE_UPLIFT = "purchase_uplift"
# ... and each sale SKU's demand quantiles (P10, P50, P90) at candidate discount depths.
DEMAND_QUANTILES = "demand_quantiles"
PLAN_ROLES = (PURCHASE_PROBABILITY, PURCHASE_UPLIFT, DEMAND_QUANTILES)

# The kind's raw feature frame in, one prediction per row out (probabilities, uplifts...).
Predictor = Callable[["pd.DataFrame"], "np.ndarray"]


@dataclass(frozen=True)
class FitRequest:
    """What a flavor gets to fit: the snapshot, the shared split, the open MLflow run.

    Attributes:
        kind: the model kind being trained.
        features_uri: the feature snapshot.
        settings: runtime settings (seed, threads, tracking).
        split: the campaign split every flavor uses (from the snapshot's manifest).
        run_id: the MLflow run the training logs into (already open; workers may log to it).
        options: flavor options (a config object, launch width, epochs...).
        resumed: the run is a failed run being continued (checkpoints are reused).
    """

    kind: ModelKind
    features_uri: str
    settings: Settings
    split: CampaignSplit
    run_id: str
    options: Mapping[str, Any] = field(default_factory=dict)
    resumed: bool = False


@dataclass
class FittedModel:
    """A flavor's fit, handed to its ``log_model`` and to the runner's generic logging.

    Attributes:
        model: what ``log_model`` logs (a booster, a torch module...).
        metrics: metrics per part (``train``/``valid``/``test``); ``test`` is returned by the
            step and copied to the pipeline run.
        params: parameters to log (nested dicts are flattened).
        history: per-step metric curves (logged with steps).
        figures: figure file name -> matplotlib figure, logged under ``plots/``.
        documents: artifact path -> JSON-able object.
        durations: wall seconds per phase.
        summary: further small values the step returns (backend, restarts...).
        extra_metrics: flat metrics logged as they are (``calibration_*``...).
    """

    model: Any
    metrics: dict[str, dict[str, float]]
    params: dict[str, Any] = field(default_factory=dict)
    history: dict[str, list[float]] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    documents: dict[str, Any] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    extra_metrics: dict[str, float] = field(default_factory=dict)


class Flavor(Protocol):
    """One way to fit a kind. ``name`` is what ``--flavor`` and the ``model_flavor`` tag say;
    ``library`` is the MLflow flavor its models are logged with (``lightgbm``, ``pytorch``);
    ``step_name`` names its MLflow run (``train_<kind>_<flavor>``)."""

    name: str
    library: str
    step_name: str
    # How far two scores of the same row may differ for numerical reasons alone (batch
    # position, summation order): 1e-9 for float64 trees, ~1e-6 for float32 networks.
    invariance_tolerance: float

    def fit(self, request: FitRequest) -> FittedModel: ...

    def log_model(self, fitted: FittedModel, run_id: str) -> str:
        """Log the fitted model into the open run; return its model URI."""
        ...

    def predictor(self, model_uri: str) -> Predictor:
        """Load a logged model of this flavor: raw feature frame in, predictions out."""
        ...


@dataclass(frozen=True)
class HoldoutSelection:
    """The kind's choice of holdout rows from its feature table.

    Attributes:
        rows: the rows, in a fixed order (scores of two models must align).
        campaign_ids: the campaign(s) the rows come from.
        targets: what the predictions are judged against, aligned with ``rows``.
        segments: each row's segment for the segment gate (e.g. value tier).
        key_columns: the columns whose values identify a row (its digest proves two models
            were scored on the same rows).
    """

    rows: pd.DataFrame
    campaign_ids: tuple[str, ...]
    targets: np.ndarray
    segments: np.ndarray
    key_columns: tuple[str, ...]


class ModelKind(Protocol):
    """The interface of a model kind (see the module docstring).

    Attributes:
        name: the kind's name (``propensity``); registered models are
            ``<prefix>-<name>``, gate settings ``FLASHSALE_PROMOTION__<NAME>__<GATE>``.
        feature_table: the table of a feature snapshot its flavors read.
        target: the column its predictions are judged against.
        flavors: flavor name -> flavor; ``default_flavor`` is trained when none is named.
        gate_settings: the pydantic model of its promotion thresholds.
        flat_gate_settings: whether ``FLASHSALE_PROMOTION__<GATE>`` (no kind) configures it
            (kept for the first kind, whose gates were configured that way).
        pipeline_branches: what the training pipeline trains of this kind.
        headline_metrics: the test metrics people compare runs by (columns of the MLflow
            runs view), the most important first.
        accountable_for: the campaign outcome its predictions are checked against after a
            sale (``conversion``), or None.
        plan_role: what campaign planning uses its champion for (one of
            :data:`PLAN_ROLES`), or None.
        required_tables: the raw (contract) tables its training needs; training on a
            snapshot without one of them fails at once, naming it.
    """

    name: str
    feature_table: str
    target: str
    flavors: Mapping[str, Flavor]
    default_flavor: str
    gate_settings: type[BaseModel]
    flat_gate_settings: bool
    pipeline_branches: tuple[TrainingBranch, ...]
    headline_metrics: tuple[str, ...]
    accountable_for: str | None
    plan_role: str | None
    required_tables: tuple[str, ...]

    def select_holdout(self, frame: pd.DataFrame) -> HoldoutSelection:
        """The newest campaign's rows of the kind's feature table, in a fixed order."""
        ...

    def evaluate(self, targets: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
        """The kind's metrics of predictions against targets."""
        ...

    def gates(self, settings: Settings) -> GateSpec:
        """The kind's promotion gates, with the thresholds configured in ``settings``."""
        ...

    def behavioural_checks(
        self,
        predict: Predictor,
        sample: pd.DataFrame,
        seed: int,
        settings: Settings,
        invariance_tolerance: float = 1e-9,
    ) -> tuple[CheckResult, ...]:
        """Checks the challenger's scoring path must pass whatever its metrics say
        (``invariance_tolerance``: the flavor's numerical noise)."""
        ...


@dataclass(frozen=True)
class TrainingBranch:
    """One branch of the training pipeline, after the features are built: the same wiring
    for the Airflow DAG and ``flashsale pipeline``.

    Attributes:
        task_id: the Airflow task (and the CLI's label) that trains it.
        kind, flavor: what it trains.
        promote: register the model as challenger and judge it against the champion; else
            it is trained and logged for comparison only.
        params: flavor option -> the DAG run's param that sets it (e.g. ``epochs``).
    """

    task_id: str
    kind: str
    flavor: str
    promote: bool
    params: Mapping[str, str] = field(default_factory=dict)
