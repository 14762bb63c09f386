"""One typed settings object for the whole package, read from ``FLASHSALE_*`` variables.

Why one object: every task of every DAG, the CLI and the tests must agree on where data lives,
which MLflow server to talk to and which seed to use. Reading the environment in one place
makes a run reproducible from its logged config alone.

S3 is configured the standard AWS way, not here: the endpoint comes from ``AWS_ENDPOINT_URL``
and credentials from the default boto3 chain (env vars, profile, instance role).
"""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PrimaryMetric = Literal["auc", "log_loss", "brier"]


class PromotionGates(BaseModel):
    """Thresholds of the promotion decision (``FLASHSALE_PROMOTION__<FIELD>`` to override)."""

    model_config = {"frozen": True}

    primary_metric: PrimaryMetric = "auc"
    min_improvement: float = Field(
        default=0.001,
        ge=0.0,
        description="the challenger's point estimate must be better by at least this much, in "
        "the primary metric's units (AUC points, or nats of log loss); stops champions "
        "churning on noise-level gains",
    )
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    bootstrap_samples: int = Field(default=1000, ge=100)
    ece_tolerance: float = Field(
        default=0.01, ge=0.0, description="allowed increase of expected calibration error"
    )
    segment_auc_tolerance: float = Field(
        default=0.02, ge=0.0, description="allowed AUC drop within each value tier"
    )
    min_segment_rows: int = Field(
        default=200, ge=1, description="smaller tiers (or tiers with one class) are not gated"
    )
    min_auc: float = Field(default=0.6, ge=0.0, le=1.0)
    max_ece: float = Field(default=0.1, gt=0.0)
    max_calibration_ratio_error: float = Field(
        default=0.10,
        ge=0.0,
        lt=1.0,
        description="calibration in the large: the challenger's mean predicted probability may "
        "lie at most this fraction above the upper (or below the lower) end of the exact "
        "`confidence` interval of the holdout's observed purchase rate. ECE is absolute, so at "
        "a ~11 % base rate an ECE of 0.04 can hide a 35 % over-forecast of buyers, and stock and "
        "coupon budgets are planned from the summed probabilities. The interval absorbs sampling "
        "noise (a small holdout cannot fail a calibrated model); 0.10 leaves room for real "
        "sale-to-sale drift and still rejects 0.147 predicted vs 0.109 observed from ~800 rows",
    )
    min_holdout_rows: int = Field(default=500, ge=1)
    monotone_tolerance: float = Field(
        default=0.002,
        ge=0.0,
        description="how far the mean prediction may fall when a monotone feature rises (noise)",
    )


class Settings(BaseSettings):
    """Runtime configuration of flashsale-ml.

    Every field can be set as ``FLASHSALE_<FIELD>`` (case-insensitive), e.g.
    ``FLASHSALE_STORAGE_ROOT=s3://lake/flashsale`` or ``FLASHSALE_SEED=7``.
    """

    model_config = SettingsConfigDict(
        env_prefix="FLASHSALE_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    home: Path = Field(
        default=Path(".flashsale"),
        description="Project-local folder for the embedded defaults (lake, MLflow store).",
    )
    storage_root: str | None = Field(
        default=None,
        description="Where datasets, features and reports live: file:///abs/path or "
        "s3://bucket/prefix. Defaults to <home>/lake.",
    )
    mlflow_tracking_uri: str | None = Field(
        default=None,
        description="MLflow tracking server (http://host:port) or a sqlite:/// store. "
        "Defaults to a SQLite store under <home>.",
    )
    mlflow_experiment: str = "flashsale"
    registered_model_prefix: str = "flashsale"

    seed: int = Field(default=42, description="Root seed; every random draw derives from it.")

    # Simulator sizes used by the pipeline's generate step (the CLI can override them).
    sim_users: int = Field(default=5_000, ge=10)
    sim_days: int = Field(default=28, ge=7)
    sim_items: int | None = Field(default=None, ge=10)

    # Validation: which engine runs the suites, and the thresholds of the cross-table checks.
    validation_gx_max_rows: int = Field(
        default=2_000_000,
        ge=0,
        description="Tables up to this many rows run through GX's pandas engine (and appear in "
        "Data Docs); larger ones are evaluated in DuckDB from the same suites.",
    )
    validation_freshness_lag_hours: float = Field(default=24.0, gt=0)
    validation_srm_alpha: float = Field(default=0.001, gt=0, lt=1)
    validation_drift_psi_threshold: float = Field(
        default=0.25, gt=0, description="fail when any key feature's PSI exceeds this"
    )
    duckdb_memory_limit: str = "3GB"

    # Champion/challenger gates, e.g. FLASHSALE_PROMOTION__MIN_IMPROVEMENT=0.005
    promotion: PromotionGates = Field(default_factory=PromotionGates)
    registry_lock_timeout_s: float = Field(default=120.0, gt=0)

    # Pseudonymisation key for raw user ids (keyed BLAKE2b); set a secret one in production.
    pseudonym_key: str = Field(default="flashsale-dev-key", repr=False)

    @field_validator("storage_root")
    @classmethod
    def _check_storage_root(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("file://", "s3://")):
            raise ValueError(
                f"FLASHSALE_STORAGE_ROOT must start with file:// or s3://, got {value!r}"
            )
        return value.rstrip("/") if value else value

    @cached_property
    def resolved_home(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def lake_uri(self) -> str:
        return self.storage_root or (self.resolved_home / "lake").as_uri()

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.resolved_home / 'mlflow.db'}"

    @property
    def mlflow_artifact_root(self) -> str:
        """Artifact root for experiments created against a local (non-server) store."""
        return (self.resolved_home / "mlartifacts").as_uri()

    def registered_model_name(self, kind: str) -> str:
        return f"{self.registered_model_prefix}-{kind}"

    def public_dict(self) -> dict[str, Any]:
        """Config as logged for lineage: secrets are left out."""
        return json.loads(self.model_dump_json(exclude={"pseudonym_key"}))

    def config_hash(self) -> str:
        payload = json.dumps(self.public_dict(), sort_keys=True).encode()
        return hashlib.sha256(payload).hexdigest()[:16]


def get_settings(**overrides: Any) -> Settings:
    """Read settings from the environment now (never cached at import time)."""
    return Settings(**overrides)
