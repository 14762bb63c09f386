"""Validation: a corpus of bad inputs, each caught with its own message and leaving nothing
downstream; both engines (GX and DuckDB) agree on the suite rules; drift; Data Docs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from flashsale_ml.config import Settings
from flashsale_ml.datasets import Snapshot, SnapshotWriter, list_snapshots
from flashsale_ml.features import build_features
from flashsale_ml.storage import ObjectStore, open_store
from flashsale_ml.validation import DataValidationError, validate_snapshot
from flashsale_ml.validation.drift import psi

GX = Settings(validation_gx_max_rows=10**9)
DUCKDB = Settings(validation_gx_max_rows=0)
Frames = dict[str, pd.DataFrame]


@pytest.fixture(scope="module")
def base_frames(small_world) -> Frames:
    with Snapshot(small_world.raw_uri) as snap:
        return {t: snap.read_pandas(t) for t in snap.tables}


def _write(lake: ObjectStore, frames: Frames, metadata: dict | None = None) -> str:
    with SnapshotWriter(lake, "raw", metadata=metadata) as writer:
        for name, frame in frames.items():
            writer.write_table(name, pa.Table.from_pandas(frame, preserve_index=False))
    return writer.uri


def _pipeline_until_features(raw_uri: str, lake: ObjectStore, settings: Settings, **kwargs) -> str:
    """What the DAG does: validate, and only then build features."""
    validate_snapshot(raw_uri, settings=settings, **kwargs)
    return build_features(raw_uri, lake)


def _first_sale(frames: Frames) -> pd.Series:
    return frames["campaigns"].sort_values("start_ts").iloc[0]


# --- the corpus: (name, mutation, table/None, expectation, column, engine-parity) ---------------


def dup_event_id(f: Frames) -> None:
    f["events"].loc[f["events"].index[1], "event_id"] = f["events"]["event_id"].iloc[0]


def dup_order_id(f: Frames) -> None:
    f["orders"].loc[f["orders"].index[3], "order_id"] = f["orders"]["order_id"].iloc[2]


def null_user_in_events(f: Frames) -> None:
    f["events"]["user_id"] = f["events"]["user_id"].astype("Int64")
    f["events"].loc[f["events"].index[:7], "user_id"] = pd.NA


def unknown_event_type(f: Frames) -> None:
    f["events"].loc[f["events"].index[:4], "event_type"] = "click"


def negative_event_price(f: Frames) -> None:
    f["events"].loc[f["events"].index[10], "price"] = -3.5


def zero_unit_price(f: Frames) -> None:
    f["orders"].loc[f["orders"].index[0], "unit_price"] = 0.0


def missing_column(f: Frames) -> None:
    f["events"] = f["events"].drop(columns=["channel"])


def user_id_as_text(f: Frames) -> None:
    f["users"]["user_id"] = f["users"]["user_id"].astype(str)


def discount_above_list_price(f: Frames) -> None:
    prices = f["items"].set_index("item_id")["list_price"]
    i = f["orders"].index[5]
    f["orders"].loc[i, "discount"] = prices[f["orders"].loc[i, "item_id"]] + 10.0


def order_for_unknown_user(f: Frames) -> None:
    f["orders"].loc[f["orders"].index[:3], "user_id"] = 123_456_789


def event_for_unknown_item(f: Frames) -> None:
    f["events"].loc[f["events"].index[:2], "item_id"] = 42


def event_in_the_future(f: Frames) -> None:
    f["events"].loc[f["events"].index[0], "ts"] = pd.Timestamp("2099-01-01", tz="UTC")


def sale_order_outside_window(f: Frames) -> None:
    sale = _first_sale(f)
    in_sale = f["orders"].index[f["orders"]["campaign_id"] == sale["campaign_id"]][:2]
    f["orders"].loc[in_sale, "ts"] = sale["start_ts"] - pd.Timedelta(days=2)


def sample_ratio_mismatch(f: Frames) -> None:
    a = f["assignments"]
    control = a.index[a["arm"] == "control"]
    f["assignments"] = a.drop(control[: len(control) // 2])


def user_in_two_arms(f: Frames) -> None:
    a = f["assignments"]
    row = a[a["arm"] == "control"].iloc[[0]].assign(arm="pct_discount")
    f["assignments"] = pd.concat([a, row], ignore_index=True)


def assigned_after_exposure(f: Frames) -> None:
    sale = _first_sale(f)
    in_sale = f["events"][
        (f["events"]["ts"] >= sale["start_ts"]) & (f["events"]["ts"] < sale["end_ts"])
    ]
    users = in_sale["user_id"].unique()[:5]
    a = f["assignments"]
    late = (a["campaign_id"] == sale["campaign_id"]) & a["user_id"].isin(users)
    f["assignments"].loc[late, "assigned_ts"] = sale["end_ts"]


def arm_outside_campaign(f: Frames) -> None:
    f["assignments"].loc[f["assignments"].index[:3], "arm"] = "free_shipping"


def plan_arm_in_a_randomized_campaign(f: Frames) -> None:
    """A plan arm claims a plan chose the promotions, which a randomized campaign never has."""
    a = f["assignments"]
    treated = a.index[a["arm"] != "control"][:3]
    f["assignments"].loc[treated, "plan_arm"] = a.loc[treated, "arm"]


def treated_with_another_plan_arm(f: Frames) -> None:
    """A targeted campaign whose plan arms are otherwise right (control users carry one of the
    promotions) but three treated users' plan arm is not the promotion they received."""
    sale = _first_sale(f)
    f["campaigns"].loc[f["campaigns"]["campaign_id"] == sale["campaign_id"], "design"] = "targeted"
    a = f["assignments"]
    in_sale = a["campaign_id"] == sale["campaign_id"]
    promos = list(sale["promo_types"])
    a.loc[in_sale, "plan_arm"] = a.loc[in_sale, "arm"].where(a["arm"] != "control", promos[0])
    wrong = a.index[in_sale & (a["arm"] == promos[1])][:3]
    a.loc[wrong, "plan_arm"] = promos[2]


CASES: list[tuple[str, Callable[[Frames], None], list[str] | None, str, str, bool]] = [
    (
        "duplicate event_id",
        dup_event_id,
        ["events"],
        "expect_column_values_to_be_unique",
        "event_id",
        True,
    ),
    (
        "duplicate order_id",
        dup_order_id,
        ["orders"],
        "expect_column_values_to_be_unique",
        "order_id",
        True,
    ),
    (
        "null user_id",
        null_user_in_events,
        ["events"],
        "expect_column_values_to_not_be_null",
        "user_id",
        True,
    ),
    (
        "unknown event_type",
        unknown_event_type,
        ["events"],
        "expect_column_values_to_be_in_set",
        "event_type",
        True,
    ),
    (
        "negative price",
        negative_event_price,
        ["events"],
        "expect_column_values_to_be_between",
        "price",
        True,
    ),
    (
        "zero unit price",
        zero_unit_price,
        ["orders"],
        "expect_column_values_to_be_between",
        "unit_price",
        True,
    ),
    ("missing column", missing_column, ["events"], "schema_matches_contract", None, False),
    ("user_id as text", user_id_as_text, ["users"], "schema_matches_contract", None, False),
    (
        "discount above list price",
        discount_above_list_price,
        None,
        "discount_not_above_list_price",
        "discount",
        False,
    ),
    (
        "order for unknown user",
        order_for_unknown_user,
        None,
        "referential_integrity",
        "user_id",
        False,
    ),
    (
        "event for unknown item",
        event_for_unknown_item,
        None,
        "referential_integrity",
        "item_id",
        False,
    ),
    ("timestamp in the future", event_in_the_future, None, "timestamps_not_in_future", "ts", False),
    (
        "sale order outside window",
        sale_order_outside_window,
        None,
        "orders_within_campaign_window",
        "ts",
        False,
    ),
    ("sample-ratio mismatch", sample_ratio_mismatch, None, "sample_ratio_mismatch", "arm", False),
    ("user in two arms", user_in_two_arms, None, "user_in_one_arm", "user_id", False),
    (
        "assigned after exposure",
        assigned_after_exposure,
        None,
        "assigned_before_exposure",
        "assigned_ts",
        False,
    ),
    (
        "arm outside the campaign",
        arm_outside_campaign,
        None,
        "arm_in_campaign_promo_types",
        "arm",
        False,
    ),
    (
        "plan arm in a randomized campaign",
        plan_arm_in_a_randomized_campaign,
        None,
        "plan_arm_consistent",
        "plan_arm",
        False,
    ),
    (
        "treated with another plan arm",
        treated_with_another_plan_arm,
        None,
        "plan_arm_consistent",
        "plan_arm",
        False,
    ),
]


def test_the_unmodified_snapshot_passes(base_frames: Frames, tmp_path: Path) -> None:
    lake = open_store(tmp_path.as_uri())
    uri = _write(
        lake,
        {k: v.copy() for k, v in base_frames.items()},
        {"data_as_of": "2026-01-26T00:00:00+00:00"},
    )
    assert validate_snapshot(uri, settings=DUCKDB).success
    assert list_snapshots(lake, "features") == []
    assert _pipeline_until_features(uri, lake, DUCKDB).startswith(lake.uri("datasets/"))


# Suite rules run under both engines (they must agree); cross-table checks are DuckDB only.
PARAMS = [
    pytest.param(*case, engine, id=f"{case[0]}-{engine}")
    for case in CASES
    for engine in (("gx", "duckdb") if case[5] else ("duckdb",))
]


@pytest.mark.parametrize(
    ("name", "mutate", "tables", "expectation", "column", "parity", "engine"), PARAMS
)
def test_bad_input_is_caught_and_nothing_is_written(
    base_frames: Frames,
    tmp_path: Path,
    name: str,
    mutate: Callable,
    tables: list[str] | None,
    expectation: str,
    column: str | None,
    parity: bool,
    engine: str,
) -> None:
    frames = {k: v.copy() for k, v in base_frames.items()}
    mutate(frames)
    lake = open_store(tmp_path.as_uri())
    uri = _write(lake, frames)
    settings = GX if engine == "gx" else DUCKDB
    with pytest.raises(DataValidationError) as caught:
        _pipeline_until_features(uri, lake, settings, tables=tables)
    matching = [f for f in caught.value.failures if f.expectation == expectation]
    assert matching, f"{name}: expected {expectation}, got {caught.value}"
    if column:
        assert any(column in (f.column or "") for f in matching), caught.value
    message = str(caught.value)
    assert expectation in message and "table '" in message
    # Nothing downstream, no new drift reference; the report is kept as evidence.
    assert list_snapshots(lake, "features") == []
    assert not lake.exists("validation/raw/accepted_profile.json")
    assert lake.exists(caught.value.report_uri.removeprefix(lake.uri("")).lstrip("/"))


def test_stale_feed_fails_freshness(base_frames: Frames, tmp_path: Path) -> None:
    lake = open_store(tmp_path.as_uri())
    uri = _write(lake, {k: v.copy() for k, v in base_frames.items()})
    with pytest.raises(DataValidationError, match=r"freshness failed") as caught:
        _pipeline_until_features(uri, lake, DUCKDB, data_as_of=datetime(2026, 3, 1, tzinfo=UTC))
    assert "table 'events', column 'ts'" in str(caught.value)
    assert list_snapshots(lake, "features") == []


@pytest.mark.parametrize("engine", [GX, DUCKDB], ids=["gx", "duckdb"])
def test_failure_message_names_table_column_and_offending_values(
    base_frames: Frames, tmp_path: Path, engine: Settings
) -> None:
    frames = {k: v.copy() for k, v in base_frames.items()}
    unknown_event_type(frames)
    uri = _write(open_store(tmp_path.as_uri()), frames)
    with pytest.raises(DataValidationError) as caught:
        validate_snapshot(uri, tables=["events"], settings=engine)
    message = str(caught.value)
    assert (
        "table 'events', column 'event_type': expect_column_values_to_be_in_set failed "
        "- 4 offending row(s) - e.g. ['click'"
    ) in message


def test_drift_against_the_last_accepted_snapshot(base_frames: Frames, tmp_path: Path) -> None:
    lake = open_store(tmp_path.as_uri())
    first = validate_snapshot(
        _write(lake, {k: v.copy() for k, v in base_frames.items()}), settings=DUCKDB
    )
    assert first.success and first.drift == []  # no reference yet
    assert lake.exists("validation/raw/accepted_profile.json")

    same = validate_snapshot(
        _write(lake, {k: v.copy() for k, v in base_frames.items()}), settings=DUCKDB
    )
    assert same.success and max(d.psi for d in same.drift) < 1e-9

    shifted = {k: v.copy() for k, v in base_frames.items()}
    shifted["events"]["price"] = shifted["events"]["price"] * 3.0
    with pytest.raises(DataValidationError, match="distribution_drift") as caught:
        validate_snapshot(_write(lake, shifted), settings=DUCKDB)
    drifted = [f for f in caught.value.failures if f.expectation == "distribution_drift"]
    assert [f.column for f in drifted] == ["events.log_price"]
    assert drifted[0].observed["psi"] > 0.25


def test_psi_known_values() -> None:
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0.0
    assert psi([0.5, 0.5], [0.9, 0.1]) == pytest.approx(
        0.4 * __import__("math").log(0.9 / 0.5) - 0.4 * __import__("math").log(0.1 / 0.5)
    )
    with pytest.raises(ValueError, match="equal in length"):
        psi([1.0], [0.5, 0.5])


def test_data_docs_and_html_report_are_stored(base_frames: Frames, tmp_path: Path) -> None:
    lake = open_store(tmp_path.as_uri())
    uri = _write(lake, {k: v.copy() for k, v in base_frames.items()})
    report = validate_snapshot(uri, tables=["users", "items"], settings=GX)
    assert report.docs_uri and report.docs_uri.endswith("data_docs/index.html")
    prefix = report.report_uri.removeprefix(lake.uri("")).lstrip("/").rsplit("/", 1)[0]
    keys = lake.list(prefix)
    assert f"{prefix}/data_docs/index.html" in keys
    assert any(k.startswith(f"{prefix}/data_docs/validations/") for k in keys)
    assert "PASSED" in lake.read_bytes(f"{prefix}/index.html").decode()


def test_future_check_uses_the_reference_time(base_frames: Frames, tmp_path: Path) -> None:
    lake = open_store(tmp_path.as_uri())
    uri = _write(lake, {k: v.copy() for k, v in base_frames.items()})
    # As seen from a day before the last event, that event is in the future.
    with pytest.raises(DataValidationError, match="timestamps_not_in_future"):
        validate_snapshot(
            uri,
            tables=["events"],
            settings=DUCKDB,
            now=datetime(2026, 1, 20, tzinfo=UTC) - timedelta(days=1),
        )


def test_a_shorter_history_is_not_drift(tmp_path: Path) -> None:
    """Events per user scale with the days a snapshot covers; a legitimate 14-day extract of
    the same shop must not trip the drift gate against a 28-day reference (it did: PSI 0.3)."""
    from flashsale_ml.simulation import SimulationConfig, simulate
    from flashsale_ml.validation.drift import KEY_FEATURES

    lake = open_store(tmp_path.as_uri())
    reference = simulate(SimulationConfig(users=3_000, days=28, seed=5), lake)
    assert validate_snapshot(reference.raw_uri, settings=DUCKDB).success
    shorter = simulate(SimulationConfig(users=3_000, days=14, seed=6), lake)
    report = validate_snapshot(shorter.raw_uri, settings=DUCKDB)
    assert report.success
    per_user = [d for d in report.drift if d.feature.startswith("events.per_user")]
    assert [d.feature for d in per_user] == ["events.per_user_day"]
    assert per_user[0].psi < 0.1, per_user[0]
    assert any(name == "events.per_user_day" for _, name, _, _ in KEY_FEATURES)


# --- issue 22 item 8: a table the contract needs must have rows ---------------------------------


def test_every_suite_requires_rows() -> None:
    """A header-only CSV became a snapshot with 0 users, and validation said success."""
    import json

    from flashsale_ml.validation.gx_suites import available_suites, expectations_dir

    for table in available_suites():
        spec = json.loads((expectations_dir() / f"{table}.json").read_text())
        counts = [
            e["kwargs"]
            for e in spec["expectations"]
            if e["type"] == "expect_table_row_count_to_be_between"
        ]
        assert counts, f"{table}: no minimum row count"
        assert all((kw.get("min_value") or 0) >= 1 for kw in counts), table


@pytest.mark.parametrize(
    "table", ["users", "items", "events", "orders", "campaigns", "assignments", "traffic"]
)
def test_an_empty_table_fails_validation_and_nothing_is_built(
    base_frames: Frames, tmp_path: Path, table: str
) -> None:
    from flashsale_ml.contract import contract_for
    from flashsale_ml.validation.gx_suites import GxSession
    from flashsale_ml.validation.sql_rules import validate_parquet

    lake = open_store(tmp_path.as_uri())
    with SnapshotWriter(lake, "raw") as writer:
        for name, frame in base_frames.items():
            schema = contract_for(name).schema
            data = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
            writer.write_table(name, data.slice(0, 0) if name == table else data)
    with pytest.raises(DataValidationError) as caught:
        _pipeline_until_features(writer.uri, lake, GX)
    counts = [
        f for f in caught.value.failures if f.expectation == "expect_table_row_count_to_be_between"
    ]
    assert [(f.table, f.observed) for f in counts] == [(table, 0)], caught.value
    assert (
        f"table {table!r}, table: expect_table_row_count_to_be_between failed "
        f"(the contract needs rows: an empty {table} table"
    ) in str(caught.value)
    assert list_snapshots(lake, "features") == []

    # An empty table always runs through GX (0 <= any row limit); the DuckDB engine must give
    # the same verdict on the same suite.
    with Snapshot(writer.uri) as snap, GxSession() as session:
        gx = session.validate(table, snap.read_pandas(table))
        duck = validate_parquet(table, snap.local_files(table))
    assert gx.rows == duck.rows == 0
    assert sorted((f.expectation, f.column, f.observed) for f in gx.failures) == sorted(
        (f.expectation, f.column, f.observed) for f in duck.failures
    )
    assert [f.expectation for f in duck.failures] == ["expect_table_row_count_to_be_between"]


def test_row_count_bounds_agree_between_engines(tmp_path: Path) -> None:
    """GX semantics of expect_table_row_count_to_be_between (inclusive bounds unless strict, a
    missing bound is no bound) in the DuckDB engine, on 0 to 3 rows."""
    import json

    from flashsale_ml.validation.gx_suites import GxSession
    from flashsale_ml.validation.sql_rules import validate_parquet

    bounds = {
        "min1": {"min_value": 1},
        "min1-strict": {"min_value": 1, "strict_min": True},
        "max2": {"max_value": 2},
        "max2-strict": {"max_value": 2, "strict_max": True},
        "1to2": {"min_value": 1, "max_value": 2},
    }
    suites = tmp_path / "suites"
    suites.mkdir()
    spec = {
        "name": "t",
        "expectations": [
            {"type": "expect_table_row_count_to_be_between", "kwargs": kw, "meta": {"rule": r}}
            for r, kw in bounds.items()
        ],
    }
    (suites / "t.json").write_text(json.dumps(spec))
    expected = {
        0: {"min1", "min1-strict", "1to2"},
        1: {"min1-strict"},
        2: {"max2-strict"},
        3: {"max2", "max2-strict", "1to2"},
    }
    for rows, failing in expected.items():
        frame = pd.DataFrame({"x": pd.Series(range(rows), dtype="int64")})
        path = tmp_path / f"t{rows}.parquet"
        frame.to_parquet(path)
        with GxSession(suites) as session:  # one session validates a table once
            gx = session.validate("t", frame)
        for result in (gx, validate_parquet("t", [path], directory=suites)):
            assert {f.rule for f in result.failures} == failing, (rows, result)
            assert {f.observed for f in result.failures} <= {rows}


def test_two_validations_in_the_same_instant_keep_separate_reports(
    base_frames: Frames, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Report folders were named by the second: two runs in one second overwrote each other."""
    import flashsale_ml.validation.report as report_module

    instant = datetime(2026, 1, 26, tzinfo=UTC)
    monkeypatch.setattr(report_module, "utc_now", lambda: instant)  # both in one instant
    lake = open_store(tmp_path.as_uri())
    uri = _write(lake, {k: v.copy() for k, v in base_frames.items()})
    first = validate_snapshot(uri, settings=DUCKDB)
    second = validate_snapshot(uri, settings=DUCKDB)
    assert first.report_uri != second.report_uri
    assert lake.exists(first.report_uri.removeprefix(lake.uri("")).lstrip("/"))
    assert lake.exists(second.report_uri.removeprefix(lake.uri("")).lstrip("/"))
