"""Point-in-time feature builds (DuckDB over Parquet)."""

from flashsale_ml.features.pipeline import build_propensity_features

__all__ = ["build_propensity_features"]
