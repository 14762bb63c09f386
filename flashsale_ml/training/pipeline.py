"""Training steps as called by the DAG: read features, train, log everything to MLflow."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from flashsale_ml.config import Settings
from flashsale_ml.datasets import Snapshot
from flashsale_ml.tracking import (
    TAG_PREFIX,
    log_metrics_batch,
    log_params_flat,
    log_snapshot_input,
    step_run,
)
from flashsale_ml.training.propensity_lgbm import (
    CATEGORY_VOCAB,
    DICTIONARY_COLUMNS,
    TRAINING_COLUMNS,
    LgbmConfig,
    encoded_time_split,
    train_propensity_lgbm,
)

log = logging.getLogger(__name__)

MODEL_KIND = "propensity"
LIGHTGBM_PIP_REQUIREMENTS = ("lightgbm", "pandas", "numpy", "scikit-learn")


@dataclass(frozen=True)
class TrainingResult:
    run_id: str
    model_uri: str
    metrics: dict[str, float]
    # Wall seconds per phase (read, fit, evaluate, log): where a slow run spent its time.
    durations: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, object]:
        return {"run_id": self.run_id, "model_uri": self.model_uri, **self.metrics}


@contextmanager
def _timed(durations: dict[str, float], phase: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    durations[phase] = round(time.perf_counter() - started, 3)
    log.info("%s took %.1f s", phase, durations[phase])


def _pinned_requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in LIGHTGBM_PIP_REQUIREMENTS]


def train_propensity_lgbm_step(
    features_uri: str,
    settings: Settings,
    parent_run_id: str | None = None,
    config: LgbmConfig | None = None,
) -> TrainingResult:
    """Train the LightGBM propensity model on a feature snapshot and log it to MLflow.

    Logged: flattened config as params, per-split metrics (one batch), the intercept
    correction (``calibration_*``: its shift, a param too, and the mean predictions before and
    after it), learning curves, the model with signature and input example, the feature
    snapshot as an MLflow dataset input, ROC / PR / calibration / importance figures, and
    lineage tags (snapshot ids, code version, config hash) that the registry copies onto the
    model version.
    """
    import mlflow
    import mlflow.lightgbm
    from mlflow.models import infer_signature

    from flashsale_ml.training import plots

    config = config or LgbmConfig()
    if not config.num_threads:
        config = config.model_copy(update={"num_threads": settings.compute_threads})
    durations: dict[str, float] = {}
    with _timed(durations, "read_features"), Snapshot(features_uri) as snapshot:
        # Only what the model and the split read (ids and the revenue label stay on disk),
        # as Arrow: LightGBM bins and scores zero-copy slices of this table.
        table = snapshot.read_table(
            "propensity",
            columns=list(TRAINING_COLUMNS),
            dictionary_columns=list(DICTIONARY_COLUMNS),
        )
        raw_snapshot_id = snapshot.manifest.metadata.get("input_snapshot_id")
        feature_snapshot_id = snapshot.snapshot_id
        split = encoded_time_split(table, settings.seed)
        del table
    model = train_propensity_lgbm(split, config, settings.seed)
    durations |= model.durations  # fit, evaluate

    tags = {
        f"{TAG_PREFIX}model_kind": MODEL_KIND,
        f"{TAG_PREFIX}model_flavor": "lightgbm",
        f"{TAG_PREFIX}data_snapshot_id": str(raw_snapshot_id),
        f"{TAG_PREFIX}feature_snapshot_uri": features_uri,
        f"{TAG_PREFIX}feature_snapshot_id": feature_snapshot_id,
        f"{TAG_PREFIX}test_campaigns": ",".join(split.campaigns["test"]),
        # What the model was fitted or early-stopped on: promotion never evaluates there.
        f"{TAG_PREFIX}fitted_campaigns": ",".join(
            sorted({*split.campaigns["train"], *split.campaigns["valid"]})
        ),
    }
    with (
        _timed(durations, "log_to_mlflow"),
        step_run(settings, "train_propensity_lgbm", parent_run_id, tags) as run,
    ):
        run_id = run.info.run_id
        log_params_flat(
            run_id,
            {
                "lgbm": config.model_dump(),
                "seed": settings.seed,
                "split": split.campaigns,
                "best_iteration": model.best_iteration,
                # Part of the model as logged (added to tree 0), so a param as well as a metric.
                "calibration_intercept_shift": model.calibration["intercept_shift"],
                "rows": {
                    "train": len(split.y["train"]),
                    "valid": len(split.y["valid"]),
                    "test": len(split.y["test"]),
                },
            },
        )
        flat = {
            f"{name}_{k}": v for name, values in model.metrics.items() for k, v in values.items()
        }
        flat |= {f"calibration_{k}": v for k, v in model.calibration.items()}
        flat |= {f"duration_{phase}_s": seconds for phase, seconds in durations.items()}
        log_metrics_batch(run_id, flat, history=model.history)

        log_snapshot_input(run_id, features_uri, "propensity")

        # Serving sends encode_features' float64 matrix, so the signature is all doubles.
        x_example = split.x["test"].slice(0, 5).to_pandas().astype("float64")
        signature = infer_signature(x_example, model.booster.predict(x_example))
        info = mlflow.lightgbm.log_model(
            model.booster,
            name="model",
            signature=signature,
            input_example=x_example,
            pip_requirements=_pinned_requirements(),
            metadata={"categorical_vocab": {k: list(v) for k, v in CATEGORY_VOCAB.items()}},
        )
        mlflow.set_tag(f"{TAG_PREFIX}model_uri", info.model_uri)

        importance = model.booster.feature_importance(importance_type="gain")
        for name, fig in {
            **plots.test_window_figures(model.test_evaluation, "LightGBM"),
            "feature_importance.png": plots.importance_figure(
                model.booster.feature_name(), importance
            ),
            "learning_curves.png": plots.lgbm_learning_curves_figure(
                model.history, model.best_iteration
            ),
        }.items():
            mlflow.log_figure(fig, f"plots/{name}")
            plots.close(fig)
        mlflow.log_dict(
            dict(zip(model.booster.feature_name(), importance.tolist(), strict=True)),
            "feature_importance.json",
        )
    test_metrics = {f"test_{k}": v for k, v in model.metrics["test"].items()}
    return TrainingResult(run_id, info.model_uri, test_metrics, durations)
