"""Score with registered models, loaded by alias only (``models:/flashsale-propensity@champion``).

A long-running scorer resolves the alias on every call (one small registry request) and keeps
the model of the version it last loaded, so a promotion or a rollback reaches scoring without a
code change or a restart, and an unchanged champion is not downloaded again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from flashsale_ml.config import Settings
from flashsale_ml.registry import CHAMPION, RegistryError, alias_version, resolve_name
from flashsale_ml.tracking import configure

log = logging.getLogger(__name__)

Predictor = Callable[[pd.DataFrame], np.ndarray]


def load_predictor(model_uri: str) -> Predictor:
    """A function from the raw propensity feature frame to purchase probabilities."""
    import mlflow.pyfunc

    from flashsale_ml.training.propensity_lgbm import encode_features

    model = mlflow.pyfunc.load_model(model_uri)

    def predict(frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(model.predict(encode_features(frame)), dtype=float).reshape(-1)

    return predict


@dataclass(frozen=True)
class Scores:
    model_name: str
    version: str
    alias: str
    scores: np.ndarray


class AliasScorer:
    """Scores frames with whatever version an alias points to right now.

    Args:
        model: registered model name or kind (``propensity``).
        settings: where the registry is.
        alias: ``champion`` (default) or ``challenger`` for shadow scoring.
    """

    def __init__(self, model: str, settings: Settings, alias: str = CHAMPION) -> None:
        self.name = resolve_name(model, settings)
        self.alias = alias
        self.settings = settings
        self._loaded: dict[str, Predictor] = {}

    def current_version(self) -> str:
        """The version the alias points to now.

        Raises:
            RegistryError: the alias is not set (e.g. no model of this kind was promoted yet).
        """
        import mlflow

        configure(self.settings)
        version = alias_version(mlflow.MlflowClient(), self.name, self.alias)
        if version is None:
            raise RegistryError(f"{self.name} has no {self.alias!r} alias: nothing to score with")
        return version

    def score(self, frame: pd.DataFrame) -> Scores:
        version = self.current_version()
        if version not in self._loaded:
            log.info("loading %s@%s (version %s)", self.name, self.alias, version)
            # Load through the alias-resolved version so the cache key and the model agree
            # even if the alias moves while we download.
            self._loaded = {version: load_predictor(f"models:/{self.name}/{version}")}
        return Scores(self.name, version, self.alias, self._loaded[version](frame))
