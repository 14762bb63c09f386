"""The demand kind's flavor: three LightGBM quantile models of a sale SKU's demand (see
:mod:`.quantile`), trained on the older sales with stock-outs corrected (:mod:`.sale`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flashsale_ml.features.columns import ITEMS_TABLE
from flashsale_ml.models.base import FitRequest, FittedModel, Predictor

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

log = logging.getLogger(__name__)

PIP_REQUIREMENTS = ("lightgbm", "pandas", "numpy", "pydantic")
# The column of a promotion holdout row naming the quantile level its prediction is for.
LEVEL_COLUMN = "quantile_level"
# Depths of the what-if curves logged with a run.
WHAT_IF_DEPTHS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)


def model_input(frame: pd.DataFrame) -> pd.DataFrame:
    """The logged model's input: the raw columns it reads, numbers as float64 and text as
    strings, so that the MLflow signature accepts what a shop's tables hold (an int32 flag, a
    count that is null for a new SKU)."""
    import pandas as pd

    from flashsale_ml.models.demand.sale import RAW_COLUMNS, TEXT_COLUMNS

    columns = [c for c in RAW_COLUMNS if c != "as_of"]
    out = {}
    for column in columns:
        values = frame[column].reset_index(drop=True)
        if column in TEXT_COLUMNS:
            out[column] = values.astype("string").fillna("").astype(object)
        else:
            out[column] = pd.to_numeric(values, errors="coerce").astype("float64")
    return pd.DataFrame(out)


@dataclass
class DemandScorer:
    """What MLflow stores and serves: raw ``items`` feature rows in, an ``(n, 3)`` array of
    demand P10, P50, P90 out (non-negative, non-crossing)."""

    model: Any  # QuantileDemandModel

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        from flashsale_ml.models.demand.sale import add_features

        return self.model.predict(add_features(frame))

    def what_if(self, frame: pd.DataFrame, depths, keys=("item_id",)) -> pd.DataFrame:
        """Quantiles of every row at every depth (see ``QuantileDemandModel.what_if``)."""
        from flashsale_ml.models.demand.sale import add_features

        return self.model.what_if(add_features(frame), depths, keys=keys)


class DemandFlavor:
    """LightGBM quantile regression (P10/P50/P90) with a monotone discount effect.

    Options: ``config`` (a :class:`~flashsale_ml.models.demand.quantile.QuantileConfig`),
    ``correct_censoring`` (default True: sold-out SKUs' sales are scaled up to demand).
    """

    name = "lgbm"
    library = "pyfunc"
    step_name = "train_demand_lgbm"
    invariance_tolerance = 1e-9

    def fit(self, request: FitRequest) -> FittedModel:
        import numpy as np

        from flashsale_ml.datasets import Snapshot
        from flashsale_ml.errors import DataError
        from flashsale_ml.evaluation.demand import demand_metrics
        from flashsale_ml.features.columns import SOLD_OUT_LABEL
        from flashsale_ml.models.demand.plots import forecast_vs_actual_figure, what_if_figure
        from flashsale_ml.models.demand.quantile import (
            QuantileConfig,
            QuantileDemandModel,
        )
        from flashsale_ml.models.demand.sale import (
            CATEGORICAL_FEATURES,
            FEATURES,
            demand_target,
            sale_rows,
        )

        settings = request.settings
        config = request.options.get("config") or QuantileConfig(
            seed=settings.seed, num_threads=settings.compute_threads
        )
        correct = bool(request.options.get("correct_censoring", True))
        with Snapshot(request.features_uri) as snapshot:
            items = snapshot.read_pandas(ITEMS_TABLE)
        rows = sale_rows(items)
        fit_rows = rows[rows["campaign_id"].isin(request.split.fitted_campaigns)]
        test_rows = rows[rows["campaign_id"].isin(request.split.test)].reset_index(drop=True)
        if fit_rows.empty or test_rows.empty:
            raise DataError(
                f"{ITEMS_TABLE}: no sale SKUs (in_sale = 1) in the "
                f"{'fitted' if fit_rows.empty else 'test'} campaigns "
                f"{list(request.split.fitted_campaigns if fit_rows.empty else request.split.test)}"
                ": the campaigns table lists no item_ids for them"
            )
        model = QuantileDemandModel.fit(
            fit_rows,
            demand_target(fit_rows, correct_censoring=correct),
            FEATURES,
            CATEGORICAL_FEATURES,
            config,
        )
        scorer = DemandScorer(model)
        quantiles = model.predict(test_rows)
        # Judged on the corrected demand whatever it was trained on: that is what a stock
        # plan has to meet.
        actual = demand_target(test_rows)
        test = demand_metrics(actual, quantiles)
        test["raw_sales_wape_p50"] = float(
            np.abs(quantiles[:, 1] - demand_target(test_rows, False)).sum()
            / max(demand_target(test_rows, False).sum(), 1e-9)
        )
        test["rows"] = float(len(test_rows))
        test["sold_out_share"] = float(test_rows[SOLD_OUT_LABEL].fillna(0).mean())
        test["raw_depth_violations"] = model.raw_depth_violations(test_rows, WHAT_IF_DEPTHS)
        top = test_rows.assign(p50=quantiles[:, 1]).nlargest(6, "p50")
        what_if = model.what_if(top, WHAT_IF_DEPTHS, keys=("item_id",))
        labels = [f"SKU {i}" for i in top["item_id"]]
        return FittedModel(
            model=scorer,
            metrics={"test": test},
            params={
                "demand": config.model_dump(mode="json"),
                "correct_censoring": correct,
                "split": request.split.as_dict(),
                "rows": {"fit": len(fit_rows), "test": len(test_rows)},
                "features": list(FEATURES),
            },
            figures={
                "forecast_vs_actual.png": forecast_vs_actual_figure(
                    actual,
                    quantiles,
                    test_rows[SOLD_OUT_LABEL].fillna(0).to_numpy() == 1,
                    "demand P10/P50/P90",
                ),
                "what_if_discount.png": what_if_figure(what_if, labels, "demand"),
            },
            summary={"input_example": test_rows.head(5).reset_index(drop=True)},
        )

    def log_model(self, fitted: FittedModel, run_id: str) -> str:
        from importlib.metadata import version

        from flashsale_ml.models.demand.quantile import QUANTILE_COLUMNS, QUANTILE_LEVELS
        from flashsale_ml.tracking import log_model

        example = model_input(fitted.summary.pop("input_example"))
        return log_model(
            self.library,
            fitted.model,
            input_example=example,
            output_example=fitted.model.predict(example),
            pip_requirements=[f"{p}=={version(p)}" for p in PIP_REQUIREMENTS],
            metadata={
                "output": "demand quantiles per row",
                "columns": list(QUANTILE_COLUMNS),
                "levels": list(QUANTILE_LEVELS),
            },
        )

    def predictor(self, model_uri: str) -> Predictor:
        """Raw rows in; with a ``quantile_level`` column (a promotion holdout) each row's
        prediction at its level, else the P50."""
        import numpy as np

        from flashsale_ml.models.demand.quantile import QUANTILE_LEVELS
        from flashsale_ml.tracking import load_pyfunc

        model = load_pyfunc(model_uri)

        def predict(frame: pd.DataFrame) -> np.ndarray:
            quantiles = np.asarray(model.predict(model_input(frame)), dtype=float)
            quantiles = quantiles.reshape(len(frame), len(QUANTILE_LEVELS))
            if LEVEL_COLUMN not in frame.columns:
                return quantiles[:, QUANTILE_LEVELS.index(0.5)]
            index = {level: i for i, level in enumerate(QUANTILE_LEVELS)}
            wanted = np.array([index[float(v)] for v in frame[LEVEL_COLUMN]], dtype=np.int64)
            return quantiles[np.arange(len(frame)), wanted]

        return predict
