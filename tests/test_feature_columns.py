"""Feature column and table names load without the feature SQL's heavy dependencies."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_column_names_import_without_duckdb_or_arrow() -> None:
    """Model code and scoring need the names, not DuckDB (nor Arrow, which it would pull in)."""
    code = (
        "import sys\n"
        "import flashsale_ml.features.columns as columns\n"
        "assert columns.LABEL == 'label_purchase', columns.LABEL\n"
        "heavy = sorted(m for m in ('duckdb', 'pyarrow') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr


def test_the_sql_module_re_exports_the_same_names() -> None:
    from flashsale_ml.features import columns, sql

    for name in (
        "USER_FEATURES",
        "CATEGORICAL_FEATURES",
        "SALE_FEATURES",
        "LABEL",
        "REVENUE_LABEL",
    ):
        assert getattr(sql, name) is getattr(columns, name), name


def test_a_feature_snapshot_has_the_named_tables(small_world, tmp_path: Path) -> None:
    from flashsale_ml.datasets import Snapshot
    from flashsale_ml.features import build_features
    from flashsale_ml.features.columns import (
        CATEGORICAL_FEATURES,
        ITEMS_TABLE,
        LABEL,
        PROPENSITY_TABLE,
        REVENUE_LABEL,
        SALE_FEATURES,
        TRAFFIC_TABLE,
        USER_CATEGORY_TABLE,
        USER_FEATURES,
    )
    from flashsale_ml.storage import open_store

    lake = open_store(tmp_path.as_uri())
    with Snapshot(small_world.raw_uri) as raw:
        first_sale = min(raw.read_pandas("campaigns")["start_ts"]).to_pydatetime()
    with Snapshot(build_features(small_world.raw_uri, lake, as_of=first_sale)) as features:
        assert sorted(features.tables) == sorted(
            (PROPENSITY_TABLE, ITEMS_TABLE, USER_CATEGORY_TABLE, TRAFFIC_TABLE)
        )
        columns = features.read_table(PROPENSITY_TABLE).column_names
    named = (*USER_FEATURES, *CATEGORICAL_FEATURES, *SALE_FEATURES, LABEL, REVENUE_LABEL)
    assert set(named) <= set(columns), sorted(set(named) - set(columns))
