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
import os
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from flashsale_ml.evaluation.settings import EvaluationConfig

# The development pseudonym key. It is public, so ids hashed with it are not pseudonymous.
DEV_PSEUDONYM_KEY = "flashsale-dev-key"
# Shorter keys can be brute-forced from one known (customer number, user id) pair.
MIN_PSEUDONYM_KEY_CHARS = 16
PSEUDONYM_KEY_HOWTO = (
    "set a secret key of at least 16 characters and keep it stable and private (user ids "
    "change with it), e.g.: export FLASHSALE_PSEUDONYM_KEY=$(python -c "
    '"import secrets; print(secrets.token_urlsafe(32))")'
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
    airflow_database_url: str = Field(
        default="postgresql+psycopg2://postgres@127.0.0.1:5432/postgres",
        description="PostgreSQL server for Airflow's metadata DB, as a SQLAlchemy URL of the "
        "maintenance database to connect to; the end-to-end tests create (and drop) one fresh "
        "database per test from it. The demo keeps its embedded SQLite.",
    )
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        description="Celery broker of a production-shaped deployment (CeleryExecutor); "
        "nothing requires it yet.",
    )

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

    # Threads: two LightGBM fits at once on 2 cores, each using every core, took 30-102 s
    # instead of 1-2 s. Each step gets its share of the cores instead.
    max_parallel_steps: int = Field(
        default=2,
        ge=1,
        description="How many steps may run at once on one machine (the training DAG runs "
        "its two training branches together; LocalExecutor parallelism); the default thread "
        "count divides the cores among them.",
    )
    threads: int | None = Field(
        default=None,
        ge=1,
        description="Threads per step for LightGBM, DuckDB and torch. Default: the machine's "
        "cores divided by max_parallel_steps (at least 1).",
    )

    # Champion/challenger gates per model kind, e.g.
    # FLASHSALE_PROMOTION__PROPENSITY__MIN_IMPROVEMENT=0.005; a kind that predates kinds
    # (propensity) also reads FLASHSALE_PROMOTION__MIN_IMPROVEMENT. Checked when the settings
    # are read; `gate_settings(kind)` gives one kind's typed thresholds.
    promotion: dict[str, Any] = Field(
        default_factory=dict,
        description="Promotion gate thresholds: <kind> -> <gate> -> value (see each kind's "
        "gates module); flat <gate> -> value keys configure the kind that accepts them.",
    )
    registry_lock_timeout_s: float = Field(default=120.0, gt=0)
    # Post-campaign evaluation, e.g. FLASHSALE_EVALUATION__CORRECTION=bh
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    # Interactive commands fail fast when MLflow does not answer; Airflow tasks keep MLflow's
    # own (longer) retry budget plus their task retries.
    cli_tracking_retries: int = Field(
        default=2, ge=0, description="MLflow request retries of a `flashsale` command"
    )
    cli_tracking_timeout_s: float = Field(
        default=10.0, gt=0, description="MLflow request timeout of a `flashsale` command"
    )
    scoring_alias_refresh_s: float = Field(
        default=30.0,
        ge=0,
        description="How long a scorer trusts the version an alias resolved to before asking "
        "the registry again (0: on every call); a promotion reaches scoring within this.",
    )

    # Pseudonymisation key for raw user ids (keyed BLAKE2b). The default is public (it is in
    # this repository): fine for simulated data in a local lake, refused for real data and for
    # s3:// lakes by check_pseudonym_key.
    pseudonym_key: str = Field(
        default=DEV_PSEUDONYM_KEY,
        repr=False,
        description="Secret key of the user-id pseudonyms; keep it stable and private.",
    )

    # Crash leftovers and damaged files in the lake.
    staging_max_age_hours: float = Field(
        default=24.0,
        gt=0,
        description="An uncommitted snapshot folder (a local .staging-<id>/, or parts without "
        "a manifest on S3) unchanged for this long belongs to a dead writer: the next write of "
        "the same dataset and `flashsale gc` remove it. Keep it above the longest pause "
        "between two part files of a running writer.",
    )
    verify_checksums: Literal["size", "full"] = Field(
        default="size",
        description="How reads check part files against their snapshot manifest: 'size' "
        "(a stat, catches truncation) or 'full' (SHA-256 of every byte, catches bit flips; "
        "about 1 GB/s). Validation always checks the full SHA-256.",
    )

    @field_validator("pseudonym_key")
    @classmethod
    def _check_pseudonym_key(cls, value: str) -> str:
        if not value.strip():
            # An empty key gives an unkeyed hash: anyone can rebuild the id mapping.
            raise ValueError(
                "FLASHSALE_PSEUDONYM_KEY is set but empty, which would make user ids an unkeyed "
                f"hash that anyone can reverse; {PSEUDONYM_KEY_HOWTO}"
            )
        return value

    @field_validator("storage_root")
    @classmethod
    def _check_storage_root(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("file://", "s3://")):
            raise ValueError(
                f"FLASHSALE_STORAGE_ROOT must start with file:// or s3://, got {value!r}"
            )
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _check_promotion_gates(self) -> Settings:
        # A typo or an out-of-range gate fails when the settings are read, not at promotion.
        from flashsale_ml.models import kind_names

        for kind in kind_names():
            self.gate_settings(kind)
        return self

    def gate_settings(self, kind: str) -> Any:
        """The typed promotion thresholds of ``kind`` (its pydantic gate settings).

        Raises:
            ValueError: no such kind, or a value the kind's gate settings refuse (an unknown
                gate name included).
        """
        from flashsale_ml.models import get_kind, kind_names

        model_kind = get_kind(kind)
        sections = set(kind_names())
        flat = {k: v for k, v in self.promotion.items() if k not in sections}
        own = self.promotion.get(kind) or {}
        if not isinstance(own, dict):
            raise ValueError(f"FLASHSALE_PROMOTION__{kind.upper()} must be a section of gates")
        values = {**(flat if model_kind.flat_gate_settings else {}), **own}
        return model_kind.gate_settings.model_validate(values)

    @cached_property
    def resolved_home(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def compute_threads(self) -> int:
        """Threads one step may use (LightGBM ``num_threads``, DuckDB ``threads``, torch)."""
        if self.threads is not None:
            return self.threads
        return max(1, (os.cpu_count() or 1) // self.max_parallel_steps)

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


def check_pseudonym_key(
    key: Settings | str | None,
    *,
    purpose: Literal["real-data", "simulation"],
    lake_uri: str | None = None,
) -> str:
    """Return the pseudonym key if it may protect ``purpose`` data written to ``lake_uri``.

    Any use needs a non-empty key. Real data, and any data written to an ``s3://`` lake (a
    shared store), need a secret one: not the public :data:`DEV_PSEUDONYM_KEY`, and at least
    :data:`MIN_PSEUDONYM_KEY_CHARS` characters. With the development key, every user id of an
    ingested dataset was re-identified in 0.01 s by hashing candidate customer numbers.

    Args:
        key: the key, or settings to take it from (``None``: :func:`get_settings`).
        purpose: ``"real-data"`` (ingesting a real dataset) or ``"simulation"``.
        lake_uri: where the pseudonymised data will be written.

    Raises:
        DataError: the key may not be used here; the message says how to set one.
    """
    from flashsale_ml.errors import DataError

    if purpose not in ("real-data", "simulation"):
        raise ValueError(f"purpose must be 'real-data' or 'simulation', got {purpose!r}")
    if key is None:
        key = get_settings()
    if isinstance(key, Settings):
        key = key.pseudonym_key
    if not key.strip():
        raise DataError(f"FLASHSALE_PSEUDONYM_KEY is empty; {PSEUDONYM_KEY_HOWTO}")
    shared = lake_uri is not None and lake_uri.startswith("s3://")
    if purpose == "simulation" and not shared:
        return key
    what = "real data" if purpose == "real-data" else f"data in the shared lake {lake_uri}"
    if key == DEV_PSEUDONYM_KEY:
        raise DataError(
            f"FLASHSALE_PSEUDONYM_KEY is the public development key {DEV_PSEUDONYM_KEY!r}, "
            f"which may not pseudonymise {what}: anyone with this repository can re-identify "
            f"every user id by hashing candidate customer numbers; {PSEUDONYM_KEY_HOWTO}"
        )
    if len(key) < MIN_PSEUDONYM_KEY_CHARS:
        raise DataError(
            f"FLASHSALE_PSEUDONYM_KEY has {len(key)} characters, too short to pseudonymise "
            f"{what} (a short key can be guessed from one known customer number); "
            f"{PSEUDONYM_KEY_HOWTO}"
        )
    return key


def get_settings(**overrides: Any) -> Settings:
    """Read settings from the environment now (never cached at import time)."""
    return Settings(**overrides)
