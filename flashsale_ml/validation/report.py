"""Validate a committed snapshot: suites per table, cross-table checks, drift; one report.

Outputs of a run go to ``validation/<dataset>/<snapshot_id>/<run_ts>/`` next to the data:
``report.json``, ``index.html`` (every table and check, readable without GX) and
``data_docs/`` (the GX Data Docs site of the tables GX validated). A passing run also becomes
the dataset's drift reference (``validation/<dataset>/accepted_profile.json``).
"""

from __future__ import annotations

import html
import json
import logging
import shutil
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from flashsale_ml import duck
from flashsale_ml.config import Settings, get_settings
from flashsale_ml.contract import schema_problems
from flashsale_ml.datasets import Snapshot
from flashsale_ml.errors import DataError
from flashsale_ml.lineage import code_version, new_snapshot_id, utc_now
from flashsale_ml.storage import ObjectNotFoundError, ObjectStore, open_store, scratch_dir
from flashsale_ml.validation.drift import FeatureDrift, compare, profile
from flashsale_ml.validation.gx_suites import (
    ExpectationFailure,
    GxSession,
    TableValidation,
    available_suites,
)
from flashsale_ml.validation.relational import IntegrityConfig, run_integrity_checks
from flashsale_ml.validation.sql_rules import validate_parquet

log = logging.getLogger(__name__)

ACCEPTED_PROFILE = "accepted_profile.json"


class DataValidationError(DataError):
    """Raised when a snapshot breaks its contract; the message lists every failure."""

    def __init__(
        self,
        snapshot_uri: str,
        failures: list[ExpectationFailure],
        report_uri: str | None = None,
        local_dir: Path | None = None,
    ) -> None:
        self.snapshot_uri = snapshot_uri
        self.failures = failures
        self.report_uri = report_uri
        self.local_dir = local_dir
        lines = [f"data validation failed for {snapshot_uri}: {len(failures)} problem(s)"]
        lines += [f"  - {f.describe()}" for f in failures]
        if report_uri:
            lines.append(f"  report: {report_uri}")
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class ValidationReport:
    snapshot_uri: str
    snapshot_id: str
    tables: list[TableValidation]
    checks: list[ExpectationFailure]
    drift: list[FeatureDrift]
    engines: dict[str, str]
    report_uri: str
    docs_uri: str | None
    local_dir: Path | None = field(default=None, compare=False)

    @property
    def failures(self) -> list[ExpectationFailure]:
        return [f for t in self.tables for f in t.failures] + self.checks

    @property
    def success(self) -> bool:
        return not self.failures

    def summary(self) -> dict[str, object]:
        """Small, XCom-friendly summary."""
        return {
            "snapshot_uri": self.snapshot_uri,
            "success": self.success,
            "report_uri": self.report_uri,
            "data_docs_uri": self.docs_uri,
            "rows": {t.table: t.rows for t in self.tables},
            "expectations_evaluated": sum(t.evaluated for t in self.tables),
            "engines": self.engines,
            "max_psi": max((d.psi for d in self.drift), default=None),
        }


def _schema_failures(snapshot: Snapshot, table: str) -> list[ExpectationFailure]:
    import pyarrow.parquet as pq

    files = snapshot.local_files(table)
    if not files:
        return []
    return [
        ExpectationFailure(table, "schema_matches_contract", column, problem, None)
        for column, problem in schema_problems(table, pq.read_schema(files[0]))
    ]


def _dataset_of(snapshot_uri: str) -> tuple[str, str]:
    """(lake root URI, dataset name) of ``<root>/datasets/<dataset>/<id>``."""
    root, _, rest = snapshot_uri.rstrip("/").partition("/datasets/")
    return root, rest.split("/")[0]


def _load_reference(lake: ObjectStore, dataset: str) -> dict[str, Any] | None:
    try:
        return json.loads(lake.read_bytes(f"validation/{dataset}/{ACCEPTED_PROFILE}"))
    except ObjectNotFoundError:
        return None


def latest_validation(snapshot_uri: str) -> dict[str, Any] | None:
    """The newest full validation report of a snapshot, as stored next to the data.

    Only reports of runs over every table count: a run limited to some tables cannot vouch
    for the snapshot. Returns ``None`` when the snapshot was never validated.
    """
    lake_root, dataset = _dataset_of(snapshot_uri)
    snapshot_id = snapshot_uri.rstrip("/").rsplit("/", 1)[-1]
    lake = open_store(lake_root)
    prefix = f"validation/{dataset}/{snapshot_id}/"
    reports = sorted(k for k in lake.list(prefix) if k.endswith("/report.json"))
    for key in reversed(reports):  # run folders are UTC timestamps: newest last
        payload = json.loads(lake.read_bytes(key))
        if payload.get("complete", True):
            return {**payload, "report_uri": lake.uri(key)}
    return None


def validate_snapshot(
    snapshot_uri: str,
    tables: list[str] | None = None,
    raise_on_failure: bool = True,
    settings: Settings | None = None,
    data_as_of: datetime | None = None,
    now: datetime | None = None,
    local_dir: Path | None = None,
) -> ValidationReport:
    """Validate a snapshot against the suites in ``expectations/`` and the integrity checks.

    Every part file is first checked against the manifest's SHA-256.

    Args:
        snapshot_uri: a committed snapshot.
        tables: only these tables (default: every table that has a suite).
        raise_on_failure: raise :class:`DataValidationError` on any failure.
        settings: thresholds and engine choice (default: from the environment).
        data_as_of: extraction time for the freshness check (default: the manifest's
            ``data_as_of``; without either, freshness is not checked).
        now: reference for "timestamp in the future" (default: wall clock).
        local_dir: an empty folder, owned by the caller, that keeps a copy of the report
            files (``report.json``, ``index.html``, ``data_docs/``) after the call, e.g. to
            log them to MLflow; it becomes the report's (or the error's) ``local_dir``.
            Without it the files are staged in a temporary folder that is removed before
            returning, and ``local_dir`` is None.

    Returns:
        The report; its files are already written next to the data.

    Raises:
        DataValidationError: any expectation or check failed (when ``raise_on_failure``).
        CorruptFileError: a part file does not match its manifest checksum.
    """
    keep_dir = local_dir is not None
    if local_dir is not None:
        local_dir.mkdir(parents=True, exist_ok=True)
        if any(local_dir.iterdir()):
            raise ValueError(f"local_dir {local_dir} must be empty: all of it is uploaded")
    out_dir = local_dir if local_dir is not None else scratch_dir("flashsale-validation-")
    try:
        with ExitStack() as resources:
            return _validate_into(
                out_dir,
                keep_dir,
                resources,
                snapshot_uri,
                tables,
                raise_on_failure,
                settings,
                data_as_of,
                now,
            )
    finally:
        if not keep_dir:
            shutil.rmtree(out_dir, ignore_errors=True)


def _validate_into(
    out_dir: Path,
    keep_dir: bool,
    resources: ExitStack,
    snapshot_uri: str,
    tables: list[str] | None,
    raise_on_failure: bool,
    settings: Settings | None,
    data_as_of: datetime | None,
    now: datetime | None,
) -> ValidationReport:
    settings = settings or get_settings()
    config = IntegrityConfig(
        freshness_max_lag=timedelta(hours=settings.validation_freshness_lag_hours),
        srm_alpha=settings.validation_srm_alpha,
        now=now,
    )
    lake_root, dataset = _dataset_of(snapshot_uri)
    lake = open_store(lake_root)
    run_ts = utc_now()
    with Snapshot(snapshot_uri) as snapshot:
        snapshot.verify(mode="full")  # a damaged file fails here, named, not as odd data
        governed = set(available_suites())
        selected = tables or [t for t in snapshot.tables if t in governed]
        skipped = sorted(set(snapshot.tables) - governed)
        if skipped and tables is None:
            log.info("no expectation suite for %s; not validated", skipped)
        if data_as_of is None and snapshot.manifest.metadata.get("data_as_of"):
            data_as_of = datetime.fromisoformat(snapshot.manifest.metadata["data_as_of"])
        # UTC: hour(ts) in drift and checks must not follow the machine's zone.
        con = duck.connect(
            {t: snapshot.local_files(t) for t in snapshot.tables},
            memory_limit=settings.duckdb_memory_limit,
            threads=settings.compute_threads,
        )
        gx: GxSession | None = None
        results, engines = [], {}
        for table in selected:
            schema_problems = _schema_failures(snapshot, table)
            rows = snapshot.manifest.tables[table].rows
            if schema_problems:
                results.append(TableValidation(table, rows, len(schema_problems), schema_problems))
                engines[table] = "schema"
                continue
            if rows <= settings.validation_gx_max_rows:
                gx = gx or resources.enter_context(GxSession())
                result = gx.validate(table, snapshot.read_pandas(table))
                engines[table] = "great_expectations"
            else:
                result = validate_parquet(table, snapshot.local_files(table), con)
                engines[table] = "duckdb"
            log.info(
                "validated %s with %s: %s rows, %d expectations, %d failed",
                table,
                engines[table],
                f"{result.rows:,}",
                result.evaluated,
                len(result.failures),
            )
            results.append(result)

        present = set(selected)
        checks = run_integrity_checks(con, present, data_as_of, config)
        reference = _load_reference(lake, dataset)
        drift = compare(con, present, reference) if reference else []
        for d in drift:
            if d.psi > settings.validation_drift_psi_threshold:
                checks.append(
                    ExpectationFailure(
                        d.feature.split(".")[0],
                        "distribution_drift",
                        d.feature,
                        {
                            "psi": round(d.psi, 4),
                            "bins": d.bins,
                            "reference": [round(x, 4) for x in d.reference_shares],
                            "current": [round(x, 4) for x in d.current_shares],
                        },
                        None,
                        [],
                        f"PSI against the last accepted snapshot must stay <= "
                        f"{settings.validation_drift_psi_threshold}",
                    )
                )
        current_profile = (
            profile(con, present) if not any(t.failures for t in results) and not checks else None
        )
        con.close()

    docs_dir = gx.build_docs() if gx else None
    # The run's folder is time-sorted and unique even for two validations in the same instant.
    prefix = f"validation/{dataset}/{snapshot.snapshot_id}/{new_snapshot_id(run_ts)}"
    report = ValidationReport(
        snapshot_uri,
        snapshot.snapshot_id,
        results,
        checks,
        drift,
        engines,
        report_uri=lake.uri(f"{prefix}/report.json"),
        docs_uri=lake.uri(f"{prefix}/data_docs/index.html") if docs_dir else None,
        local_dir=out_dir if keep_dir else None,
    )
    payload = {
        "snapshot_uri": snapshot_uri,
        "success": report.success,
        "complete": tables is None,
        "code_version": code_version(),
        "validated_at": run_ts.isoformat(),
        "engines": engines,
        "data_as_of": data_as_of.isoformat() if data_as_of else None,
        "tables": [asdict(t) for t in results],
        "checks": [asdict(c) for c in checks],
        "drift": [asdict(d) for d in drift],
    }
    (out_dir / "report.json").write_text(json.dumps(payload, indent=2, default=str))
    (out_dir / "index.html").write_text(_render_html(report, payload))
    if docs_dir:
        shutil.copytree(docs_dir, out_dir / "data_docs")
    for path in sorted(p for p in out_dir.rglob("*") if p.is_file()):
        lake.upload_file(path, f"{prefix}/{path.relative_to(out_dir).as_posix()}")
    if report.success and current_profile is not None and tables is None:
        reference_doc = {
            **current_profile,
            "_snapshot_uri": snapshot_uri,
            "_accepted_at": run_ts.isoformat(),
        }
        lake.write_bytes(
            f"validation/{dataset}/{ACCEPTED_PROFILE}", json.dumps(reference_doc, indent=2).encode()
        )
    if report.failures and raise_on_failure:
        raise DataValidationError(
            snapshot_uri, report.failures, report.report_uri, report.local_dir
        )
    return report


def _render_html(report: ValidationReport, payload: dict[str, Any]) -> str:
    def esc(value: object) -> str:
        return html.escape(str(value))

    status = "PASSED" if report.success else "FAILED"
    rows = "".join(
        f"<tr><td>{esc(t.table)}</td><td>{esc(report.engines.get(t.table, ''))}</td>"
        f"<td>{t.rows:,}</td><td>{t.evaluated}</td>"
        f"<td class={'ok' if t.success else 'bad'}>{'pass' if t.success else 'fail'}</td></tr>"
        for t in report.tables
    )
    failures = "".join(f"<li>{esc(f.describe())}</li>" for f in report.failures) or "<li>none</li>"
    drift = (
        "".join(f"<tr><td>{esc(d.feature)}</td><td>{d.psi:.4f}</td></tr>" for d in report.drift)
        or "<tr><td colspan=2>no accepted reference yet</td></tr>"
    )
    docs = (
        '<p><a href="data_docs/index.html">Great Expectations Data Docs</a></p>'
        if report.docs_uri
        else ""
    )
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>Validation {esc(report.snapshot_id)}: {status}</title>
<style>body{{font-family:sans-serif;margin:2em}}
td,th{{padding:4px 10px;border-bottom:1px solid #ddd}}
.ok{{color:#1a7f37}}.bad{{color:#cf222e;font-weight:bold}}</style></head><body>
<h1>Validation of {esc(report.snapshot_id)}: <span class={"ok" if report.success else "bad"}>
{status}</span></h1>
<p>Snapshot: <code>{esc(report.snapshot_uri)}</code><br>Validated at {esc(payload["validated_at"])}
 by {esc(payload["code_version"])}</p>{docs}
<h2>Tables</h2><table><tr><th>table</th><th>engine</th><th>rows</th><th>expectations</th>
<th>status</th></tr>{rows}</table>
<h2>Failures</h2><ul>{failures}</ul>
<h2>Drift against the last accepted snapshot (PSI)</h2><table>{drift}</table>
</body></html>"""
