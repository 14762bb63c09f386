"""Bad input to ingestion: a public or empty pseudonym key, empty files, ingests of nothing, and
values that are not what their column needs. Each is refused with a message that names what to
fix, and nothing reaches the lake."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError

from flashsale_ml.config import (
    DEV_PSEUDONYM_KEY,
    MIN_PSEUDONYM_KEY_CHARS,
    Settings,
    check_pseudonym_key,
    get_settings,
)
from flashsale_ml.contract import pseudonymize
from flashsale_ml.datasets import Snapshot, list_snapshots
from flashsale_ml.errors import DataError
from flashsale_ml.loaders import (
    InputFileError,
    ingest,
    load_hillstrom,
    load_online_retail,
    load_online_shoppers,
)
from flashsale_ml.storage import ObjectStore, open_store
from tests.conftest import shared_data

HOWTO = "export FLASHSALE_PSEUDONYM_KEY=$(python -c"


@pytest.fixture
def secret_key(monkeypatch: pytest.MonkeyPatch) -> str:
    """A proper key, set the way an operator sets it."""
    key = secrets.token_urlsafe(32)
    monkeypatch.setenv("FLASHSALE_PSEUDONYM_KEY", key)
    return key


def _nothing_written(lake: ObjectStore) -> bool:
    return lake.list("") == []


# --- the pseudonym key --------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["", "   "])
def test_settings_refuse_an_empty_key(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    # An empty key is an unkeyed hash: anyone can rebuild the mapping. Compose passed "" when
    # the variable was unset, and it was accepted.
    monkeypatch.setenv("FLASHSALE_PSEUDONYM_KEY", value)
    with pytest.raises(ValidationError, match="FLASHSALE_PSEUDONYM_KEY is set but empty") as err:
        get_settings()
    assert HOWTO in str(err.value)
    with pytest.raises(ValidationError, match="FLASHSALE_PSEUDONYM_KEY"):
        Settings(pseudonym_key=value)


def test_the_key_policy() -> None:
    strong = secrets.token_urlsafe(32)
    short = "x" * (MIN_PSEUDONYM_KEY_CHARS - 1)
    # The simulator keeps the development key for a local lake ...
    assert check_pseudonym_key(DEV_PSEUDONYM_KEY, purpose="simulation") == DEV_PSEUDONYM_KEY
    assert (
        check_pseudonym_key(Settings(), purpose="simulation", lake_uri="file:///tmp/lake")
        == DEV_PSEUDONYM_KEY
    )
    # ... but not for real data, nor for a shared s3:// lake.
    for purpose, lake_uri in [
        ("real-data", None),
        ("real-data", "file:///l"),
        ("simulation", "s3://b/p"),
    ]:
        with pytest.raises(DataError, match="public development key") as err:
            check_pseudonym_key(DEV_PSEUDONYM_KEY, purpose=purpose, lake_uri=lake_uri)
        assert HOWTO in str(err.value)
        with pytest.raises(DataError, match=f"has {len(short)} characters, too short"):
            check_pseudonym_key(short, purpose=purpose, lake_uri=lake_uri)
        assert check_pseudonym_key(strong, purpose=purpose, lake_uri=lake_uri) == strong
    with pytest.raises(DataError, match="FLASHSALE_PSEUDONYM_KEY is empty"):
        check_pseudonym_key("", purpose="simulation")
    with pytest.raises(ValueError, match="purpose must be"):
        check_pseudonym_key(strong, purpose="training")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def retail_sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real Online Retail lines of 2,000 invoices: about 600 real customer numbers."""
    frame = pd.read_parquet(shared_data("online_retail.parquet"))
    invoices = frame["InvoiceNo"].drop_duplicates().iloc[:2_000]
    path = tmp_path_factory.mktemp("retail") / "online_retail_sample.parquet"
    frame[frame["InvoiceNo"].isin(invoices)].to_parquet(path, index=False)
    return path


def _reidentify(user_ids: set[int], key: str) -> dict[int, int]:
    """The attack of issue 22: hash every plausible customer number with a guessed key and
    look the hashes up among the lake's user ids. Returns {user_id: customer number}."""
    candidates = range(10_000, 20_000)  # Online Retail's customer numbers are 5 digits
    hashes = pseudonymize((f"online-retail:{c}" for c in candidates), key)
    return {int(h): c for h, c in zip(hashes, candidates, strict=True) if int(h) in user_ids}


def test_the_public_key_cannot_pseudonymise_real_data_so_the_attack_finds_nothing(
    retail_sample: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = open_store((tmp_path / "lake").as_uri())
    customers = pd.read_parquet(retail_sample)["CustomerID"].dropna().astype(int)

    # What the attack does to ids keyed with the public key: every customer, in a blink.
    leaked = set(
        pseudonymize((f"online-retail:{c}" for c in customers.unique()), DEV_PSEUDONYM_KEY)
    )
    start = time.perf_counter()
    assert len(_reidentify({int(i) for i in leaked}, DEV_PSEUDONYM_KEY)) == customers.nunique()
    assert time.perf_counter() - start < 5

    # So such ids never reach the lake: neither by default (the key is unset) ...
    monkeypatch.delenv("FLASHSALE_PSEUDONYM_KEY", raising=False)
    with pytest.raises(DataError, match="public development key") as err:
        ingest("online-retail", retail_sample, lake)
    assert HOWTO in str(err.value)
    # ... nor when passed explicitly, nor through the loader itself.
    with pytest.raises(DataError, match="public development key"):
        ingest("online-retail", retail_sample, lake, pseudonym_key=DEV_PSEUDONYM_KEY)
    with pytest.raises(DataError, match="public development key"):
        load_online_retail(retail_sample, pseudonym_key=DEV_PSEUDONYM_KEY)
    with pytest.raises(DataError, match="public development key"):
        load_hillstrom(shared_data("hillstrom.csv"), pseudonym_key=DEV_PSEUDONYM_KEY)
    assert _nothing_written(lake)

    # With a secret key, the same attack (public key, or no key at all) finds nobody.
    key = secrets.token_urlsafe(32)
    monkeypatch.setenv("FLASHSALE_PSEUDONYM_KEY", key)
    uri = ingest("online-retail", retail_sample, lake)
    with Snapshot(uri) as snap:
        user_ids = set(snap.read_pandas("users")["user_id"].tolist())
    assert len(user_ids) > 500
    assert _reidentify(user_ids, DEV_PSEUDONYM_KEY) == {}
    assert _reidentify(user_ids, "") == {}
    # Only the key's holder can map them back (the attack itself works).
    assert len(_reidentify(user_ids, key)) == len(user_ids)


def test_datasets_without_user_ids_need_no_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FLASHSALE_PSEUDONYM_KEY", raising=False)
    lake = open_store((tmp_path / "lake").as_uri())
    uri = ingest("online-shoppers", shared_data("online_shoppers_intention.csv"), lake)
    assert list_snapshots(lake, "online-shoppers") == [uri]


# --- empty input --------------------------------------------------------------------------------

LOADERS: dict[str, tuple[str, str]] = {
    # dataset: (real file, separator)
    "hillstrom": ("hillstrom.csv", ","),
    "online-shoppers": ("online_shoppers_intention.csv", ";"),
    "online-retail": ("online_retail.parquet", ","),
}


def _real_head(dataset: str, rows: int) -> pd.DataFrame:
    """The first ``rows`` rows of the real file, as text (so a cell can take any value)."""
    file, sep = LOADERS[dataset]
    path = shared_data(file)
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, sep=sep)
    return frame.head(rows).astype(object)


def _write_csv(frame: pd.DataFrame, dataset: str, path: Path) -> Path:
    frame.to_csv(path, sep=LOADERS[dataset][1], index=False)
    return path


@pytest.mark.parametrize("dataset", list(LOADERS))
@pytest.mark.parametrize(
    ("kind", "make", "message"),
    [
        ("zero bytes", lambda frame: "", r"the file is empty \(0 bytes\)"),
        ("blank lines", lambda frame: "\n\n\n", "the file has no header and no rows"),
        ("header only", lambda frame: None, "the file has a header but no data rows"),
    ],
)
def test_an_empty_file_is_refused_by_name_and_nothing_is_written(
    dataset: str,
    kind: str,
    make: Callable[[pd.DataFrame], str | None],
    message: str,
    tmp_path: Path,
    secret_key: str,
) -> None:
    path = tmp_path / f"{dataset}-{kind.replace(' ', '-')}.csv"
    head = _real_head(dataset, 3)
    text = make(head)
    if text is None:
        _write_csv(head.iloc[:0], dataset, path)
    else:
        path.write_text(text)
    lake = open_store((tmp_path / "lake").as_uri())
    with pytest.raises(InputFileError, match=message) as err:
        ingest(dataset, path, lake)
    assert str(err.value).startswith(f"{path}: ")
    assert "nothing to ingest" in str(err.value)
    assert isinstance(err.value, DataError)  # orchestrators fail it at once
    assert _nothing_written(lake)


def test_a_parquet_file_without_rows_is_refused(tmp_path: Path, secret_key: str) -> None:
    path = tmp_path / "online_retail.parquet"
    pd.read_parquet(shared_data("online_retail.parquet")).head(0).to_parquet(path)
    lake = open_store((tmp_path / "lake").as_uri())
    with pytest.raises(InputFileError, match=r"online_retail\.parquet: the file has no rows"):
        ingest("online-retail", path, lake)
    assert _nothing_written(lake)


def test_an_ingest_of_nothing_fails_before_writing(tmp_path: Path, secret_key: str) -> None:
    # Real lines, but only guests: items and traffic, yet not one user or order.
    guests = _real_head("online-retail", 60).assign(CustomerID=None)
    path = _write_csv(guests, "online-retail", tmp_path / "guests.csv")
    lake = open_store((tmp_path / "lake").as_uri())
    with pytest.raises(
        InputFileError, match=r"nothing to ingest: table\(s\) \['users', 'orders'\]"
    ):
        ingest("online-retail", path, lake)
    assert _nothing_written(lake)

    # Nothing but postage and fees: no product line at all.
    postage = _real_head("online-retail", 60).assign(StockCode="POST")
    path = _write_csv(postage, "online-retail", tmp_path / "postage.csv")
    with pytest.raises(InputFileError, match="no product line left to ingest: of 60 line"):
        ingest("online-retail", path, lake)
    assert _nothing_written(lake)


# --- values that do not fit their column --------------------------------------------------------

BAD_VALUES = [
    # dataset, column, {0-based data row: value}, rule, the rows as the message quotes them
    ("hillstrom", "recency", {2: "abc", 6: "x"}, "must be a whole number in every row",
     "row 3: 'abc', row 7: 'x'"),
    ("hillstrom", "visit", {4: "1.5"}, "must be a whole number in every row", "row 5: 1.5"),
    ("hillstrom", "spend", {3: "1,50"}, "must be a number in every row", "row 4: '1,50'"),
    ("hillstrom", "mens", {1: None}, "must be a whole number in every row", "row 2: <empty>"),
    ("hillstrom", "zip_code", {5: None}, "must have a value in every row", "row 6: <empty>"),
    ("hillstrom", "segment", {7: "Kids E-Mail"}, "must be one of ['No E-Mail'",
     "row 8: 'Kids E-Mail'"),
    ("online-shoppers", "Administrative", {2: "abc"}, "must be a whole number in every row",
     "row 3: 'abc'"),
    ("online-shoppers", "BounceRates", {0: "unknown", 9: "inf"}, "must be a number in every row",
     "row 1: 'unknown', row 10: 'inf'"),
    ("online-shoppers", "Revenue", {4: "maybe"}, "must be TRUE or FALSE", "row 5: 'maybe'"),
    ("online-shoppers", "Month", {3: "Smarch"}, "must be one of ['Jan'", "row 4: 'Smarch'"),
    ("online-retail", "Quantity", {4: "abc", 11: "12x"}, "must be a whole number in every row",
     "row 5: 'abc', row 12: '12x'"),
    ("online-retail", "UnitPrice", {8: "£2.55"}, "must be a number in every row",
     "row 9: '£2.55'"),
    ("online-retail", "CustomerID", {7: "C-17850"}, "must be a whole number where given",
     "row 8: 'C-17850'"),
    ("online-retail", "InvoiceDate", {1: "yesterday"}, "must be a date and time in every row",
     "row 2: 'yesterday'"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("dataset", "column", "bad", "rule", "quoted"),
    BAD_VALUES,
    ids=[f"{d}-{c}" for d, c, *_ in BAD_VALUES],
)
def test_a_bad_value_names_file_column_rule_and_first_rows(
    dataset: str,
    column: str,
    bad: dict[int, str | None],
    rule: str,
    quoted: str,
    tmp_path: Path,
    secret_key: str,
) -> None:
    frame = _real_head(dataset, 20)
    for row, value in bad.items():
        frame.loc[row, column] = value
    path = _write_csv(frame, dataset, tmp_path / f"{dataset}.csv")
    lake = open_store((tmp_path / "lake").as_uri())
    with pytest.raises(InputFileError) as err:
        ingest(dataset, path, lake)
    message = str(err.value)
    # Today: "invalid literal for int() with base 10: 'abc'", or a TypeError, or a silent cast.
    assert message.startswith(f"{path}, column {column!r}: {rule}"), message
    assert f": {len(bad)} of 20 row(s) break it; first offending rows: {quoted}" in message
    assert err.value.column == column and err.value.path == path
    assert isinstance(err.value, DataError)
    assert _nothing_written(lake)


def test_only_the_first_rows_are_quoted(tmp_path: Path, secret_key: str) -> None:
    frame = _real_head("hillstrom", 40)
    frame["history"] = [f"${i}" for i in range(40)]
    path = _write_csv(frame, "hillstrom", tmp_path / "hillstrom.csv")
    with pytest.raises(InputFileError) as err:
        load_hillstrom(path)
    assert "40 of 40 row(s) break it" in str(err.value)
    assert [n for n, _ in err.value.rows] == [1, 2, 3, 4, 5]


def test_a_wrong_separator_is_named(tmp_path: Path) -> None:
    frame = _real_head("online-shoppers", 5)
    path = tmp_path / "shoppers.csv"
    frame.to_csv(path, sep=",", index=False)
    with pytest.raises(InputFileError, match=r"is the file separated by ';'\?"):
        load_online_shoppers(path)


def test_a_missing_file_is_named(tmp_path: Path, secret_key: str) -> None:
    lake = open_store((tmp_path / "lake").as_uri())
    with pytest.raises(InputFileError, match=r"nope\.csv: no such file"):
        ingest("hillstrom", tmp_path / "nope.csv", lake)
    with pytest.raises(DataError, match="unknown dataset 'amazon'; choose from"):
        ingest("amazon", tmp_path / "nope.csv", lake)
    assert _nothing_written(lake)
