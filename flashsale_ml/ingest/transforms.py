"""Named pre-transforms: what a mapping cannot express, done before the mapping reads a source.

A mapping maps source columns to contract columns row by row. Some sources need one step
more first: a key that is only the row's position in the file, one row per campaign from a
file of customers, lines grouped into customers or products. A *transform* is a registered
function that turns one source (its files) into one or more named relations (DuckDB views
or registered Arrow tables); a table of the mapping then reads one of them instead of the
raw file::

    tables:
      users:
        source: {path: hillstrom.csv, transform: hillstrom, output: customers}

Every table that names the same files and transform shares one run of it. The mapping's
``columns``, ``constants``, ``filter``, pseudonyms and validation apply to the transform's
output exactly as to a file, so a transform only adds what is missing and stays small.

Write one with :func:`register_transform`; ``docs/ingest.md`` lists those shipped.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv


@dataclass(frozen=True)
class TransformInput:
    """What a transform gets: the connection, the source and a private name prefix.

    Attributes:
        con: the ingest's DuckDB connection (session zone UTC, no insertion order).
        raw: a view over the source files read as the mapping's ``source`` says (CSV cells
            as text, Parquet typed); use it for set-based SQL.
        files: the local source files, in name order (for transforms that need file order).
        source: the mapping's ``source`` entry (delimiter, quote, null values, ...).
        prefix: prepend it to every relation the transform creates (names stay unique).
    """

    con: duckdb.DuckDBPyConnection
    raw: str
    files: list[Path]
    source: Any
    prefix: str

    def view(self, output: str, sql: str) -> str:
        """Create the view ``<prefix><output>`` as ``sql``; returns its (quoted) name."""
        name = _q(self.prefix + output)
        self.con.execute(f"CREATE VIEW {name} AS {sql}")
        return name

    def table(self, output: str, table: pa.Table) -> str:
        """Register an Arrow table as ``<prefix><output>``; returns its (quoted) name."""
        self.con.register(self.prefix + output, table)
        return _q(self.prefix + output)


@dataclass(frozen=True)
class Transform:
    name: str
    outputs: tuple[str, ...]
    description: str
    run: Callable[[TransformInput], dict[str, str]]


TRANSFORMS: dict[str, Transform] = {}


def register_transform(name: str, outputs: tuple[str, ...], description: str):
    """Decorator: register ``fn(TransformInput) -> {output: relation}`` under ``name``."""

    def wrap(fn: Callable[[TransformInput], dict[str, str]]):
        TRANSFORMS[name] = Transform(name, tuple(outputs), description, fn)
        return fn

    return wrap


def run_transform(name: str, given: TransformInput) -> dict[str, str]:
    """Run a registered transform; checks it returned every output it declares."""
    transform = TRANSFORMS[name]
    made = transform.run(given)
    missing = [o for o in transform.outputs if o not in made]
    if missing:
        raise RuntimeError(f"transform {name!r} did not produce {missing}")
    return made


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def read_csv_in_order(given: TransformInput, index_column: str) -> pa.Table:
    """Every CSV file, every cell as text, in file order, with a 0-based running row index.

    DuckDB runs without insertion order here, so a key that is a row's position is taken
    from Arrow's reader, which keeps the order of the file.
    """
    source = given.source
    parts = []
    for path in given.files:
        with path.open(encoding="utf-8", newline="") as handle:
            header = next(
                csv.reader(handle, delimiter=source.delimiter, quotechar=source.quote), []
            )
        part = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(autogenerate_column_names=not source.header),
            parse_options=pacsv.ParseOptions(delimiter=source.delimiter, quote_char=source.quote),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(header, pa.string()) if source.header else None,
                null_values=list(source.null_values),
                strings_can_be_null=True,
            ),
        )
        parts.append(part)
    table = pa.concat_tables(parts, promote_options="default")
    return table.append_column(index_column, pa.array(np.arange(table.num_rows), pa.int64()))


# --- Hillstrom ---------------------------------------------------------------------------------

HILLSTROM_CAMPAIGN = "hillstrom-2008"  # as flashsale_ml.loaders.HILLSTROM_CAMPAIGN


@register_transform(
    "hillstrom",
    outputs=("customers", "campaign"),
    description="Hillstrom e-mail experiment: 'customers' = every CSV row with "
    "customer_index (its 0-based row, the customer's only key) and campaign_id; "
    "'campaign' = the one campaign row (campaign_id).",
)
def _hillstrom(given: TransformInput) -> dict[str, str]:
    rows = read_csv_in_order(given, "customer_index")
    rows = rows.append_column(
        "campaign_id", pa.array([HILLSTROM_CAMPAIGN] * rows.num_rows, pa.string())
    )
    customers = given.table("customers", rows)
    campaign = given.view("campaign", f"SELECT DISTINCT campaign_id FROM {customers}")
    return {"customers": customers, "campaign": campaign}
