"""Propensity: who will buy during a sale. Flavors ``lgbm`` (default) and ``dcn``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flashsale_ml.models.propensity.kind import KIND

if TYPE_CHECKING:
    from flashsale_ml.config import Settings
    from flashsale_ml.training.runner import TrainingResult

__all__ = ["KIND", "train_dcn", "train_lgbm"]


def train_lgbm(
    features_uri: str, settings: Settings, parent_run_id: str | None = None, config: Any = None
) -> TrainingResult:
    """Train the LightGBM flavor through the generic runner (``config``: an ``LgbmConfig``)."""
    from flashsale_ml.training.runner import train_model

    options = {"config": config} if config is not None else {}
    return train_model(KIND.name, features_uri, settings, "lgbm", parent_run_id, options)


def train_dcn(
    features_uri: str,
    settings: Settings,
    parent_run_id: str | None = None,
    config: Any = None,
    launch: Any = None,
    extra_env: dict[str, str] | None = None,
    resume_run_id: str | None = None,
) -> dict[str, Any]:
    """Train the DCN-v2 flavor with DDP through the generic runner; returns its summary.

    ``resume_run_id`` continues a failed run from its checkpoints.
    """
    from flashsale_ml.training.runner import train_model

    options = {
        k: v
        for k, v in {"config": config, "launch": launch, "extra_env": extra_env}.items()
        if v is not None
    }
    return train_model(
        KIND.name, features_uri, settings, "dcn", parent_run_id, options, resume_run_id
    ).summary()
