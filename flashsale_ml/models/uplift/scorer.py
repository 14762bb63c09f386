"""The uplift model as it is logged and served: raw feature rows in, one predicted uplift per
promotion arm out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from flashsale_ml.features.columns import SALE_FEATURES, USER_FEATURES
from flashsale_ml.features.encoding import CATEGORY_VOCAB, category_codes

# The learner's inputs: user features as of the campaign start, the campaign's promotion
# attributes (the sale features), and the user's segment codes. The arm is the treatment,
# never a feature.
CATEGORICAL = ("region", "device_type")
FEATURES: tuple[str, ...] = (*USER_FEATURES, *SALE_FEATURES, *CATEGORICAL)


def feature_matrix(frame: pd.DataFrame) -> np.ndarray:
    """float64 matrix of :data:`FEATURES` (categoricals as stable codes, unknown -1; numeric
    nulls NaN, which LightGBM treats as missing).

    Raises:
        ValueError: a feature column is missing.
    """
    missing = [c for c in FEATURES if c not in frame.columns]
    if missing:
        raise ValueError(f"uplift features: missing column(s) {missing}")
    matrix = np.empty((len(frame), len(FEATURES)), dtype="float64")
    for position, column in enumerate(FEATURES):
        if column in CATEGORICAL:
            codes = category_codes(
                pa.array(frame[column], from_pandas=True), CATEGORY_VOCAB[column]
            )
            matrix[:, position] = codes
        else:
            matrix[:, position] = frame[column].to_numpy(dtype="float64", na_value=np.nan)
    return matrix


# What the logged pyfunc's ``output`` parameter selects (the first is the default).
OUTPUTS = ("purchase", "margin")


@dataclass
class UpliftScorer:
    """A fitted meta-learner and the arms its columns stand for.

    ``predict(frame)`` returns the predicted purchase uplift of each promotion arm against
    control (n × arms, in :attr:`arms` order); ``predict_margin(frame)`` (or
    ``predict(frame, output="margin")``) the incremental margin, where evaluation labels were
    there to learn it. It is what MLflow stores (as a pyfunc) and serves: the pyfunc's
    ``output`` parameter (:data:`OUTPUTS`, default ``"purchase"``) picks between the two, e.g.
    ``model.predict(frame, params={"output": "margin"})``.
    """

    learner: Any
    arms: tuple[str, ...]
    # Incremental margin per arm, learned from evaluation's labels (None when the fitted
    # campaigns were not evaluated).
    margin_learner: Any = None

    def predict(self, frame: pd.DataFrame, output: str = "purchase") -> np.ndarray:
        """Purchase uplift or incremental margin of each arm against control.

        Args:
            frame: rows with the uplift kind's feature columns (:data:`FEATURES`).
            output: ``"purchase"`` (the incremental purchase probability) or ``"margin"``
                (:meth:`predict_margin`); the logged pyfunc's ``output`` parameter.

        Returns:
            An n × arms array, columns in :attr:`arms` order.

        Raises:
            ValueError: an unknown ``output``, or ``"margin"`` from a model without a margin
                model.
        """
        if output == "margin":
            return self.predict_margin(frame)
        if output != "purchase":
            raise ValueError(f"output must be one of {list(OUTPUTS)}, got {output!r}")
        return np.asarray(self.learner.predict_uplift(feature_matrix(frame)), dtype=float)

    def predict_margin(self, frame: pd.DataFrame) -> np.ndarray:
        """Incremental margin per arm (n × arms).

        Raises:
            ValueError: the model was trained without evaluation labels.
        """
        if self.margin_learner is None:
            raise ValueError(
                "this uplift model has no margin model: its training campaigns had no "
                "campaign_labels (run flashsale evaluate on them, then retrain)"
            )
        return np.asarray(self.margin_learner.predict_uplift(feature_matrix(frame)), dtype=float)

    def uplift_of(self, frame: pd.DataFrame, arm_column: str = "scored_arm") -> np.ndarray:
        """One uplift per row: of the arm named in ``arm_column`` where the frame has it (the
        promotion holdout), else of the best arm."""
        return select_arm(self.predict(frame), self.arms, frame, arm_column)


def select_arm(
    uplift: np.ndarray, arms: tuple[str, ...], frame: pd.DataFrame, arm_column: str = "scored_arm"
) -> np.ndarray:
    """Each row's uplift for the arm in ``arm_column``, or the best arm's where the frame has
    no such column. An arm the model was not trained on gets 0: no evidence that it moves
    anyone, so a plan never prefers it and a promotion holdout ranks its rows as random
    targeting would (NaN used to crash the Qini of a holdout with a new arm)."""
    uplift = np.asarray(uplift, dtype=float).reshape(len(frame), len(arms))
    if arm_column not in frame.columns:
        return uplift.max(axis=1)
    index = {arm: i for i, arm in enumerate(arms)}
    wanted = np.array([index.get(str(a), -1) for a in frame[arm_column]], dtype=np.int64)
    out = np.zeros(len(frame))
    known = wanted >= 0
    out[known] = uplift[np.flatnonzero(known), wanted[known]]
    return out
