"""Evaluate the JSON expectation suites in DuckDB, for tables too large for GX's pandas engine.

The rules still come only from ``expectations/<table>.json``; this module is a second engine for
the same expectation types (their GX semantics, including ``mostly`` and ``ignore_row_if``).
Column rules are folded into one scan; uniqueness checks run as separate aggregations so DuckDB
can spill them to disk. ``tests/test_validation.py`` checks that both engines agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb

from flashsale_ml import duck
from flashsale_ml.validation.gx_suites import (
    SAMPLE_ROWS,
    ExpectationFailure,
    TableValidation,
    _column_of,
    _jsonable,
    load_suite_json,
)


class UnsupportedExpectationError(NotImplementedError):
    pass


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: Any) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    return repr(value)


def _bad_row_predicate(kind: str, kw: dict[str, Any]) -> tuple[str, str] | None:
    """(predicate of an unexpected row, predicate of a row that counts) for row-wise rules."""
    if kind == "expect_column_values_to_not_be_null":
        return f"{_q(kw['column'])} IS NULL", "TRUE"
    col = _q(kw.get("column", ""))
    if kind == "expect_column_values_to_be_in_set":
        values = ", ".join(_literal(v) for v in kw["value_set"])
        return f"{col} NOT IN ({values})", f"{col} IS NOT NULL"
    if kind == "expect_column_values_to_be_between":
        parts = []
        if kw.get("min_value") is not None:
            op = "<=" if kw.get("strict_min") else "<"
            parts.append(f"{col} {op} {_literal(kw['min_value'])}")
        if kw.get("max_value") is not None:
            op = ">=" if kw.get("strict_max") else ">"
            parts.append(f"{col} {op} {_literal(kw['max_value'])}")
        return " OR ".join(parts) or "FALSE", f"{col} IS NOT NULL"
    if kind == "expect_column_value_lengths_to_be_between":
        parts = []
        if kw.get("min_value") is not None:
            parts.append(f"length({col}) < {int(kw['min_value'])}")
        if kw.get("max_value") is not None:
            parts.append(f"length({col}) > {int(kw['max_value'])}")
        return " OR ".join(parts) or "FALSE", f"{col} IS NOT NULL"
    if kind == "expect_column_pair_values_a_to_be_greater_than_b":
        a, b = _q(kw["column_A"]), _q(kw["column_B"])
        cmp = ">=" if kw.get("or_equal") else ">"
        ignore = kw.get("ignore_row_if", "both_values_are_missing")
        counts = {
            "either_value_is_missing": f"{a} IS NOT NULL AND {b} IS NOT NULL",
            "both_values_are_missing": f"NOT ({a} IS NULL AND {b} IS NULL)",
            "neither": "TRUE",
        }[ignore]
        return f"NOT coalesce({a} {cmp} {b}, FALSE)", counts
    return None


def _row_count_failures(table: str, spec: dict[str, Any], rows: int) -> list[ExpectationFailure]:
    """``expect_table_row_count_to_be_between`` with GX's semantics: bounds are inclusive
    unless ``strict_min``/``strict_max``; a missing bound is no bound."""
    failures = []
    for expectation in spec["expectations"]:
        if expectation["type"] != "expect_table_row_count_to_be_between":
            continue
        kw = expectation["kwargs"]
        low, high = kw.get("min_value"), kw.get("max_value")
        too_few = low is not None and (rows <= low if kw.get("strict_min") else rows < low)
        too_many = high is not None and (rows >= high if kw.get("strict_max") else rows > high)
        if too_few or too_many:
            failures.append(
                ExpectationFailure(
                    table,
                    expectation["type"],
                    None,
                    rows,
                    None,
                    rule=(expectation.get("meta") or {}).get("rule"),
                )
            )
    return failures


def validate_parquet(
    table: str,
    files: Sequence[Path],
    con: duckdb.DuckDBPyConnection | None = None,
    directory: Path | None = None,
) -> TableValidation:
    """Validate the Parquet ``files`` of ``table`` against its suite, in DuckDB.

    Args:
        con: the connection to run on (default: a new one of :func:`flashsale_ml.duck.connect`,
            closed before returning).

    Raises:
        UnsupportedExpectationError: the suite uses a type this engine does not implement.
    """
    if con is not None:
        return _validate_parquet(table, files, con, directory)
    with duck.connect() as own:
        return _validate_parquet(table, files, own, directory)


def _validate_parquet(
    table: str,
    files: Sequence[Path],
    con: duckdb.DuckDBPyConnection,
    directory: Path | None,
) -> TableValidation:
    spec = load_suite_json(table, directory)
    paths = ", ".join(f"'{p}'" for p in files)
    source = f"read_parquet([{paths}])"
    columns = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()]

    row_rules: list[tuple[int, dict[str, Any], str, str]] = []
    failures: list[ExpectationFailure] = []
    set_rules: list[tuple[int, dict[str, Any]]] = []
    for index, expectation in enumerate(spec["expectations"]):
        kind, kw = expectation["type"], expectation["kwargs"]
        rule = (expectation.get("meta") or {}).get("rule")
        if kind == "expect_table_columns_to_match_set":
            expected = set(kw["column_set"])
            exact = kw.get("exact_match", True)
            if (exact and set(columns) != expected) or (not exact and not expected <= set(columns)):
                failures.append(
                    ExpectationFailure(
                        table,
                        kind,
                        None,
                        {
                            "columns": columns,
                            "missing": sorted(expected - set(columns)),
                            "unexpected": sorted(set(columns) - expected),
                        },
                        None,
                        rule=rule,
                    )
                )
                # Column rules on missing columns would only add noise.
                rows = _count(con, source)
                failures += _row_count_failures(table, spec, rows)
                return TableValidation(table, rows, len(spec["expectations"]), failures)
            continue
        if kind == "expect_table_row_count_to_be_between":
            continue  # evaluated once the row count is known
        if kind in ("expect_column_values_to_be_unique", "expect_compound_columns_to_be_unique"):
            set_rules.append((index, expectation))
            continue
        predicates = _bad_row_predicate(kind, kw)
        if predicates is None:
            raise UnsupportedExpectationError(
                f"table {table!r}: expectation {kind} is not supported by the DuckDB engine"
            )
        row_rules.append((index, expectation, *predicates))

    select = ["count(*)"]
    for _, _, bad, counts in row_rules:
        select += [
            f"count(*) FILTER (WHERE ({counts}) AND ({bad}))",
            f"count(*) FILTER (WHERE {counts})",
        ]
    totals = con.execute(f"SELECT {', '.join(select)} FROM {source}").fetchall()[0]
    rows = int(totals[0])
    failures += _row_count_failures(table, spec, rows)
    for i, (_, expectation, bad, counts) in enumerate(row_rules):
        unexpected, counted = int(totals[1 + 2 * i]), int(totals[2 + 2 * i])
        mostly = expectation["kwargs"].get("mostly", 1.0)
        if unexpected and unexpected > (1.0 - mostly) * counted:
            failures.append(_failure(con, table, source, expectation, bad, counts, unexpected))

    for _, expectation in set_rules:
        kw = expectation["kwargs"]
        cols = kw.get("column_list") or [kw["column"]]
        key = ", ".join(_q(c) for c in cols)
        not_null = " AND ".join(f"{_q(c)} IS NOT NULL" for c in cols)
        duplicated = con.execute(
            f"SELECT coalesce(sum(n), 0) FROM (SELECT count(*) AS n FROM {source} "
            f"WHERE {not_null} GROUP BY {key} HAVING count(*) > 1)"
        ).fetchall()[0][0]
        if duplicated:
            sample = con.execute(
                f"SELECT {key} FROM {source} WHERE {not_null} GROUP BY {key} "
                f"HAVING count(*) > 1 LIMIT {SAMPLE_ROWS}"
            ).fetchall()
            failures.append(
                ExpectationFailure(
                    table,
                    expectation["type"],
                    _column_of(kw),
                    None,
                    int(duplicated),
                    [_jsonable(r[0] if len(r) == 1 else r) for r in sample],
                    (expectation.get("meta") or {}).get("rule"),
                )
            )
    return TableValidation(table, rows, len(spec["expectations"]), failures)


def _count(con: duckdb.DuckDBPyConnection, source: str) -> int:
    return int(con.execute(f"SELECT count(*) FROM {source}").fetchall()[0][0])


def _failure(
    con: duckdb.DuckDBPyConnection,
    table: str,
    source: str,
    expectation: dict[str, Any],
    bad: str,
    counts: str,
    unexpected: int,
) -> ExpectationFailure:
    kw = expectation["kwargs"]
    cols = [kw[k] for k in ("column", "column_A", "column_B") if k in kw]
    projection = ", ".join(_q(c) for c in cols)
    sample = con.execute(
        f"SELECT {projection} FROM {source} WHERE ({counts}) AND ({bad}) LIMIT {SAMPLE_ROWS}"
    ).fetchall()
    return ExpectationFailure(
        table,
        expectation["type"],
        _column_of(kw),
        None,
        unexpected,
        [_jsonable(r[0] if len(r) == 1 else r) for r in sample],
        (expectation.get("meta") or {}).get("rule"),
    )
