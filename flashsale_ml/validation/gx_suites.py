"""Run the Great Expectations suites in ``expectations/`` against tables, with GX Core 1.x.

The JSON files under ``expectations/`` are the single source of the rules: reviewable in a
pull request and versioned with the code. This module turns a GX result into plain, typed
failures that name the table, the expectation, the column, what was observed and sample rows.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

DEFAULT_EXPECTATIONS_DIR = Path(__file__).resolve().parents[2] / "expectations"
# How many offending values a failure quotes (both engines, and the cross-table checks).
SAMPLE_ROWS = 5


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
            parts.append(f"- e.g. {self.sample[:SAMPLE_ROWS]!r}")
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


class GxSession:
    """One ephemeral GX context for a validation run: many tables, one Data Docs site.

    The Data Docs site lives in a scratch folder of this session (GX's ephemeral context would
    put it in a ``tmp*`` folder that nobody removes); :meth:`close`, or leaving the ``with``
    block, removes it. Copy what :meth:`build_docs` returns before that.
    """

    def __init__(self, directory: Path | None = None) -> None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        from flashsale_ml.storage import scratch_dir

        self._gx = gx
        self.directory = directory
        self.context = gx.get_context(mode="ephemeral")
        # tqdm bars per expectation flood Airflow task logs; we log one line per table.
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        self.docs_root: Path | None = scratch_dir("flashsale-gx-docs-")
        try:
            site = self.context.variables.data_docs_sites["local_site"]
            site["store_backend"]["base_directory"] = str(self.docs_root)
            self.context.update_data_docs_site("local_site", site)
            self.source = self.context.data_sources.add_pandas("flashsale")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Remove the session's Data Docs folder."""
        if self.docs_root is not None:
            shutil.rmtree(self.docs_root, ignore_errors=True)
            self.docs_root = None

    def __enter__(self) -> GxSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def validate(self, table: str, frame: pd.DataFrame) -> TableValidation:
        """Validate one in-memory table against ``expectations/<table>.json``.

        Runs a GX Checkpoint whose UpdateDataDocsAction renders the result into this
        session's Data Docs site.
        """
        gx = self._gx
        spec = load_suite_json(table, self.directory)
        suite = self.context.suites.add(gx.ExpectationSuite(**spec))
        batch = self.source.add_dataframe_asset(table).add_batch_definition_whole_dataframe("whole")
        definition = self.context.validation_definitions.add(
            gx.ValidationDefinition(name=f"validate_{table}", data=batch, suite=suite)
        )
        checkpoint = self.context.checkpoints.add(
            gx.Checkpoint(
                name=f"checkpoint_{table}",
                validation_definitions=[definition],
                actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs")],
                result_format="SUMMARY",
            )
        )
        outcome = checkpoint.run(batch_parameters={"dataframe": frame})
        result = next(iter(outcome.run_results.values()))
        return TableValidation(
            table,
            len(frame),
            len(result.results),
            [_failure(table, r) for r in result.results if not r.success],
        )

    def build_docs(self) -> Path:
        """Render the Data Docs site; returns the local folder holding ``index.html``."""
        from urllib.parse import unquote, urlparse

        url = self.context.build_data_docs()["local_site"]
        return Path(unquote(urlparse(url).path)).parent


def _failure(table: str, res: Any) -> ExpectationFailure:
    kwargs = {k: v for k, v in res.expectation_config.kwargs.items() if k != "batch_id"}
    details = res.result or {}
    rule = (res.expectation_config.meta or {}).get("rule")
    if not rule and res.exception_info.get("raised_exception"):
        rule = str(res.exception_info.get("exception_message"))
    return ExpectationFailure(
        table=table,
        expectation=res.expectation_config.type,
        column=_column_of(kwargs),
        observed=_jsonable(details.get("observed_value")),
        unexpected_count=details.get("unexpected_count"),
        sample=[_jsonable(v) for v in (details.get("partial_unexpected_list") or [])],
        rule=rule,
    )
