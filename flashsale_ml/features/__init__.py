"""Point-in-time feature builds (DuckDB over Parquet)."""

from flashsale_ml.features.pipeline import build_features

__all__ = ["build_features"]
