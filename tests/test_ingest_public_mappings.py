"""The public datasets as mapping files: the mapping ingest reproduces the loaders on real data.

Hillstrom (``flashsale_ml/ingest/mappings/hillstrom.yaml`` + the ``hillstrom`` transform) is
compared with :func:`flashsale_ml.loaders.load_hillstrom` table by table, under the same
pseudonym key: ``users``, ``campaigns``, ``assignments`` and ``campaign_outcomes`` are equal
value for value (same rows, same user ids, same imputed signup times, same arms and
outcomes). The one difference: the loader also returns ``hillstrom_customers`` (the
pre-treatment covariates for uplift models), which is no contract table, so no mapping can
write it; the mapping ingest writes the four contract tables only, and validates them (the
loader path does not).

Online Retail (``online_retail.yaml`` + the ``online_retail`` transform) is compared with
:func:`flashsale_ml.loaders.load_online_retail` the same way: ``users``, ``items``, ``orders``
and ``traffic`` are equal value for value on the real file (same user ids, same stable item
ids, same order ids, same UTC times, same per-minute counts), and on a small synthetic file
with the edge cases the real file lacks (times that do not exist or exist twice in
Europe/London, tied modes, codes only ever cancelled, zero quantities). No difference.

Online Shoppers has no packaged mapping (see docs/ingest.md).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from flashsale_ml.contract import CONTRACT, pseudonymize, stable_ids
from flashsale_ml.datasets import Snapshot
from flashsale_ml.ingest import MappingError, parse_mapping
from flashsale_ml.ingest.mappings import public_mapping, public_mappings
from flashsale_ml.ingest.run import run_ingest
from flashsale_ml.ingest.transforms import TRANSFORMS
from flashsale_ml.loaders import (
    RETAIL_NON_PRODUCT_CODES,
    load_hillstrom,
    load_online_retail,
)
from flashsale_ml.storage import open_store
from tests.conftest import shared_data

HILLSTROM_TABLES = ("users", "campaigns", "assignments", "campaign_outcomes")
RETAIL_TABLES = ("users", "items", "orders", "traffic")
# Per-arm n, visit rate, conversion rate, mean spend published with the dataset.
HILLSTROM_REFERENCE = {
    "mens_email": (21_307, 0.1828, 0.01253, 1.4226),
    "womens_email": (21_387, 0.1514, 0.00884, 1.0772),
    "control": (21_306, 0.1062, 0.00573, 0.6528),
}


@pytest.fixture(scope="module")
def key() -> Iterator[str]:
    value = secrets.token_urlsafe(32)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FLASHSALE_PSEUDONYM_KEY", value)
        yield value


@pytest.fixture(scope="module")
def hillstrom(key: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    path = shared_data("hillstrom.csv")
    lake = open_store(tmp_path_factory.mktemp("lake").as_uri())
    started = time.perf_counter()
    result = run_ingest(public_mapping("hillstrom", path), lake, key)
    mapped_s = time.perf_counter() - started
    with Snapshot(result.uri) as snap:
        mapped = {t: snap.read_pandas(t) for t in snap.tables}
        metadata = snap.manifest.metadata
    started = time.perf_counter()
    loaded = load_hillstrom(path, pseudonym_key=key)
    loader_s = time.perf_counter() - started
    return {
        "path": path,
        "result": result,
        "mapped": mapped,
        "metadata": metadata,
        "loaded": {t: tb.to_pandas() for t, tb in loaded.tables.items()},
        "seconds": (mapped_s, loader_s),
    }


def _sorted(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    keys = list(CONTRACT[table].primary_key)
    return frame.sort_values(keys, kind="stable").reset_index(drop=True)


def test_packaged_mappings_are_listed_and_loadable() -> None:
    assert {"hillstrom", "online_retail"} <= set(public_mappings())
    retail = public_mapping("online_retail", "/data/online_retail.parquet")
    assert {tm.source.path for tm in retail.tables.values()} == {"/data/online_retail.parquet"}
    assert set(retail.tables) == set(RETAIL_TABLES)
    mapping = public_mapping("hillstrom", "/data/hillstrom.csv")
    assert {tm.source.path for tm in mapping.tables.values()} == {"/data/hillstrom.csv"}
    assert set(mapping.tables) == set(HILLSTROM_TABLES)
    with pytest.raises(KeyError, match="no packaged mapping"):
        public_mapping("no-such-dataset", "x.csv")


def test_hillstrom_mapping_ingest_equals_the_loader(hillstrom: dict) -> None:
    """Same tables, rows, user ids (keyed hash of ``hillstrom:<row>``) and values, table by
    table; only the loader's non-contract ``hillstrom_customers`` has no counterpart."""
    mapped, loaded = hillstrom["mapped"], hillstrom["loaded"]
    assert set(mapped) == set(HILLSTROM_TABLES)
    assert set(loaded) - set(mapped) == {"hillstrom_customers"}
    assert hillstrom["result"].rows == {t: len(loaded[t]) for t in HILLSTROM_TABLES}
    assert hillstrom["metadata"]["transforms"] == {
        "users": "hillstrom.customers",
        "campaigns": "hillstrom.campaign",
        "assignments": "hillstrom.customers",
        "campaign_outcomes": "hillstrom.customers",
    }
    for table in HILLSTROM_TABLES:
        left, right = _sorted(mapped[table], table), _sorted(loaded[table], table)
        assert list(left.columns) == list(right.columns), table
        pd.testing.assert_frame_equal(left, right, obj=table)


def test_hillstrom_mapping_keys_and_aggregates(hillstrom: dict, key: str) -> None:
    mapped = hillstrom["mapped"]
    n = 64_000
    expected_ids = set(pseudonymize((f"hillstrom:{i}" for i in range(n)), key).tolist())
    for table in ("users", "assignments", "campaign_outcomes"):
        assert len(mapped[table]) == n
        assert set(mapped[table]["user_id"]) == expected_ids, table
    # The user id of row i is the loader's: join the CSV back on it, row for row.
    source = pd.read_csv(hillstrom["path"])
    outcomes = mapped["campaign_outcomes"].set_index("user_id")
    ordered = outcomes.loc[pseudonymize((f"hillstrom:{i}" for i in range(n)), key)]
    assert ordered["spend"].tolist() == source["spend"].tolist()
    assert ordered["conversion"].tolist() == source["conversion"].tolist()
    # Per-arm figures as published.
    joined = mapped["assignments"].merge(mapped["campaign_outcomes"], on=["campaign_id", "user_id"])
    for arm, (count, visit, conversion, spend) in HILLSTROM_REFERENCE.items():
        rows = joined[joined["arm"] == arm]
        assert len(rows) == count
        assert rows["visit"].mean() == pytest.approx(visit, abs=5e-5)
        assert rows["conversion"].mean() == pytest.approx(conversion, abs=5e-6)
        assert rows["spend"].mean() == pytest.approx(spend, abs=5e-5)
    assert joined["spend"].sum() == pytest.approx(source["spend"].sum())


def test_transform_keys_are_checked(tmp_path: Path) -> None:
    base = {
        "dataset": "x",
        "tables": {
            "users": {
                "source": {"path": "h.csv", "transform": "hillstrom", "output": "customers"},
                "columns": {"user_id": "customer_index", "signup_ts": "t", "region": "zip_code"},
                "constants": {"device_type": "unknown"},
            }
        },
    }
    parse_mapping(base)  # fine as written
    source = base["tables"]["users"]["source"]
    for change, key, problem in (
        ({"transform": "nope"}, "transform", "unknown transform"),
        ({"output": "nope"}, "output", "has no output 'nope'"),
        ({"output": None}, "output", "name one of the outputs"),
        ({"transform": None}, "output", "'output' needs a 'transform'"),
    ):
        broken = {**source, **change}
        raw = {**base, "tables": {"users": {**base["tables"]["users"], "source": broken}}}
        with pytest.raises(MappingError, match=problem) as err:
            parse_mapping(raw, tmp_path / "m.yaml")
        assert err.value.key == f"tables.users.source.{key}"
    assert "hillstrom" in TRANSFORMS
    assert "online_retail" in TRANSFORMS


# --- UCI Online Retail -------------------------------------------------------------------------


def _mapped_and_loaded(path: Path, key: str, lake_dir: Path) -> dict:
    lake = open_store(lake_dir.as_uri())
    started = time.perf_counter()
    result = run_ingest(public_mapping("online_retail", path), lake, key)
    mapped_s = time.perf_counter() - started
    with Snapshot(result.uri) as snap:
        mapped = {t: snap.read_pandas(t) for t in snap.tables}
        metadata = snap.manifest.metadata
    loaded = load_online_retail(path, pseudonym_key=key)
    return {
        "path": path,
        "result": result,
        "mapped": mapped,
        "metadata": metadata,
        "loaded": {t: tb.to_pandas() for t, tb in loaded.tables.items()},
        "seconds": mapped_s,
    }


def _assert_same_tables(run: dict) -> None:
    mapped, loaded = run["mapped"], run["loaded"]
    assert set(mapped) == set(loaded) == set(RETAIL_TABLES)
    assert run["result"].rows == {t: len(loaded[t]) for t in RETAIL_TABLES}
    for table in RETAIL_TABLES:
        left, right = _sorted(mapped[table], table), _sorted(loaded[table], table)
        assert list(left.columns) == list(right.columns), table
        pd.testing.assert_frame_equal(left, right, obj=table)


@pytest.fixture(scope="module")
def retail(key: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    return _mapped_and_loaded(
        shared_data("online_retail.parquet"), key, tmp_path_factory.mktemp("retail-lake")
    )


def test_online_retail_mapping_ingest_equals_the_loader(retail: dict) -> None:
    """Users, items, orders and traffic equal value for value: user ids are the keyed hash of
    ``online-retail:<CustomerID>``, item ids ``stable_ids`` of the upper-cased StockCode, order
    ids the loader's 1-based line positions (by UTC time, InvoiceNo, StockCode, file order;
    with the gaps left by zero-quantity lines), traffic every minute of the period."""
    assert retail["metadata"]["transforms"] == {
        "users": "online_retail.customers",
        "items": "online_retail.items",
        "orders": "online_retail.lines",
        "traffic": "online_retail.traffic",
    }
    _assert_same_tables(retail)


def test_online_retail_mapping_keys_and_aggregates(retail: dict, key: str) -> None:
    mapped, loaded = retail["mapped"], retail["loaded"]
    source = pd.read_parquet(retail["path"])
    codes = source["StockCode"].astype(str).str.strip().str.upper()
    kept = source[~codes.isin(RETAIL_NON_PRODUCT_CODES) & (source["UnitPrice"] > 0)]
    kept_codes = kept["StockCode"].astype(str).str.strip().str.upper()
    customers = sorted({int(c) for c in kept["CustomerID"].dropna()})
    # Key sets, from the source directly.
    users = set(pseudonymize((f"online-retail:{c}" for c in customers), key).tolist())
    assert set(mapped["users"]["user_id"]) == users
    assert set(mapped["orders"]["user_id"]) == users
    items = set(stable_ids(sorted(set(kept_codes)), "online-retail-stock-code").tolist())
    assert set(mapped["items"]["item_id"]) == items
    assert set(mapped["orders"]["item_id"]) <= items
    assert set(mapped["orders"]["order_id"]) == set(loaded["orders"]["order_id"])
    # Aggregates.
    m, ld = mapped["orders"], loaded["orders"]
    qty = m.groupby("status")["qty"].sum().to_dict()
    assert qty == ld.groupby("status")["qty"].sum().to_dict()
    known = kept[kept["CustomerID"].notna()]
    cancelled = known["InvoiceNo"].astype(str).str.startswith("C")
    assert qty == {
        "cancelled": int(known.loc[cancelled, "Quantity"].abs().sum()),
        "completed": int(known.loc[~cancelled, "Quantity"].abs().sum()),
    }
    revenue = (m["qty"] * m["unit_price"]).sum()
    assert revenue == pytest.approx((ld["qty"] * ld["unit_price"]).sum(), rel=1e-12)
    traffic = mapped["traffic"][["requests", "sessions", "orders"]].sum().to_dict()
    assert traffic == loaded["traffic"][["requests", "sessions", "orders"]].sum().to_dict()
    assert traffic["requests"] == len(kept)  # every kept line, guests included
    per_minute = mapped["traffic"]["ts"].sort_values()
    assert (per_minute.diff().dropna() == pd.Timedelta(minutes=1)).all()


def test_online_retail_mapping_edge_cases_equal_the_loader(key: str, tmp_path: Path) -> None:
    """What the real file lacks: a time that does not exist in Europe/London (shifted forward)
    and one that exists twice (dropped, in traffic too), tied most frequent descriptions and
    countries (the smallest wins), a code only ever cancelled (median of all its prices), a
    code without description (empty title), zero quantities (order id left unused), lower-case
    codes with spaces, non-product codes, prices <= 0 and guests."""
    rows = [
        # invoice, code, description, qty, local time, price, customer, country
        ("1", "a1 ", "RED MUG", 2, "2011-03-27 00:59", 1.0, 10.0, "France"),
        ("1", "A1", "BLUE MUG", 1, "2011-03-27 01:30", 3.0, 10.0, "Spain"),  # nonexistent
        ("2", "A1", "BLUE MUG", 1, "2011-03-27 01:30", 2.0, None, "Spain"),  # guest
        ("2", "A1", "RED MUG", 0, "2011-03-27 02:10", 2.0, 11.0, "Spain"),  # qty 0
        ("C3", "B2", "XMAS TREE", -4, "2011-03-27 03:00", 5.0, 11.0, "Spain"),  # cancelled only
        ("C3", "B2", "XMAS TREE", -1, "2011-03-27 03:00", 7.0, 11.0, "Spain"),
        ("4", "C3", None, 5, "2011-10-30 01:30", 1.5, 12.0, "Spain"),  # ambiguous: dropped
        ("5", "C3", None, 5, "2011-10-30 02:30", 1.5, 12.0, "France"),
        ("5", "POST", "POSTAGE", 1, "2011-10-30 02:30", 18.0, 12.0, "France"),  # not a product
        ("5", "D4", "FREE THING", 1, "2011-10-30 02:30", 0.0, 12.0, "France"),  # price 0
        ("6", "d4", "lamp", 3, "2011-10-30 02:31", 4.0, 10.0, "Spain"),
    ]
    frame = pd.DataFrame(
        rows,
        columns=[
            "InvoiceNo",
            "StockCode",
            "Description",
            "Quantity",
            "InvoiceDate",
            "UnitPrice",
            "CustomerID",
            "Country",
        ],
    ).assign(InvoiceDate=lambda f: pd.to_datetime(f["InvoiceDate"]))
    path = tmp_path / "online_retail.parquet"
    frame.to_parquet(path, index=False)
    run = _mapped_and_loaded(path, key, tmp_path / "lake")
    _assert_same_tables(run)
    orders = run["mapped"]["orders"]
    assert sorted(orders["order_id"]) == [1, 2, 4, 5, 6, 7]  # 3: the zero-quantity line
    assert len(run["mapped"]["users"]) == 3
