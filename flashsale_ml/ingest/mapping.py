"""The mapping file: how a shop's own files become the contract's tables.

A mapping (YAML or JSON) names, per contract table, the source file(s), which source column
feeds each contract column (with an optional cast, time zone, text format or value map),
constants for columns the source lacks, row filters, and derived tables (``traffic`` from
``orders`` or ``events``). :func:`load_mapping` reads and checks it against
:mod:`flashsale_ml.contract`; every problem is a :class:`MappingError` naming the mapping file
and the key at fault. ``docs/ingest.md`` is the reference for people.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from flashsale_ml.contract import CONTRACT, TS, Column, TableContract
from flashsale_ml.errors import DataError

# Tables a mapping may fill: every shop table the contract knows.
MAPPABLE_TABLES = tuple(t for t in CONTRACT if t != "shopper_sessions")
# What a derived table can be computed from, per derived table.
DERIVABLE = {"traffic": ("orders", "events")}
# Casts say how to read the source value; the result always has the contract's type.
CASTS = ("int64", "float64", "string", "timestamp", "epoch_s", "epoch_ms", "bool")
CASTS_FOR_TYPE = {
    "int64": ("int64", "float64", "string"),
    "float64": ("float64", "int64", "string"),
    "string": ("string", "int64", "float64", "bool"),
    "timestamp": ("timestamp", "epoch_s", "epoch_ms", "string"),
    "bool": ("bool", "string", "int64"),
    "list": (),
}
FILTER_OPS = (
    "eq",
    "ne",
    "in",
    "not_in",
    "gt",
    "ge",
    "lt",
    "le",
    "not_null",
    "is_null",
    "starts_with",
    "not_starts_with",
)
_IDENT = re.compile(r"^[^\x00-\x1f\"]{1,200}$")


class MappingError(DataError):
    """The mapping file itself is wrong; the message names the file and the key."""

    def __init__(self, path: Path | str, key: str, problem: str) -> None:
        self.path = Path(path)
        self.key = key
        self.problem = problem
        super().__init__(f"{self.path}, {key or '<top>'}: {problem}")


def type_kind(data_type: pa.DataType) -> str:
    """``int64``, ``float64``, ``string``, ``timestamp``, ``bool`` or ``list``."""
    if pa.types.is_timestamp(data_type):
        return "timestamp"
    if pa.types.is_integer(data_type):
        return "int64"
    if pa.types.is_floating(data_type):
        return "float64"
    if pa.types.is_boolean(data_type):
        return "bool"
    if pa.types.is_list(data_type) or pa.types.is_large_list(data_type):
        return "list"
    return "string"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Source(_Strict):
    """Where a table's rows come from: one file, a glob, or an ``s3://`` object or prefix."""

    path: str = Field(description="file, glob (*.csv) or s3://bucket/key; relative to the mapping")
    format: Literal["csv", "parquet"] | None = Field(
        default=None, description="default: from the file name (.parquet/.pq, else csv)"
    )
    delimiter: str = ","
    header: bool = True
    quote: str = '"'
    encoding: Literal["utf-8"] = "utf-8"
    null_values: list[str] = Field(default_factory=lambda: [""])
    transform: str | None = Field(
        default=None,
        description="a registered pre-transform (flashsale_ml.ingest.transforms) run on the "
        "file(s) first; the table then reads its 'output' relation",
    )
    output: str | None = Field(
        default=None, description="which relation of the transform (default: its only one)"
    )

    @property
    def kind(self) -> str:
        if self.format:
            return self.format
        lower = self.path.lower()
        return "parquet" if lower.endswith((".parquet", ".pq")) else "csv"


class ColumnSpec(_Strict):
    """One contract column from one source column."""

    from_: str = Field(alias="from", description="the source column")
    cast: str | None = Field(default=None, description=f"how to read it: one of {CASTS}")
    timezone: str | None = Field(default=None, description="zone of naive timestamps")
    format: str | None = Field(default=None, description="strptime format of text timestamps")
    map: dict[str, Any] | None = Field(default=None, description="source value -> contract value")
    split: str | None = Field(
        default=None, description="list columns: the separator inside the text, e.g. '|'"
    )
    hash: str | None = Field(
        default=None,
        description="namespace: replace the (text) key by a stable int64 id "
        "(flashsale_ml.contract.stable_ids); for non-personal keys such as SKUs",
    )

    @field_validator("map", mode="before")
    @classmethod
    def _keys_as_text(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {_key_text(k): v for k, v in value.items()}
        return value


def _key_text(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, float) and key.is_integer():
        return str(int(key))
    return str(key)


class Filter(_Strict):
    """Keep only rows where ``column op value`` holds (all filters must hold)."""

    column: str
    op: str = "eq"
    value: Any = None


class Derive(_Strict):
    from_: str = Field(alias="from", description="the table it is computed from")
    per: Literal["minute"] = "minute"


class TableMapping(_Strict):
    source: Source | None = None
    columns: dict[str, str | ColumnSpec] = Field(default_factory=dict)
    constants: dict[str, Any] = Field(default_factory=dict)
    filter: list[Filter] = Field(default_factory=list)
    derive: Derive | None = None

    def spec(self, column: str) -> ColumnSpec | None:
        value = self.columns.get(column)
        if value is None:
            return None
        return ColumnSpec(**{"from": value}) if isinstance(value, str) else value


class Pseudonym(_Strict):
    columns: list[str] = Field(
        default_factory=lambda: ["user_id"],
        description="contract columns holding raw customer ids (user_id always is one)",
    )
    prefix: str = Field(default="", description="prepended to each raw id before hashing")


class Mapping(_Strict):
    dataset: str = Field(description="snapshot dataset name in the lake")
    timezone: str = Field(default="UTC", description="zone of naive source timestamps")
    pseudonym: Pseudonym = Field(default_factory=Pseudonym)
    tables: dict[str, TableMapping]

    # Set by load_mapping: where the file is, for relative paths and messages.
    _path: Path | None = None

    @property
    def path(self) -> Path:
        return self._path or Path("<mapping>")

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def source_label(self, table: str) -> str:
        """The source path of ``table`` as the user wrote it, resolved for local files."""
        mapping = self.tables[table]
        if mapping.source is None:
            return f"(derived from {mapping.derive.from_ if mapping.derive else '?'})"
        raw = mapping.source.path
        if raw.startswith("s3://"):
            return raw
        return str((self.base_dir / raw).resolve()) if not Path(raw).is_absolute() else raw

    def source_column(self, table: str, column: str | None) -> str | None:
        if column is None or table not in self.tables:
            return None
        spec = self.tables[table].spec(column)
        return spec.from_ if spec else None

    def is_pseudonym(self, column: str) -> bool:
        return column in self.pseudonym.columns


# --- loading and checking ----------------------------------------------------------------------


def load_mapping(path: Path | str) -> Mapping:
    """Read a mapping (``.yaml``/``.yml``/``.json``) and check it against the contract.

    Raises:
        MappingError: the file is missing, not YAML/JSON, or breaks a rule; names the key.
    """
    path = Path(path)
    if not path.is_file():
        raise MappingError(path, "", "no such mapping file")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".json":
            raw = json.loads(text)
        else:
            import yaml

            raw = yaml.safe_load(text)
    except Exception as exc:  # yaml.YAMLError, json.JSONDecodeError
        raise MappingError(path, "", f"not valid YAML/JSON: {exc}") from None
    return parse_mapping(raw, path)


def parse_mapping(raw: Any, path: Path | str = "<mapping>") -> Mapping:
    """Check an already parsed mapping document (see :func:`load_mapping`)."""
    path = Path(path)
    if not isinstance(raw, dict):
        raise MappingError(path, "", "the mapping must be a mapping of keys (dataset, tables, ...)")
    try:
        mapping = Mapping.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        problem = err["msg"]
        if err["type"] == "extra_forbidden":
            problem = "unknown key (check its spelling against docs/ingest.md)"
        elif err["type"] == "missing":
            problem = "required key is missing"
        more = f" (and {len(exc.errors()) - 1} more problem(s))" if len(exc.errors()) > 1 else ""
        raise MappingError(path, key, problem + more) from None
    mapping._path = path
    check_mapping(mapping)
    return mapping


def _zone(path: Path, key: str, name: str) -> None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise MappingError(
            path, key, f"unknown time zone {name!r} (use an IANA name such as Europe/London)"
        ) from None


def check_mapping(mapping: Mapping) -> None:
    """Every rule a mapping must follow before any data is read."""
    path = mapping.path
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", mapping.dataset):
        raise MappingError(
            path, "dataset", "use letters, digits, '-', '_' or '.' (it becomes a folder name)"
        )
    _zone(path, "timezone", mapping.timezone)
    if not mapping.tables:
        raise MappingError(path, "tables", "map at least one contract table")
    if "user_id" not in mapping.pseudonym.columns:
        raise MappingError(
            path,
            "pseudonym.columns",
            "must include user_id: raw customer ids are never written to the lake",
        )
    for i, name in enumerate(mapping.pseudonym.columns):
        kinds = {
            type_kind(c.type)
            for t in mapping.tables
            if t in CONTRACT
            for c in CONTRACT[t].columns
            if c.name == name
        }
        if not kinds:
            raise MappingError(
                path,
                f"pseudonym.columns.{i}",
                f"{name!r} is no column of a mapped table",
            )
        if kinds != {"int64"}:
            raise MappingError(
                path, f"pseudonym.columns.{i}", f"{name!r} is not an int64 id column"
            )
    for table, tm in mapping.tables.items():
        _check_table(mapping, table, tm)


def _check_table(mapping: Mapping, table: str, tm: TableMapping) -> None:
    path = mapping.path
    key = f"tables.{table}"
    if table not in MAPPABLE_TABLES:
        raise MappingError(
            path, key, f"unknown contract table; choose from {', '.join(MAPPABLE_TABLES)}"
        )
    contract = CONTRACT[table]
    if tm.derive is not None:
        allowed = DERIVABLE.get(table)
        if not allowed:
            raise MappingError(
                path, f"{key}.derive", f"{table} cannot be derived; only {sorted(DERIVABLE)} can"
            )
        if tm.source is not None or tm.columns or tm.constants or tm.filter:
            raise MappingError(
                path, key, "a derived table has only 'derive' (no source, columns or constants)"
            )
        if tm.derive.from_ not in allowed:
            raise MappingError(
                path, f"{key}.derive.from", f"{table} derives from one of {list(allowed)}"
            )
        parent = mapping.tables.get(tm.derive.from_)
        if parent is None or parent.source is None:
            raise MappingError(
                path,
                f"{key}.derive.from",
                f"{tm.derive.from_} is not mapped from a source in this file",
            )
        return
    if tm.source is None:
        raise MappingError(path, f"{key}.source", "required key is missing (or use 'derive')")
    if tm.source.kind == "csv" and len(tm.source.delimiter) != 1:
        raise MappingError(path, f"{key}.source.delimiter", "must be a single character")
    _check_transform(path, f"{key}.source", tm.source)
    names = contract.column_names
    for where, cols in (("columns", tm.columns), ("constants", tm.constants)):
        for col in cols:
            if col not in names:
                raise MappingError(
                    path,
                    f"{key}.{where}.{col}",
                    f"{table} has no column {col!r}; its columns: {', '.join(names)}",
                )
    for col in tm.constants:
        _check_constant(
            mapping, table, contract, contract.column(col), tm.constants[col], f"{key}.constants"
        )
        if col in tm.columns:
            raise MappingError(
                path, f"{key}.constants.{col}", "mapped in 'columns' too; use one of them"
            )
    for column in contract.columns:
        spec = tm.spec(column.name)
        if spec is not None:
            _check_spec(mapping, table, column, spec, f"{key}.columns.{column.name}")
        elif column.name in tm.constants:
            continue  # checked above
        elif not column.nullable:
            raise MappingError(
                path,
                f"{key}.columns.{column.name}",
                f"required contract column ({column.type}, not nullable) is neither mapped "
                "nor given a constant",
            )
    for i, flt in enumerate(tm.filter):
        if flt.op not in FILTER_OPS:
            raise MappingError(
                path, f"{key}.filter.{i}.op", f"unknown op {flt.op!r}; one of {list(FILTER_OPS)}"
            )
        if not _IDENT.match(flt.column):
            raise MappingError(path, f"{key}.filter.{i}.column", "not a usable column name")
        if flt.op in ("in", "not_in") and not isinstance(flt.value, list):
            raise MappingError(path, f"{key}.filter.{i}.value", f"{flt.op} needs a list")
        if flt.op not in ("not_null", "is_null", "in", "not_in") and not isinstance(
            flt.value, str | int | float
        ):
            raise MappingError(path, f"{key}.filter.{i}.value", "needs a text or number value")


def _check_transform(path: Path, key: str, source: Source) -> None:
    """A named transform is registered and has the ``output`` asked for."""
    from flashsale_ml.ingest.transforms import TRANSFORMS

    if source.transform is None:
        if source.output is not None:
            raise MappingError(path, f"{key}.output", "'output' needs a 'transform'")
        return
    transform = TRANSFORMS.get(source.transform)
    if transform is None:
        raise MappingError(
            path, f"{key}.transform", f"unknown transform; one of {sorted(TRANSFORMS)}"
        )
    if source.output is None:
        if len(transform.outputs) != 1:
            raise MappingError(
                path, f"{key}.output", f"name one of the outputs {list(transform.outputs)}"
            )
        source.output = transform.outputs[0]
    elif source.output not in transform.outputs:
        raise MappingError(
            path,
            f"{key}.output",
            f"{source.transform!r} has no output {source.output!r}; "
            f"its outputs: {list(transform.outputs)}",
        )


def _check_spec(mapping: Mapping, table: str, column: Column, spec: ColumnSpec, key: str) -> None:
    path = mapping.path
    kind = type_kind(column.type)
    if not _IDENT.match(spec.from_):
        raise MappingError(path, f"{key}.from", "not a usable column name")
    if kind == "list" and not spec.split:
        raise MappingError(
            path,
            key,
            f"{column.name} is a list column: give the separator ({{from: ..., split: '|'}}) "
            "or a constant (e.g. [])",
        )
    if spec.split is not None and kind != "list":
        raise MappingError(path, f"{key}.split", f"{column.name} is not a list column")
    if spec.cast is not None:
        if spec.cast not in CASTS:
            raise MappingError(path, f"{key}.cast", f"unknown cast; one of {list(CASTS)}")
        if spec.cast not in CASTS_FOR_TYPE[kind]:
            raise MappingError(
                path,
                f"{key}.cast",
                f"{spec.cast} cannot become {column.type}; use one of {CASTS_FOR_TYPE[kind]}",
            )
    if (spec.timezone or spec.format) and kind != "timestamp":
        raise MappingError(
            path, key, f"timezone/format apply to timestamps; {column.name} is {column.type}"
        )
    if spec.timezone:
        _zone(path, f"{key}.timezone", spec.timezone)
    if spec.map is not None:
        if not spec.map:
            raise MappingError(path, f"{key}.map", "an empty map would reject every row")
        for source_value, target in spec.map.items():
            if target is None:
                continue
            if column.allowed is not None and target not in column.allowed:
                raise MappingError(
                    path,
                    f"{key}.map.{source_value}",
                    f"{target!r} is not allowed in {table}.{column.name}; "
                    f"allowed: {list(column.allowed)}",
                )
            _check_value(path, f"{key}.map.{source_value}", column, target)
    if spec.hash is not None:
        if kind != "int64" and not (
            kind == "list" and type_kind(column.type.value_type) == "int64"
        ):
            raise MappingError(path, f"{key}.hash", "only int64 id columns can be hashed")
        if mapping.is_pseudonym(column.name):
            raise MappingError(
                path,
                f"{key}.hash",
                f"{column.name} is a pseudonym column: it is hashed with the key",
            )
        if spec.map is not None or spec.cast is not None:
            raise MappingError(path, key, "hash cannot be combined with map or cast")


def _check_constant(
    mapping: Mapping,
    table: str,
    contract: TableContract,
    column: Column,
    value: Any,
    key: str,
) -> None:
    path = mapping.path
    key = f"{key}.{column.name}"
    if mapping.is_pseudonym(column.name):
        raise MappingError(path, key, "a customer id cannot be a constant")
    if contract.primary_key == (column.name,):
        raise MappingError(
            path, key, f"{column.name} is the primary key of {table}; map it from the source"
        )
    keys = set(contract.primary_key) | set(contract.foreign_keys)
    if column.name in keys and type_kind(column.type) == "int64":
        raise MappingError(
            path, key, f"{column.name} is an id key of {table}; map it from the source"
        )
    if value is None:
        if not column.nullable:
            raise MappingError(
                path, key, f"null constant for a column the contract requires ({column.type})"
            )
        return
    if column.allowed is not None and value not in column.allowed:
        raise MappingError(path, key, f"{value!r} is not allowed; allowed: {list(column.allowed)}")
    _check_value(path, key, column, value)


def _check_value(path: Path, key: str, column: Column, value: Any) -> None:
    """``value`` fits ``column``'s type and minimum."""
    kind = type_kind(column.type)
    ok = True
    if kind == "int64":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "float64":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        ok = ok and math.isfinite(float(value))
    elif kind == "string":
        ok = isinstance(value, str) and value.strip() != ""
    elif kind == "bool":
        ok = isinstance(value, bool)
    elif kind == "timestamp":
        ok = _timestamp_constant(value) is not None
    elif kind == "list":
        ok = isinstance(value, list)
        if ok:
            try:
                pa.array(value, column.type.value_type)
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                ok = False
    if not ok:
        hint = (
            " (an ISO time with its offset, e.g. 2026-01-01T00:00:00Z)"
            if kind == "timestamp"
            else ""
        )
        raise MappingError(path, key, f"{value!r} is not a valid {column.type}{hint}")
    if (
        column.min_value is not None
        and kind in ("int64", "float64")
        and float(value) < column.min_value
    ):
        raise MappingError(path, key, f"{value!r} is below the contract minimum {column.min_value}")


def _timestamp_constant(value: Any):
    from datetime import datetime

    if isinstance(value, datetime):
        return value if value.tzinfo else None
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None


def constant_array(column: Column, value: Any, rows: int = 1) -> pa.Array:
    """A constant as an Arrow array of the contract type (timestamps as UTC)."""
    if column.type.equals(TS) and value is not None:
        value = _timestamp_constant(value)
    return pa.array([value] * rows, column.type)
