"""Validate a committed snapshot table by table and stop the pipeline on the first bad input."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass

from flashsale_ml.contract import check_schema
from flashsale_ml.datasets import Snapshot
from flashsale_ml.lineage import code_version, utc_now
from flashsale_ml.storage import open_store
from flashsale_ml.validation.gx_suites import (
    ExpectationFailure,
    TableValidation,
    available_suites,
    validate_frame,
)

log = logging.getLogger(__name__)


class DataValidationError(ValueError):
    """Raised when a snapshot breaks its contract; the message lists every failure."""

    def __init__(self, snapshot_uri: str, failures: list[ExpectationFailure]) -> None:
        self.snapshot_uri = snapshot_uri
        self.failures = failures
        lines = [f"data validation failed for {snapshot_uri}: {len(failures)} problem(s)"]
        lines += [f"  - {f.describe()}" for f in failures]
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class ValidationReport:
    snapshot_uri: str
    snapshot_id: str
    tables: list[TableValidation]
    report_uri: str

    @property
    def success(self) -> bool:
        return all(t.success for t in self.tables)

    def summary(self) -> dict[str, object]:
        """Small, XCom-friendly summary."""
        return {
            "snapshot_uri": self.snapshot_uri,
            "success": self.success,
            "report_uri": self.report_uri,
            "rows": {t.table: t.rows for t in self.tables},
            "expectations_evaluated": sum(t.evaluated for t in self.tables),
        }


def _schema_failures(snapshot: Snapshot, table: str) -> list[ExpectationFailure]:
    import pyarrow.parquet as pq

    files = snapshot.local_files(table)
    if not files:
        return []
    actual = pq.read_schema(files[0])
    return [
        ExpectationFailure(table, "schema_matches_contract", None, problem, None)
        for problem in check_schema(table, actual)
    ]


def validate_snapshot(
    snapshot_uri: str, tables: list[str] | None = None, raise_on_failure: bool = True
) -> ValidationReport:
    """Validate ``tables`` (default: all) of a snapshot against their suites.

    The JSON report is written under ``validation/`` next to the data, so a failed run leaves
    its evidence but never a partial dataset.

    Raises:
        DataValidationError: any expectation failed (when ``raise_on_failure``).
    """
    with Snapshot(snapshot_uri) as snapshot:
        results = []
        if tables is None:
            # Tables outside the contract (e.g. a loader's extra covariates) have no suite.
            governed = set(available_suites())
            tables = [t for t in snapshot.tables if t in governed]
            skipped = sorted(set(snapshot.tables) - governed)
            if skipped:
                log.info("no expectation suite for %s; not validated", skipped)
        for table in tables:
            schema_problems = _schema_failures(snapshot, table)
            if schema_problems:
                results.append(TableValidation(table, 0, len(schema_problems), schema_problems))
                continue
            frame = snapshot.read_pandas(table)
            result = validate_frame(table, frame)
            log.info(
                "validated %s: %s rows, %d expectations, %d failed",
                table,
                f"{result.rows:,}",
                result.evaluated,
                len(result.failures),
            )
            results.append(result)

    lake_root, _, rest = snapshot_uri.partition("/datasets/")
    report_key = f"validation/{rest}/{utc_now():%Y%m%dT%H%M%SZ}.json"
    report = ValidationReport(
        snapshot_uri, snapshot.snapshot_id, results, f"{lake_root}/{report_key}"
    )
    payload = {
        "snapshot_uri": snapshot_uri,
        "success": report.success,
        "code_version": code_version(),
        "validated_at": utc_now().isoformat(),
        "tables": [asdict(t) for t in results],
    }
    open_store(lake_root).write_bytes(
        report_key, json.dumps(payload, indent=2, default=str).encode()
    )
    failures = [f for t in results for f in t.failures]
    if failures and raise_on_failure:
        raise DataValidationError(snapshot_uri, failures)
    return report
