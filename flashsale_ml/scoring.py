"""Score with registered models, loaded by alias (``models:/flashsale-propensity@champion``).

Each model is loaded with its own flavor's predictor (its kind and flavor are lineage tags of
the version), so any kind and flavor scores the same way. A long-running :class:`AliasScorer`
resolves the alias at most once per refresh interval (one registry request that also returns
the version's tags) and keeps the model of the version it last loaded, so a promotion or a
rollback reaches scoring within one interval, without a code change or a restart, and an
unchanged champion is not downloaded again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flashsale_ml.config import Settings
from flashsale_ml.models import get_flavor
from flashsale_ml.models.base import Predictor
from flashsale_ml.registry import CHAMPION, RegistryError, alias_target, model_tags, resolve_name
from flashsale_ml.training.runner import MODEL_FLAVOR_TAG, MODEL_KIND_TAG

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

log = logging.getLogger(__name__)


def predictor_for(model_uri: str, tags: dict[str, str]) -> Predictor:
    """The predictor of a logged model whose lineage ``tags`` name its kind and flavor.

    Raises:
        RegistryError: the tags name no kind.
    """
    kind = tags.get(MODEL_KIND_TAG)
    if not kind:
        raise RegistryError(f"{model_uri} records no model kind ({MODEL_KIND_TAG})")
    return get_flavor(kind, tags.get(MODEL_FLAVOR_TAG)).predictor(model_uri)


def load_predictor(
    model_uri: str, settings: Settings | None = None, kind: str | None = None
) -> Predictor:
    """A function from a kind's raw feature frame to its predictions.

    Args:
        model_uri: ``models:/<name>/<version>``, ``models:/<name>@<alias>``, a logged model
            (``models:/m-...``), ``runs:/...``, or a local model folder (then ``kind`` is
            needed, and its default flavor is assumed).
        settings: where the registry is (default: MLflow's current tracking URI).
        kind: the kind, for a URI whose lineage cannot be looked up.
    """
    tags = model_tags(model_uri, settings)
    if not tags.get(MODEL_KIND_TAG):
        tags = {**tags, **_tags_from_library(model_uri, kind)}
    return predictor_for(model_uri, tags)


def _tags_from_library(model_uri: str, kind: str | None) -> dict[str, str]:
    """Kind and flavor of a model without lineage (a local folder), from the library MLflow
    saved it with, when exactly one flavor (of ``kind``, if given) uses that library."""
    from flashsale_ml.models import flavors_logged_with
    from flashsale_ml.tracking import model_libraries

    candidates = [
        pair
        for library in model_libraries(model_uri)
        for pair in flavors_logged_with(library)
        if kind is None or pair[0] == kind
    ]
    if len(candidates) != 1:
        raise RegistryError(
            f"{model_uri} records no model kind and its library does not tell which "
            f"(candidates: {candidates or 'none'}); pass kind="
        )
    kind_name, flavor = candidates[0]
    return {MODEL_KIND_TAG: kind_name, MODEL_FLAVOR_TAG: flavor}


@dataclass(frozen=True)
class Scores:
    model_name: str
    version: str
    alias: str
    scores: np.ndarray


class AliasScorer:
    """Scores frames with whatever version an alias points to, re-resolved at most once per
    ``refresh_interval_s``.

    Args:
        model: registered model name or kind (``propensity``).
        settings: where the registry is.
        alias: ``champion`` (default) or ``challenger`` for shadow scoring.
        refresh_interval_s: how long a resolved alias is trusted (default: the
            ``scoring_alias_refresh_s`` setting); 0 resolves on every call.
        clock: monotonic seconds (tests pass a fake one).
    """

    def __init__(
        self,
        model: str,
        settings: Settings,
        alias: str = CHAMPION,
        refresh_interval_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = resolve_name(model, settings)
        self.alias = alias
        self.settings = settings
        self.refresh_interval_s = (
            settings.scoring_alias_refresh_s if refresh_interval_s is None else refresh_interval_s
        )
        self._clock = clock
        self._resolved_at: float | None = None
        self._version: str | None = None
        self._loaded: dict[str, Predictor] = {}
        self.resolutions = 0  # registry requests made, for the curious and the tests
        self._lock = threading.Lock()

    def current_version(self) -> str:
        """The version the alias points to (resolved at most once per refresh interval).

        Raises:
            RegistryError: the alias is not set (e.g. no model of this kind was promoted yet).
        """
        return self._current()[0]

    def _current(self) -> tuple[str, Predictor]:
        # One lock: threads sharing a scorer never see a version whose model another thread
        # just replaced, and a new version is downloaded once, not once per thread.
        with self._lock:
            return self._resolve()

    def _resolve(self) -> tuple[str, Predictor]:
        now = self._clock()
        fresh = self._resolved_at is not None and now - self._resolved_at < self.refresh_interval_s
        if fresh and self._version is not None:
            return self._version, self._loaded[self._version]
        target = alias_target(self.settings, self.name, self.alias)
        self.resolutions += 1
        if target is None:
            raise RegistryError(f"{self.name} has no {self.alias!r} alias: nothing to score with")
        version, tags = target
        if version not in self._loaded:
            log.info("loading %s@%s (version %s)", self.name, self.alias, version)
            # Load through the alias-resolved version so the cache key and the model agree
            # even if the alias moves while we download.
            self._loaded = {version: predictor_for(f"models:/{self.name}/{version}", tags)}
        self._version, self._resolved_at = version, now
        return version, self._loaded[version]

    def score(self, frame: pd.DataFrame) -> Scores:
        version, predict = self._current()
        return Scores(self.name, version, self.alias, predict(frame))
