"""Real public datasets (../shared/data) converted into the contract."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from flashsale_ml.contract import check_schema
from flashsale_ml.datasets import Snapshot
from flashsale_ml.loaders import (
    HILLSTROM_CAMPAIGN,
    ingest,
    load_hillstrom,
    load_online_retail,
    load_online_shoppers,
    retail_category,
)
from flashsale_ml.storage import ObjectStore
from flashsale_ml.validation import validate_snapshot
from tests.conftest import shared_data

# Per-arm figures published with the dataset (plain means of the file; see shared/data/README).
HILLSTROM_REFERENCE = {
    "mens_email": (21_307, 0.1828, 0.01253, 1.4226),
    "womens_email": (21_387, 0.1514, 0.00884, 1.0772),
    "control": (21_306, 0.1062, 0.00573, 0.6528),
}


@pytest.fixture(scope="module", autouse=True)
def _secret_pseudonym_key() -> Iterator[str]:
    """Real data needs a secret key (the public development key is refused), set as an
    operator sets it; module-scoped so that the module-scoped loads below see it."""
    key = secrets.token_urlsafe(32)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FLASHSALE_PSEUDONYM_KEY", key)
        yield key


@pytest.fixture(scope="module")
def hillstrom():
    return load_hillstrom(shared_data("hillstrom.csv"))


@pytest.fixture(scope="module")
def retail():
    return load_online_retail(shared_data("online_retail.parquet"))


def _assert_conforms(tables: dict[str, pa.Table]) -> None:
    from flashsale_ml.contract import CONTRACT

    for name, table in tables.items():
        if name in CONTRACT:
            assert check_schema(name, table.schema) == [], name


def test_hillstrom_reproduces_the_published_arm_figures(hillstrom) -> None:
    _assert_conforms(hillstrom.tables)
    arms = hillstrom.tables["assignments"].to_pandas()
    outcomes = hillstrom.tables["campaign_outcomes"].to_pandas()
    joined = arms.merge(outcomes, on=["campaign_id", "user_id"], validate="one_to_one")
    per_arm = joined.groupby("arm").agg(
        n=("user_id", "size"),
        visit=("visit", "mean"),
        conversion=("conversion", "mean"),
        spend=("spend", "mean"),
    )
    for arm, (n, visit, conversion, spend) in HILLSTROM_REFERENCE.items():
        row = per_arm.loc[arm]
        assert row["n"] == n
        assert round(row["visit"], 4) == visit
        assert round(row["conversion"], 5) == conversion
        assert round(row["spend"], 4) == spend
    assert set(hillstrom.tables["campaigns"].column("campaign_id").to_pylist()) == {
        HILLSTROM_CAMPAIGN
    }
    assert len(hillstrom.tables["users"].column("user_id").unique()) == 64_000


def test_online_retail_orders_items_and_traffic(retail) -> None:
    _assert_conforms(retail.tables)
    orders = retail.tables["orders"].to_pandas()
    assert set(orders["status"]) == {"completed", "cancelled"}
    assert (orders["qty"] > 0).all() and (orders["unit_price"] > 0).all()
    assert orders["order_id"].is_unique
    users = set(retail.tables["users"].column("user_id").to_pylist())
    items = set(retail.tables["items"].column("item_id").to_pylist())
    assert set(orders["user_id"]) <= users and set(orders["item_id"]) <= items
    titles = retail.tables["items"].column("title").to_pylist()
    assert "WHITE HANGING HEART T-LIGHT HOLDER" in titles

    traffic = retail.tables["traffic"].to_pandas()
    steps = traffic["ts"].diff().dropna().unique()
    assert list(steps) == [pd.Timedelta(minutes=1)]
    assert traffic["orders"].sum() > 18_000  # distinct non-cancelled invoices in the period
    report = retail.report
    assert report["source_lines"] == 541_909
    assert report["dropped_non_product"] > 0 and report["dropped_non_positive_price"] > 0


def test_online_retail_converts_uk_local_time_to_utc(retail) -> None:
    orders = retail.tables["orders"].to_pandas()
    first = orders["ts"].min()
    # 2010-12-01 08:26 in London is 08:26 UTC (winter); a summer invoice shifts by an hour.
    assert first == pd.Timestamp(datetime(2010, 12, 1, 8, 26, tzinfo=UTC))
    summer = pd.read_parquet(shared_data("online_retail.parquet"), columns=["InvoiceDate"])
    local_summer = pd.to_datetime(summer["InvoiceDate"])
    local_summer = local_summer[(local_summer.dt.month == 7)].min()
    assert (
        orders["ts"] == pd.Timestamp(local_summer).tz_localize("UTC") - pd.Timedelta(hours=1)
    ).any()


def test_retail_category_keywords() -> None:
    assert retail_category("WHITE HANGING HEART T-LIGHT HOLDER") == "lighting"
    assert retail_category("JUMBO BAG RED RETROSPOT") == "bags"
    assert retail_category(None) == "other"


def test_online_shoppers_session_table() -> None:
    loaded = load_online_shoppers(shared_data("online_shoppers_intention.csv"))
    _assert_conforms(loaded.tables)
    table = loaded.tables["shopper_sessions"].to_pandas()
    assert len(table) == 12_330
    assert round(table["revenue"].mean(), 4) == 0.1547
    assert set(table["month"]) <= set(range(1, 13)) and 11 in set(table["month"])


def test_loaders_name_the_missing_column(tmp_path: Path) -> None:
    bad = tmp_path / "hillstrom.csv"
    pd.DataFrame({"recency": [1], "segment": ["No E-Mail"]}).to_csv(bad, index=False)
    with pytest.raises(
        ValueError, match=r"hillstrom\.csv: missing column\(s\) \['history_segment'"
    ):
        load_hillstrom(bad)
    shoppers = tmp_path / "shoppers.csv"
    shoppers.write_text("Month;Revenue\nSmarch;TRUE\n")
    with pytest.raises(ValueError, match="missing column"):
        load_online_shoppers(shoppers)


@pytest.mark.parametrize(
    ("dataset", "file"),
    [
        ("hillstrom", "hillstrom.csv"),
        ("online-retail", "online_retail.parquet"),
        ("online-shoppers", "online_shoppers_intention.csv"),
    ],
)
def test_ingested_snapshots_pass_validation(
    dataset: str, file: str, local_lake: ObjectStore
) -> None:
    uri = ingest(dataset, shared_data(file), local_lake)
    with Snapshot(uri) as snap:
        assert snap.manifest.metadata["loader"] == dataset
    report = validate_snapshot(uri)
    assert report.success
    assert report.tables


def test_the_key_comes_from_the_environment_and_stays_out_of_the_snapshot(
    _secret_pseudonym_key: str, local_lake: ObjectStore, tmp_path: Path
) -> None:
    source = tmp_path / "hillstrom.csv"
    pd.read_csv(shared_data("hillstrom.csv")).head(50).to_csv(source, index=False)
    uri = ingest("hillstrom", source, local_lake)
    explicit = load_hillstrom(source, pseudonym_key=_secret_pseudonym_key)
    with Snapshot(uri) as snap:
        ids = snap.read_pandas("users")["user_id"].tolist()
    assert len(ids) == 50 and ids == explicit.tables["users"].column("user_id").to_pylist()
    stored = b"".join(local_lake.read_bytes(k) for k in local_lake.list(""))
    assert _secret_pseudonym_key.encode() not in stored
