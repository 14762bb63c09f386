"""Run the Great Expectations suites in ``expectations/`` against tables, with GX Core 1.x.

The JSON files under ``expectations/`` are the single source of the rules: reviewable in a
pull request and versioned with the code. This module turns a GX result into plain, typed
failures that name the table, the expectation, the column, what was observed and sample rows.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)

DEFAULT_EXPECTATIONS_DIR = Path(__file__).resolve().parents[2] / "expectations"


def expectations_dir() -> Path:
    return Path(os.environ.get("FLASHSALE_EXPECTATIONS_DIR", DEFAULT_EXPECTATIONS_DIR))


@dataclass(frozen=True)
class ExpectationFailure:
    table: str
    expectation: str
    column: str | None
    observed: Any
    unexpected_count: int | None
    sample: list[Any] = field(default_factory=list)
    rule: str | None = None

    def describe(self) -> str:
        where = f"column {self.column!r}" if self.column else "table"
        parts = [f"table {self.table!r}, {where}: {self.expectation} failed"]
        if self.rule:
            parts.append(f"({self.rule})")
        if self.unexpected_count is not None:
            parts.append(f"- {self.unexpected_count:,} offending row(s)")
        if self.observed is not None:
            parts.append(f"- observed {self.observed!r}")
        if self.sample:
            parts.append(f"- e.g. {self.sample[:5]!r}")
        return " ".join(parts)


@dataclass(frozen=True)
class TableValidation:
    table: str
    rows: int
    evaluated: int
    failures: list[ExpectationFailure]

    @property
    def success(self) -> bool:
        return not self.failures


def available_suites(directory: Path | None = None) -> list[str]:
    """Table names that have a suite file."""
    return sorted(p.stem for p in (directory or expectations_dir()).glob("*.json"))


def load_suite_json(table: str, directory: Path | None = None) -> dict[str, Any]:
    path = (directory or expectations_dir()) / f"{table}.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no expectation suite for table {table!r}: expected {path}"
        ) from None


def _column_of(kwargs: dict[str, Any]) -> str | None:
    if "column" in kwargs:
        return kwargs["column"]
    if "column_A" in kwargs:
        return f"{kwargs['column_A']} vs {kwargs['column_B']}"
    if "column_list" in kwargs:
        return ", ".join(kwargs["column_list"])
    return None


def _jsonable(value: Any) -> Any:
    """Plain Python values for messages and JSON reports (GX hands back numpy scalars)."""
    if hasattr(value, "item") and callable(value.item):
        try:
            return value.item()
        except (ValueError, TypeError):
            pass
    if isinstance(value, list | tuple):
        return type(value)(_jsonable(v) for v in value)
    try:
        json.dumps(value)
        return value
    except TypeError:
        return str(value)


def validate_frame(
    table: str, frame: pd.DataFrame, directory: Path | None = None
) -> TableValidation:
    """Validate one in-memory table against ``expectations/<table>.json``.

    Args:
        table: contract table name; selects the suite.
        frame: the data.
        directory: where the suites live (default: the project's ``expectations/``).

    Returns:
        A :class:`TableValidation`; ``success`` is False when any expectation failed.
    """
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    spec = load_suite_json(table, directory)
    context = gx.get_context(mode="ephemeral")
    # tqdm bars per expectation flood Airflow task logs; our own log line per table suffices.
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    suite = context.suites.add(gx.ExpectationSuite(**spec))
    batch = (
        context.data_sources.add_pandas(f"{table}_source")
        .add_dataframe_asset(table)
        .add_batch_definition_whole_dataframe("whole")
    )
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"validate_{table}", data=batch, suite=suite)
    )
    result = definition.run(batch_parameters={"dataframe": frame}, result_format="SUMMARY")
    failures = []
    for res in result.results:
        if res.success:
            continue
        rule = (res.expectation_config.meta or {}).get("rule")
        kwargs = {k: v for k, v in res.expectation_config.kwargs.items() if k != "batch_id"}
        details = res.result or {}
        failures.append(
            ExpectationFailure(
                table=table,
                expectation=res.expectation_config.type,
                column=_column_of(kwargs),
                observed=_jsonable(details.get("observed_value")),
                unexpected_count=details.get("unexpected_count"),
                sample=[_jsonable(v) for v in (details.get("partial_unexpected_list") or [])],
                rule=rule
                or (
                    str(res.exception_info.get("exception_message"))
                    if res.exception_info.get("raised_exception")
                    else None
                ),
            )
        )
    return TableValidation(table, len(frame), len(result.results), failures)
