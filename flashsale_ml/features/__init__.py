"""Point-in-time feature builds (DuckDB over Parquet).

Imports are lazy: :mod:`flashsale_ml.features.columns` (column and table names) loads without
DuckDB or Arrow; ``build_features`` loads the SQL on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flashsale_ml.features.snapshot import build_features

__all__ = ["build_features"]


def __getattr__(name: str) -> Any:
    if name == "build_features":
        from flashsale_ml.features.snapshot import build_features

        return build_features
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
