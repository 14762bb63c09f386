"""The propensity kind's flavors: LightGBM (``lgbm``) and DCN-v2 under DDP (``dcn``).

Each fits on the shared campaign split the runner hands it, logs its model through the
tracking adapter, and loads a logged model back as a predictor of the raw feature frame.
Heavy libraries are imported inside the methods, so listing the kinds stays light.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from flashsale_ml.features.columns import PROPENSITY_TABLE
from flashsale_ml.models.base import FitRequest, FittedModel, Predictor

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

log = logging.getLogger(__name__)

LIGHTGBM_PIP_REQUIREMENTS = ("lightgbm", "pandas", "numpy", "scikit-learn")


@contextmanager
def timed(durations: dict[str, float], phase: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    durations[phase] = round(time.perf_counter() - started, 3)
    log.info("%s took %.1f s", phase, durations[phase])


def _pinned(names: tuple[str, ...]) -> list[str]:
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in names]


class LgbmFlavor:
    """Gradient-boosted trees on the point-in-time features (see :mod:`.lgbm`).

    Options: ``config`` (an :class:`~flashsale_ml.models.propensity.lgbm.LgbmConfig`).
    """

    name = "lgbm"
    library = "lightgbm"  # the MLflow flavor it is logged with
    step_name = "train_propensity_lgbm"
    invariance_tolerance = 1e-9  # float64 trees: a row scores the same wherever it is

    def fit(self, request: FitRequest) -> FittedModel:
        from flashsale_ml.datasets import Snapshot
        from flashsale_ml.models.propensity.lgbm import (
            DICTIONARY_COLUMNS,
            TRAINING_COLUMNS,
            LgbmConfig,
            encoded_time_split,
            train_propensity_lgbm,
        )
        from flashsale_ml.training import plots

        settings = request.settings
        config = request.options.get("config") or LgbmConfig()
        if not config.num_threads:
            config = config.model_copy(update={"num_threads": settings.compute_threads})
        durations: dict[str, float] = {}
        with timed(durations, "read_features"), Snapshot(request.features_uri) as snapshot:
            # Only what the model and the split read (the revenue label stays on disk), as
            # Arrow: LightGBM bins and scores zero-copy slices of this table.
            table = snapshot.read_table(
                PROPENSITY_TABLE,
                columns=list(TRAINING_COLUMNS),
                dictionary_columns=list(DICTIONARY_COLUMNS),
            )
            split = encoded_time_split(table, settings.seed, request.split)
            del table
        model = train_propensity_lgbm(split, config, settings.seed)
        durations |= model.durations  # fit, evaluate
        importance = model.booster.feature_importance(importance_type="gain")
        names = model.booster.feature_name()
        return FittedModel(
            model=model.booster,
            metrics=model.metrics,
            params={
                "lgbm": config.model_dump(),
                "seed": settings.seed,
                "split": split.campaigns,
                "best_iteration": model.best_iteration,
                # Part of the model as logged (added to tree 0): a param as well as a metric.
                "calibration_intercept_shift": model.calibration["intercept_shift"],
                "rows": {part: len(y) for part, y in split.y.items()},
            },
            history=model.history,
            figures={
                **plots.test_window_figures(model.test_evaluation, "LightGBM"),
                "feature_importance.png": plots.importance_figure(names, importance),
                "learning_curves.png": plots.lgbm_learning_curves_figure(
                    model.history, model.best_iteration
                ),
            },
            documents={
                "feature_importance.json": dict(zip(names, importance.tolist(), strict=True))
            },
            durations=durations,
            extra_metrics={f"calibration_{k}": v for k, v in model.calibration.items()},
            # Serving sends encode_features' float64 matrix, so the signature is all doubles.
            summary={"input_example": split.x["test"].slice(0, 5).to_pandas().astype("float64")},
        )

    def log_model(self, fitted: FittedModel, run_id: str) -> str:
        from flashsale_ml.models.propensity.lgbm import CATEGORY_VOCAB
        from flashsale_ml.tracking import log_model

        example = fitted.summary.pop("input_example")
        return log_model(
            self.library,
            fitted.model,
            input_example=example,
            output_example=fitted.model.predict(example),
            pip_requirements=_pinned(LIGHTGBM_PIP_REQUIREMENTS),
            metadata={"categorical_vocab": {k: list(v) for k, v in CATEGORY_VOCAB.items()}},
        )

    def predictor(self, model_uri: str) -> Predictor:
        from flashsale_ml.models.propensity.lgbm import encode_features
        from flashsale_ml.tracking import load_pyfunc

        model = load_pyfunc(model_uri)

        def predict(frame: pd.DataFrame) -> np.ndarray:
            import numpy as np

            return np.asarray(model.predict(encode_features(frame)), dtype=float).reshape(-1)

        return predict


class DcnFlavor:
    """DCN-v2 trained with DistributedDataParallel under torchrun (see :mod:`.dcn`).

    Options: ``config`` (:class:`~flashsale_ml.models.propensity.dcn.network.DeepConfig`) or
    just ``epochs``; ``launch`` (:class:`~flashsale_ml.training.distributed.Launch`) or just
    ``nproc_per_node``, ``nnodes``, ``max_restarts``; ``extra_env`` (for the workers).
    Rank 0 logs per-epoch metrics into the open run and hands the best weights and the test
    scores back; the model is logged here.
    """

    name = "dcn"
    library = "pytorch"
    step_name = "train_propensity_deep"
    # float32: a row's score moves by a rounding step or two with its place in the batch
    # (5.96e-08 after shuffling 2,000 rows; 1.79e-07 one row at a time against the batch).
    invariance_tolerance = 1e-6

    def fit(self, request: FitRequest) -> FittedModel:
        import torch

        from flashsale_ml.datasets import Snapshot
        from flashsale_ml.evaluation.binary import evaluate_scores
        from flashsale_ml.models.propensity.dcn.data import cardinalities, sale_columns
        from flashsale_ml.models.propensity.dcn.network import DeepConfig, build_model
        from flashsale_ml.training import plots
        from flashsale_ml.training.distributed import Launch, run_torchrun

        settings = request.settings
        options = request.options
        config = options.get("config") or DeepConfig(
            **({"epochs": options["epochs"]} if options.get("epochs") else {})
        )
        widths = ("nproc_per_node", "nnodes", "max_restarts")
        launch = options.get("launch") or Launch(**{k: options[k] for k in widths if k in options})
        with Snapshot(request.features_uri) as snapshot:
            rows = snapshot.manifest.tables[PROPENSITY_TABLE].rows
        checkpoints = settings.lake_uri + f"/checkpoints/{request.run_id}"
        durations: dict[str, float] = {}
        with tempfile.TemporaryDirectory() as tmp, timed(durations, "fit"):
            result_path, model_path = Path(tmp) / "result.json", Path(tmp) / "model.pt"
            worker_args = {
                "--features": request.features_uri,
                "--checkpoints": checkpoints,
                "--run-id": request.run_id,
                "--split": json.dumps(request.split.as_dict()),
                "--config": config.model_dump_json(),
                "--seed": str(settings.seed),
                "--result": str(result_path),
                "--model-out": str(model_path),
            }
            try:
                run_torchrun(
                    "flashsale_ml.models.propensity.dcn.worker",
                    [part for pair in worker_args.items() for part in pair],
                    launch,
                    settings,
                    request.options.get("extra_env"),
                )
                if not result_path.exists():
                    raise RuntimeError("torchrun exited with 0 but rank 0 wrote no result")
            except RuntimeError as exc:
                head, _, tail = str(exc).partition("\n")
                raise RuntimeError(
                    f"{head}; MLflow run {request.run_id} marked FAILED; checkpoints kept at "
                    f"{checkpoints}" + (f"\n{tail}" if tail else "")
                ) from None
            result = json.loads(result_path.read_text())
            saved = torch.load(model_path, weights_only=False)
        network = build_model(
            saved["n_dense"], cardinalities(config.user_buckets), config, sale_columns()
        )
        network.load_state_dict(saved["state_dict"])
        evaluation = evaluate_scores(saved["y_test"], saved["p_test"])
        return FittedModel(
            model=_ProbabilityNet.wrap(network, saved["n_dense"]),
            metrics={"test": result["test"]},
            params={
                "deep": config.model_dump(mode="json"),
                "seed": settings.seed,
                "launch": launch.__dict__,
                "rows": rows,
                "split": request.split.as_dict(),
            },
            figures={
                **plots.test_window_figures(evaluation, "DCN-v2"),
                "learning_curves.png": plots.curves_figure(
                    {
                        "train (mean over the epoch)": result["history"]["train_loss"],
                        "validation": result["history"]["valid_loss"],
                    },
                    "DCN-v2 loss",
                    "log loss",
                    xlabel="epoch",
                    best=result["best_epoch"],
                    best_label="best epoch (early stopping):",
                ),
            },
            documents={"config/deep.json": config.model_dump(mode="json")},
            durations=durations,
            extra_metrics={
                "samples_per_second": result["samples_per_second"],
                "restarts": float(result["restarts"]),
                "best_epoch": float(result["best_epoch"] or 0),
            },
            summary={
                "samples_per_second": result["samples_per_second"],
                "restarts": result["restarts"],
                "world_size": result["world_size"],
                "backend": result["backend"],
                "best_epoch": result["best_epoch"],
                "epochs_run": result["epochs_run"],
                "input_example": saved["example"],
                "user_buckets": config.user_buckets,
            },
        )

    def log_model(self, fitted: FittedModel, run_id: str) -> str:
        import torch

        from flashsale_ml.tracking import log_model

        example = fitted.summary.pop("input_example")
        with torch.no_grad():
            output = fitted.model(torch.from_numpy(example)).numpy()
        return log_model(
            self.library,
            fitted.model,
            input_example=example,
            output_example=output,
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "numpy"],
            metadata={"user_buckets": fitted.summary.pop("user_buckets")},
        )

    def predictor(self, model_uri: str) -> Predictor:
        from flashsale_ml.models.propensity.dcn.data import encode
        from flashsale_ml.tracking import load_pyfunc

        model = load_pyfunc(model_uri)
        buckets = int((model.metadata.metadata or {}).get("user_buckets", 100_003))

        def predict(frame: pd.DataFrame) -> np.ndarray:
            import numpy as np

            matrix = encode(frame, buckets).matrix()
            return np.asarray(model.predict(matrix), dtype=float).reshape(-1)

        return predict


class _ProbabilityNet:
    """Builds the module MLflow logs: one float matrix in (dense columns, then categorical
    codes), probabilities out."""

    @staticmethod
    def wrap(network, n_dense: int):
        import torch

        class PropensityNet(torch.nn.Module):
            def __init__(self, net: torch.nn.Module, n_dense: int) -> None:
                super().__init__()
                self.net, self.n_dense = net, n_dense

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return torch.sigmoid(self.net(x[:, : self.n_dense], x[:, self.n_dense :].long()))

        return PropensityNet(network.cpu().eval(), n_dense)
