"""Ingest a shop's own files through a mapping: stream, convert, pseudonymize, validate, commit.

The flow, per :func:`ingest_mapping`:

1. read and check the mapping (:mod:`flashsale_ml.ingest.mapping`);
2. open every source in DuckDB (CSV as text, so parsing is ours; Parquet as typed); ``s3://``
   sources are first downloaded through :func:`flashsale_ml.storage.open_store` (no
   credentials in SQL, no DuckDB extension);
3. collect the DISTINCT raw customer ids, hash them once each in Python
   (:func:`flashsale_ml.contract.pseudonymize`), register the mapping as an Arrow table and
   join it in DuckDB, so raw ids never reach a written file;
4. convert every column in SQL (casts, time zone to UTC, value maps, constants), streaming
   from the source into staged Parquet in a scratch folder; a value that cannot be read
   stops the copy at once and is reported with its source file, column, rule and rows;
5. derive tables (``traffic`` per minute from orders or events) from the staged tables;
6. validate every staged table with the suites in ``expectations/`` (DuckDB engine of the
   same JSON rules) and the cross-table checks, before anything is committed;
7. commit one snapshot with :class:`flashsale_ml.datasets.SnapshotWriter`.

Any failure leaves no snapshot: the scratch folder is removed and the writer is never opened
(or aborts).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from flashsale_ml import duck
from flashsale_ml.config import check_pseudonym_key, get_settings
from flashsale_ml.contract import CONTRACT, conform, pseudonymize, schema_problems, stable_ids
from flashsale_ml.datasets import SnapshotWriter
from flashsale_ml.errors import DataError
from flashsale_ml.ingest.mapping import (
    ColumnSpec,
    Mapping,
    _timestamp_constant,
    load_mapping,
    type_kind,
)
from flashsale_ml.ingest.transforms import TransformInput, run_transform
from flashsale_ml.storage import ObjectStore, open_store, temporary_scratch
from flashsale_ml.validation.gx_suites import SAMPLE_ROWS, ExpectationFailure, expectations_dir
from flashsale_ml.validation.relational import IntegrityConfig, run_integrity_checks
from flashsale_ml.validation.sql_rules import validate_parquet

log = logging.getLogger(__name__)

BATCH_ROWS = 1 << 20
DUCK_TYPES = {
    "int64": "BIGINT",
    "float64": "DOUBLE",
    "string": "VARCHAR",
    "timestamp": "TIMESTAMPTZ",
    "bool": "BOOLEAN",
}
_OFFSET = r"(Z|[+-]\d\d(:?\d\d)?)$"


class IngestDataError(DataError):
    """A source's rows break a rule; names the source file, the column, the rule and rows.

    Attributes: ``source`` (file), ``table`` and ``column`` (contract), ``source_column``,
    ``rule``, ``count`` (offending rows, when known) and ``rows`` (up to 5 source values).
    """

    def __init__(
        self,
        source: str,
        table: str,
        column: str | None,
        rule: str,
        rows: Sequence[Any] = (),
        *,
        source_column: str | None = None,
        count: int | None = None,
        more: Sequence[str] = (),
    ) -> None:
        self.source = source
        self.table = table
        self.column = column
        self.source_column = source_column
        self.rule = rule
        self.rows = list(rows)[:SAMPLE_ROWS]
        self.count = count
        self.more = list(more)
        where = source
        if source_column and column and source_column != column:
            where += f", column {source_column!r} (-> {table}.{column})"
        elif column:
            where += f", column {column!r} (-> {table}.{column})"
        else:
            where += f" (-> {table})"
        message = f"{where}: {rule}"
        if count is not None:
            message += f"; {count:,} row(s) break it"
        if self.rows:
            message += "; first offending rows: " + ", ".join(_show(v) for v in self.rows)
        if self.more:
            message += "\nother problems:\n" + "\n".join(f"  - {m}" for m in self.more)
        super().__init__(message)


def _show(value: Any) -> str:
    if value is None:
        return "<empty>"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_show(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, datetime):
        return f"TIMESTAMPTZ '{value.isoformat()}'"
    if isinstance(value, list):
        return "[" + ", ".join(_lit(v) for v in value) + "]"
    return "'" + str(value).replace("'", "''") + "'"


def _duck_type(data_type: pa.DataType) -> str:
    kind = type_kind(data_type)
    if kind == "list":
        return _duck_type(data_type.value_type) + "[]"
    return DUCK_TYPES[kind]


@dataclass
class _Converted:
    """One output column: its SQL, and (for mapped columns) when a source value is bad."""

    sql: str
    bad: str | None = None
    rule: str = ""


@dataclass
class IngestResult:
    uri: str
    rows: dict[str, int]
    filtered: dict[str, int]
    seconds: float


def ingest_mapping(
    mapping_path: Path | str | Mapping,
    lake: ObjectStore,
    pseudonym_key: str | None = None,
    *,
    memory_limit: str | None = None,
    threads: int | None = None,
    now: datetime | None = None,
) -> str:
    """Ingest the files named by a mapping into one validated snapshot; returns its URI.

    Args:
        mapping_path: the mapping file (YAML or JSON), or a loaded :class:`Mapping`.
        lake: where the snapshot goes.
        pseudonym_key: key of the user-id hash (default: ``FLASHSALE_PSEUDONYM_KEY``); the
            public development key is refused, as for every real-data ingest.
        memory_limit: DuckDB's cap (default: the ``duckdb_memory_limit`` setting).
        threads: DuckDB's threads (default: the ``compute_threads`` setting).
        now: reference time of the "not in the future" check (default: wall clock).

    Raises:
        MappingError: the mapping file is wrong (names the key).
        IngestDataError: a source breaks a rule (names file, column, rule, rows); no snapshot
            is committed.
        DataError: the pseudonym key may not protect real data.
    """
    return run_ingest(
        mapping_path,
        lake,
        pseudonym_key,
        memory_limit=memory_limit,
        threads=threads,
        now=now,
    ).uri


def run_ingest(
    mapping_path: Path | str | Mapping,
    lake: ObjectStore,
    pseudonym_key: str | None = None,
    *,
    memory_limit: str | None = None,
    threads: int | None = None,
    now: datetime | None = None,
) -> IngestResult:
    """:func:`ingest_mapping`, returning row counts and timing too.

    ``mapping_path`` may also be an already loaded :class:`Mapping` (e.g. a packaged one from
    :func:`flashsale_ml.ingest.mappings.public_mapping`).
    """
    started = time.perf_counter()
    mapping = mapping_path if isinstance(mapping_path, Mapping) else load_mapping(mapping_path)
    settings = get_settings()
    key = check_pseudonym_key(
        pseudonym_key if pseudonym_key is not None else settings.pseudonym_key,
        purpose="real-data",
    )
    with temporary_scratch("flashsale-ingest-") as work:
        con = duck.connect(
            memory_limit=memory_limit or settings.duckdb_memory_limit,
            threads=threads or settings.compute_threads,
        )
        try:
            con.execute(f"SET temp_directory={_lit(str(work / 'duckdb-tmp'))}")
            job = _Job(mapping, con, work, key)
            job.open_sources()
            job.register_id_maps()
            job.stage_sources()
            job.stage_derived()
            phase = time.perf_counter()
            job.validate(now)
            log.info("validated %d staged table(s) in %.1f s", len(job.staged), _since(phase))
            phase = time.perf_counter()
            uri = job.commit(lake)
            log.info("committed in %.1f s", _since(phase))
        finally:
            con.close()
    seconds = time.perf_counter() - started
    log.info("ingested %s in %.1f s: %s", mapping.path, seconds, job.rows)
    return IngestResult(uri, job.rows, job.filtered, seconds)


class _Job:
    def __init__(self, mapping: Mapping, con: duckdb.DuckDBPyConnection, work: Path, key: str):
        self.mapping = mapping
        self.con = con
        self.work = work
        self.key = key
        self.files: dict[str, list[Path]] = {}
        self.source_types: dict[str, dict[str, str]] = {}
        self.staged: dict[str, Path] = {}
        self.rows: dict[str, int] = {}
        self.filtered: dict[str, int] = {}
        # What passed before the commit, per table: the suite (by content hash) and how many
        # rows and expectations it checked; recorded in the snapshot's manifest.
        self.validation: dict[str, dict[str, Any]] = {}
        self.srm_alpha: float | None = None
        self.id_maps: dict[str, str] = {}  # pseudonym column or hash namespace -> view
        self.transformed: dict[tuple[str, str], dict[str, str]] = {}  # -> output relations
        (work / "stage").mkdir()

    @property
    def source_tables(self) -> list[str]:
        return [t for t, tm in self.mapping.tables.items() if tm.source is not None]

    def label(self, table: str) -> str:
        files = self.files.get(table)
        if (
            files
            and len(files) == 1
            and not self.mapping.tables[table].source.path.startswith("s3://")
        ):
            return str(files[0])
        return self.mapping.source_label(table)

    # --- sources ---------------------------------------------------------------------------

    def _resolve(self, table: str) -> list[Path]:
        source = self.mapping.tables[table].source
        assert source is not None
        if source.path.startswith("s3://"):
            return self._download(table, source.path)
        raw = Path(source.path)
        path = raw if raw.is_absolute() else self.mapping.base_dir / raw
        if any(ch in source.path for ch in "*?["):
            files = sorted(p for p in path.parent.glob(path.name) if p.is_file())
        else:
            files = [path] if path.is_file() else []
        if not files:
            raise IngestDataError(str(path), table, None, "no such file (nothing matches)")
        for f in files:
            if f.stat().st_size == 0:
                raise IngestDataError(str(f), table, None, "the file is empty (0 bytes)")
        return files

    def _download(self, table: str, uri: str) -> list[Path]:
        """Copy ``s3://bucket/key`` (or a glob in its last part) to the scratch folder."""
        folder, _, name = uri.rpartition("/")
        store = open_store(folder)
        if any(ch in name for ch in "*?["):
            keys = sorted(k for k in store.list("") if "/" not in k and fnmatch(k, name))
        else:
            keys = [name] if store.exists(name) else []
        if not keys:
            raise IngestDataError(uri, table, None, "no such object (nothing matches)")
        out = self.work / "sources" / table
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for i, k in enumerate(keys):
            local = out / f"{i:05d}-{Path(k).name}"
            store.download_file(k, local)
            paths.append(local)
        return paths

    def open_sources(self) -> None:
        for table in self.source_tables:
            tm = self.mapping.tables[table]
            source = tm.source
            files = self._resolve(table)
            self.files[table] = files
            paths = "[" + ", ".join(_lit(str(p)) for p in files) + "]"
            if source.kind == "parquet":
                reader = f"read_parquet({paths}, union_by_name=true)"
            else:
                nulls = "[" + ", ".join(_lit(v) for v in source.null_values) + "]"
                reader = (
                    f"read_csv({paths}, all_varchar=true, header={_lit(source.header)}, "
                    f"delim={_lit(source.delimiter)}, quote={_lit(source.quote)}, "
                    f"nullstr={nulls}, union_by_name=true, auto_detect=true)"
                )
            if source.transform is not None:
                reader = self._transformed(table, files, reader)
            try:
                self.con.execute(f"CREATE VIEW {_q('src_' + table)} AS SELECT * FROM {reader}")
                described = self.con.execute(f"DESCRIBE {_q('src_' + table)}").fetchall()
            except duckdb.Error as exc:
                raise IngestDataError(
                    self.label(table),
                    table,
                    None,
                    f"not a readable {source.kind.upper()} file: {_first_line(exc)}",
                ) from None
            types = {r[0]: r[1] for r in described}
            self.source_types[table] = types
            needed = [tm.spec(c).from_ for c in tm.columns] + [f.column for f in tm.filter]
            missing = [c for c in dict.fromkeys(needed) if c not in types]
            if missing:
                hint = ""
                if len(types) == 1 and any(s in next(iter(types)) for s in ",;\t|"):
                    hint = f" (is the file separated by {source.delimiter!r}? set delimiter)"
                col = missing[0]
                contract_col = next((c for c in tm.columns if tm.spec(c).from_ == col), None)
                raise IngestDataError(
                    self.label(table),
                    table,
                    contract_col,
                    f"missing source column(s) {missing}; the file has {list(types)}{hint}",
                    source_column=col,
                )
            where = " AND ".join(self._filter_sql(f) for f in tm.filter) or "TRUE"
            self.con.execute(
                f"CREATE VIEW {_q('flt_' + table)} AS SELECT * FROM {_q('src_' + table)} "
                f"WHERE {where}"
            )

    def _transformed(self, table: str, files: list[Path], reader: str) -> str:
        """Run the source's transform (once per transform and files); its output relation."""
        source = self.mapping.tables[table].source
        cache_key = (source.transform, reader)
        if cache_key not in self.transformed:
            n = len(self.transformed)
            raw = f"_raw_{n}"
            self.con.execute(f"CREATE VIEW {_q(raw)} AS SELECT * FROM {reader}")
            given = TransformInput(self.con, _q(raw), list(files), source, f"_tx{n}_")
            started = time.perf_counter()
            try:
                self.transformed[cache_key] = run_transform(source.transform, given)
            except (duckdb.Error, pa.ArrowException, OSError, ValueError) as exc:
                raise IngestDataError(
                    self.label(table),
                    table,
                    None,
                    f"transform {source.transform!r} failed: {_first_line(exc)}",
                ) from exc
            log.info(
                "transform %s on %s: %.1f s",
                source.transform,
                self.label(table),
                time.perf_counter() - started,
            )
        return self.transformed[cache_key][source.output]

    def _filter_sql(self, flt) -> str:
        col = _q(flt.column)
        text = f"CAST({col} AS VARCHAR)"
        op, value = flt.op, flt.value
        if op == "not_null":
            return f"{col} IS NOT NULL"
        if op == "is_null":
            return f"{col} IS NULL"
        if op in ("in", "not_in"):
            values = ", ".join(_lit(str(v)) for v in value)
            sql = f"{text} IN ({values})"
            return sql if op == "in" else f"({col} IS NULL OR NOT {sql})"
        if op == "starts_with":
            return f"starts_with({text}, {_lit(str(value))})"
        if op == "not_starts_with":
            return f"({col} IS NULL OR NOT starts_with({text}, {_lit(str(value))}))"
        sym = {"eq": "=", "ne": "<>", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}[op]
        if isinstance(value, int | float) and not isinstance(value, bool):
            return f"TRY_CAST({col} AS DOUBLE) {sym} {_lit(value)}"
        return f"{text} {sym} {_lit(str(value))}"

    # --- pseudonyms and stable ids -------------------------------------------------------------

    def register_id_maps(self) -> None:
        """Hash each DISTINCT raw id once; register raw -> id as Arrow tables for joins."""
        wanted: dict[str, list[tuple[str, str]]] = {}  # map name -> [(table, source col)]
        namespaces: dict[str, str | None] = {}
        for table in self.source_tables:
            tm = self.mapping.tables[table]
            for column in tm.columns:
                spec = tm.spec(column)
                if self.mapping.is_pseudonym(column):
                    name, ns = f"_pseudonym_{column}", None
                elif spec.hash is not None:
                    name, ns = f"_stable_{_slug(spec.hash)}", spec.hash
                else:
                    continue
                wanted.setdefault(name, []).append((table, spec.from_, spec.split))
                namespaces[name] = ns
        for name, uses in wanted.items():
            union = " UNION ".join(
                (
                    f"SELECT DISTINCT trim(CAST({_q(col)} AS VARCHAR)) AS raw "
                    if not split
                    else f"SELECT DISTINCT trim(unnest(string_split(CAST({_q(col)} AS VARCHAR), "
                    f"{_lit(split)}))) AS raw "
                )
                + f"FROM {_q('flt_' + table)} WHERE {_q(col)} IS NOT NULL"
                for table, col, split in uses
            )
            started = time.perf_counter()
            raw = self.con.sql(f"SELECT DISTINCT raw FROM ({union})").to_arrow_table()
            raws = raw.column("raw").to_pylist()
            ns = namespaces[name]
            if ns is None:
                prefix = self.mapping.pseudonym.prefix
                ids = pseudonymize((prefix + r for r in raws), self.key)
            else:
                ids = stable_ids(raws, ns)
            table = pa.table({"raw": pa.array(raws, pa.string()), "id": pa.array(ids, pa.int64())})
            self.con.register(name, table)
            self.id_maps[name] = name
            log.info(
                "%s: %s distinct raw ids hashed in %.1f s",
                name,
                f"{len(raws):,}",
                time.perf_counter() - started,
            )

    # --- conversion ----------------------------------------------------------------------------

    def _convert(self, table: str, column: str, spec: ColumnSpec, alias: str) -> _Converted:
        contract_col = CONTRACT[table].column(column)
        kind = type_kind(contract_col.type)
        src_type = self.source_types[table][spec.from_].upper()
        x = f"s.{_q(spec.from_)}"
        if self.mapping.is_pseudonym(column) or (spec.hash is not None and not spec.split):
            return _Converted(f"{alias}.id")
        if spec.map is not None:
            key = f"trim(CAST({x} AS VARCHAR))"
            whens = " ".join(f"WHEN {_lit(k)} THEN {_lit(v)}" for k, v in spec.map.items())
            keys = ", ".join(_lit(k) for k in spec.map)
            return _Converted(
                f"CASE {key} {whens} END",
                f"{x} IS NOT NULL AND {key} NOT IN ({keys})",
                f"a value not in the mapping's value map {list(spec.map)}",
            )
        is_text = src_type.startswith("VARCHAR")
        cast = spec.cast
        if kind == "list":
            element = _duck_type(contract_col.type.value_type)
            text = f"trim(CAST({x} AS VARCHAR))"
            parts = f"string_split({text}, {_lit(spec.split)})"
            if spec.hash is not None:
                name = f"_stable_{_slug(spec.hash)}"
                items = (
                    f"(SELECT list(m.id ORDER BY u.pos) FROM (SELECT unnest({parts}) AS v, "
                    f"generate_subscripts({parts}, 1) AS pos) u "
                    f"LEFT JOIN {name} m ON m.raw = trim(u.v))"
                )
            else:
                items = f"list_transform({parts}, lambda e: TRY_CAST(trim(e) AS {element}))"
            sql = f"CASE WHEN {text} = '' THEN [] ELSE {items} END"
            return _Converted(
                sql,
                f"{x} IS NOT NULL AND len(list_filter({sql}, lambda e: e IS NULL)) > 0",
                f"must be a {spec.split!r}-separated list of {element} values",
            )
        if kind == "string":
            return _Converted(f"CAST({x} AS VARCHAR)")
        if kind == "int64":
            if is_text:
                t = f"TRY_CAST(trim({x}) AS BIGINT)"
                frac = f"(contains({x}, '.') AND TRY_CAST(trim({x}) AS DOUBLE) <> {t})"
                return _Converted(
                    t, f"{x} IS NOT NULL AND ({t} IS NULL OR {frac})", "must be a whole number"
                )
            if src_type in ("DOUBLE", "FLOAT") or src_type.startswith("DECIMAL"):
                return _Converted(
                    f"CAST({x} AS BIGINT)",
                    f"{x} IS NOT NULL AND (NOT isfinite({x}) OR {x} <> trunc({x}))",
                    "must be a whole number",
                )
            return _Converted(f"CAST({x} AS BIGINT)")
        if kind == "float64":
            if is_text:
                t = f"TRY_CAST(trim({x}) AS DOUBLE)"
                return _Converted(
                    t, f"{x} IS NOT NULL AND ({t} IS NULL OR NOT isfinite({t}))", "must be a number"
                )
            return _Converted(
                f"CAST({x} AS DOUBLE)",
                f"{x} IS NOT NULL AND NOT isfinite(CAST({x} AS DOUBLE))",
                "must be a finite number",
            )
        if kind == "bool":
            t = (
                f"CASE WHEN lower(trim(CAST({x} AS VARCHAR))) IN ('true', '1', 'yes', 't') "
                f"THEN TRUE WHEN lower(trim(CAST({x} AS VARCHAR))) IN ('false', '0', 'no', 'f') "
                "THEN FALSE END"
            )
            return _Converted(t, f"{x} IS NOT NULL AND ({t}) IS NULL", "must be true or false")
        # timestamps
        tz = _lit(spec.timezone or self.mapping.timezone)
        if cast in ("epoch_s", "epoch_ms"):
            num = f"TRY_CAST({x} AS DOUBLE)"
            sql = f"to_timestamp({num})" if cast == "epoch_s" else f"to_timestamp({num} / 1000.0)"
            return _Converted(
                sql, f"{x} IS NOT NULL AND {num} IS NULL", f"must be a Unix time ({cast})"
            )
        if src_type.startswith("TIMESTAMP WITH TIME ZONE"):
            return _Converted(x)
        if src_type.startswith("TIMESTAMP") or src_type == "DATE":
            return _Converted(f"timezone({tz}, CAST({x} AS TIMESTAMP))")
        if not is_text:
            raise IngestDataError(
                self.label(table),
                table,
                column,
                f"a {src_type} column cannot be read as a timestamp (set cast: epoch_s or "
                "epoch_ms for Unix times)",
                source_column=spec.from_,
            )
        v = f"trim({x})"
        if spec.format:
            parsed = f"try_strptime({v}, {_lit(spec.format)})"
            if "%z" not in spec.format and "%Z" not in spec.format:
                parsed = f"timezone({tz}, {parsed})"
            rule = f"must be a date and time in the format {spec.format!r}"
        else:
            parsed = (
                f"CASE WHEN regexp_matches({v}, {_lit(_OFFSET)}) "
                f"THEN TRY_CAST({v} AS TIMESTAMPTZ) "
                f"ELSE timezone({tz}, TRY_CAST({v} AS TIMESTAMP)) END"
            )
            rule = "must be a date and time (ISO 8601, e.g. 2026-03-01 19:00:00; or set format)"
        return _Converted(parsed, f"{x} IS NOT NULL AND ({parsed}) IS NULL", rule)

    def _select(self, table: str) -> tuple[str, dict[str, _Converted]]:
        tm = self.mapping.tables[table]
        contract = CONTRACT[table]
        joins, selects, converted = [], [], {}
        for i, col in enumerate(contract.columns):
            duck_type = _duck_type(col.type)
            spec = tm.spec(col.name)
            if spec is not None:
                alias = f"j{i}"
                if self.mapping.is_pseudonym(col.name) or (
                    spec.hash is not None and not spec.split
                ):
                    name = (
                        f"_pseudonym_{col.name}"
                        if self.mapping.is_pseudonym(col.name)
                        else f"_stable_{_slug(spec.hash)}"
                    )
                    joins.append(
                        f"LEFT JOIN {name} {alias} ON {alias}.raw = "
                        f"trim(CAST(s.{_q(spec.from_)} AS VARCHAR))"
                    )
                conv = self._convert(table, col.name, spec, alias)
                converted[col.name] = conv
                sql = conv.sql
                if conv.bad:
                    message = _lit(f"bad value in {table}.{col.name}")
                    sql = f"CASE WHEN {conv.bad} THEN error({message}) ELSE {sql} END"
            elif col.name in tm.constants:
                value = tm.constants[col.name]
                if type_kind(col.type) == "timestamp" and value is not None:
                    value = _timestamp_constant(value)
                sql = _lit(value)
            else:
                sql = "NULL"
            selects.append(f"CAST({sql} AS {duck_type}) AS {_q(col.name)}")
        query = f"SELECT {', '.join(selects)} FROM {_q('flt_' + table)} s " + " ".join(joins)
        return query, converted

    def stage_sources(self) -> None:
        for table in self.source_tables:
            query, converted = self._select(table)
            out = self.work / "stage" / f"{table}.parquet"
            started = time.perf_counter()
            try:
                self.con.execute(
                    f"COPY ({query}) TO {_lit(str(out))} "
                    "(FORMAT parquet, COMPRESSION snappy, ROW_GROUP_SIZE 1048576)"
                )
            except duckdb.Error as exc:
                self._diagnose(table, converted, exc)
            self.staged[table] = out
            self.rows[table] = pq.ParquetFile(out).metadata.num_rows
            self.filtered[table] = 0
            if self.mapping.tables[table].filter:
                total = self.con.execute(f"SELECT count(*) FROM {_q('src_' + table)}").fetchall()
                self.filtered[table] = int(total[0][0]) - self.rows[table]
            log.info(
                "staged %s: %s rows in %.1f s",
                table,
                f"{self.rows[table]:,}",
                time.perf_counter() - started,
            )

    def _diagnose(self, table: str, converted: dict[str, _Converted], exc: Exception) -> None:
        """The copy stopped: find the first column whose source values break its rule."""
        tm = self.mapping.tables[table]
        pk = CONTRACT[table].primary_key
        pk_source = tm.spec(pk[0]).from_ if len(pk) == 1 and tm.spec(pk[0]) else None
        for column, conv in converted.items():
            if not conv.bad:
                continue
            source_col = tm.spec(column).from_
            bad = conv.bad
            relation = f"{_q('flt_' + table)} s"
            try:
                n = self.con.execute(f"SELECT count(*) FROM {relation} WHERE {bad}").fetchall()
            except duckdb.Error:
                continue
            n = n[0][0]
            if not n:
                continue
            cols = [source_col] if pk_source in (None, source_col) else [pk_source, source_col]
            sample = self.con.execute(
                f"SELECT {', '.join('s.' + _q(c) for c in cols)} FROM {relation} WHERE {bad} "
                f"LIMIT {SAMPLE_ROWS}"
            ).fetchall()
            rows = [r[0] if len(cols) == 1 else dict(zip(cols, r, strict=True)) for r in sample]
            raise IngestDataError(
                self.label(table),
                table,
                column,
                conv.rule,
                rows,
                source_column=source_col,
                count=int(n),
            )
        raise IngestDataError(
            self.label(table), table, None, f"could not be read: {_first_line(exc)}"
        ) from exc

    # --- derived tables ------------------------------------------------------------------------

    def stage_derived(self) -> None:
        for table, tm in self.mapping.tables.items():
            if tm.derive is None:
                continue
            parent = tm.derive.from_
            src = f"read_parquet({_lit(str(self.staged[parent]))})"
            # Two-level aggregation (minute x customer/session, then minute): DuckDB runs it
            # in parallel, where count(DISTINCT ...) per minute is several times slower.
            if parent == "orders":
                inner = (
                    "SELECT date_trunc('minute', ts) AS ts, user_id AS who, count(*) AS n, "
                    "count(*) FILTER (WHERE status = 'completed') AS done "
                    f"FROM {src} GROUP BY ALL"
                )
            else:
                inner = (
                    "SELECT date_trunc('minute', ts) AS ts, session_id AS who, count(*) AS n, "
                    "count(*) FILTER (WHERE event_type = 'purchase') AS done "
                    f"FROM {src} GROUP BY ALL"
                )
            per = (
                "SELECT ts, sum(n) AS requests, count(*) AS sessions, sum(done) AS orders "
                f"FROM ({inner}) GROUP BY ts"
            )
            query = f"""
                WITH per AS ({per}),
                span AS (SELECT min(ts) AS lo, max(ts) AS hi FROM per),
                minutes AS (
                    SELECT unnest(range(lo, hi + INTERVAL 1 minute, INTERVAL 1 minute)) AS ts
                    FROM span WHERE lo IS NOT NULL
                )
                SELECT CAST(m.ts AS TIMESTAMPTZ) AS ts,
                    CAST(coalesce(p.requests, 0) AS BIGINT) AS requests,
                    CAST(coalesce(p.sessions, 0) AS BIGINT) AS sessions,
                    CAST(coalesce(p.orders, 0) AS BIGINT) AS orders
                FROM minutes m LEFT JOIN per p USING (ts)
                ORDER BY 1
            """
            out = self.work / "stage" / f"{table}.parquet"
            self.con.execute(
                f"COPY ({query}) TO {_lit(str(out))} (FORMAT parquet, COMPRESSION snappy)"
            )
            self.staged[table] = out
            self.rows[table] = pq.ParquetFile(out).metadata.num_rows
            log.info("derived %s from %s: %s rows", table, parent, f"{self.rows[table]:,}")

    # --- validation ----------------------------------------------------------------------------

    def validate(self, now: datetime | None) -> None:
        failures: list[ExpectationFailure] = []
        for table, path in self.staged.items():
            problems = schema_problems(table, pq.read_schema(path))
            failures += [
                ExpectationFailure(table, "schema_matches_contract", c, p, None)
                for c, p in problems
            ]
            if problems:
                continue
            view = f"SELECT * FROM read_parquet({_lit(str(path))})"
            self.con.execute(f"CREATE OR REPLACE VIEW {_q(table)} AS {view}")
            result = validate_parquet(table, [path], self.con)
            failures += result.failures
            suite = expectations_dir() / f"{table}.json"
            self.validation[table] = {
                "suite": suite.name,
                "suite_sha256": hashlib.sha256(suite.read_bytes()).hexdigest(),
                "rows": result.rows,
                "expectations": result.evaluated,
            }
        settings = get_settings()
        config = IntegrityConfig(srm_alpha=settings.validation_srm_alpha, now=now)
        failures += run_integrity_checks(self.con, set(self.staged), None, config)
        self.srm_alpha = config.srm_alpha
        if failures:
            errors = [self._as_error(f) for f in failures]
            first = errors[0]
            raise IngestDataError(
                first.source,
                first.table,
                first.column,
                first.rule,
                first.rows,
                source_column=first.source_column,
                count=first.count,
                more=[str(e) for e in errors[1:]],
            )

    def _as_error(self, failure: ExpectationFailure) -> IngestDataError:
        table = failure.table
        column = failure.column if failure.column in CONTRACT[table].column_names else None
        rule = failure.expectation + (f" ({failure.rule})" if failure.rule else "")
        if failure.observed is not None and not failure.sample:
            rule += f"; observed {failure.observed!r}"
        rows = list(failure.sample)
        if column and self.mapping.is_pseudonym(column):
            rows = self._raw_ids(column, rows)
        source = self.label(table) if table in self.mapping.tables else table
        return IngestDataError(
            source,
            table,
            column,
            rule,
            rows,
            source_column=self.mapping.source_column(table, column),
            count=failure.unexpected_count,
        )

    def _raw_ids(self, column: str, ids: list[Any]) -> list[Any]:
        """Hashed ids in a message back to the source's raw ids, so the rows can be found."""
        name = f"_pseudonym_{column}"
        scalars = [v for v in ids if isinstance(v, int)]
        if name not in self.id_maps or not scalars:
            return ids
        found = dict(
            self.con.execute(
                f"SELECT id, raw FROM {name} WHERE id IN ({', '.join(map(str, scalars))})"
            ).fetchall()
        )
        return [found.get(v, v) if isinstance(v, int) else v for v in ids]

    # --- commit --------------------------------------------------------------------------------

    def commit(self, lake: ObjectStore) -> str:
        metadata = {
            "loader": "mapping",
            "mapping_path": str(self.mapping.path.resolve()),
            "mapping_sha256": hashlib.sha256(self.mapping.path.read_bytes()).hexdigest(),
            "sources": {t: self.mapping.source_label(t) for t in self.source_tables},
            "derived": {t: tm.derive.from_ for t, tm in self.mapping.tables.items() if tm.derive},
            "transforms": {
                t: f"{tm.source.transform}.{tm.source.output}"
                for t, tm in self.mapping.tables.items()
                if tm.source is not None and tm.source.transform
            },
            "report": {"rows": self.rows, "filtered_out": self.filtered},
            "validation": {
                "passed": True,  # a snapshot is only committed once every check has passed
                "engine": "duckdb",
                "suites": self.validation,
                "relational_checks_over": sorted(self.staged),
                "srm_alpha": self.srm_alpha,
            },
        }
        with SnapshotWriter(lake, self.mapping.dataset, metadata=metadata) as writer:
            for table, path in self.staged.items():
                if _has_contract_types(table, pq.read_schema(path)):
                    # Already the contract's types (DuckDB wrote them): move the file in
                    # instead of decoding and encoding 1e8 rows again.
                    writer.add_file(table, Path(path))
                    continue
                parquet = pq.ParquetFile(path)
                for batch in parquet.iter_batches(batch_size=BATCH_ROWS):
                    writer.append(table, conform(table, pa.Table.from_batches([batch])))
        return writer.uri


def _has_contract_types(table: str, schema: pa.Schema) -> bool:
    """The staged file has exactly the contract's columns, in order, with its types
    (:func:`~flashsale_ml.contract.schema_problems`; nullability aside: the suites have already
    checked every required column for nulls)."""
    return schema.names == CONTRACT[table].column_names and not schema_problems(table, schema)


def _since(started: float) -> float:
    return time.perf_counter() - started


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in text)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
