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


# --- UCI Online Retail -------------------------------------------------------------------------


@register_transform(
    "online_retail",
    outputs=("customers", "items", "lines", "traffic"),
    description="UCI Online Retail invoice lines, as flashsale_ml.loaders.load_online_retail: "
    "drops non-product codes and prices <= 0, upper-cases StockCode, Europe/London -> UTC "
    "(ambiguous times dropped, nonexistent shifted forward); 'customers' = one row per "
    "CustomerID (customer_id, signup_ts = first line, region = most frequent country); "
    "'items' = one row per stock_code (title = most frequent description, list_price = median "
    "price of sales, category by keywords); 'lines' = lines of known customers (order_id = "
    "1-based position by ts, InvoiceNo, StockCode, file order; qty = |Quantity| > 0; status "
    "cancelled for C-invoices); 'traffic' = every minute of the period from all lines "
    "(requests = lines, sessions = invoices, orders = non-cancelled invoices).",
)
def _online_retail(given: TransformInput) -> dict[str, str]:
    import pandas as pd

    from flashsale_ml.loaders import (
        RETAIL_NON_PRODUCT_CODES,
        RETAIL_SOURCE_TZ,
        retail_category,
    )

    con = given.con
    if given.source.kind == "parquet":
        paths = "[" + ", ".join(_lit(str(p)) for p in given.files) + "]"
        # File order breaks ties in the order ids, as the loader's stable sort does.
        rows = (
            f"SELECT *, dense_rank() OVER (ORDER BY filename) AS _file, file_row_number AS _row "
            f"FROM read_parquet({paths}, union_by_name=true, filename=true, "
            "file_row_number=true)"
        )
    else:
        raise ValueError("the online_retail transform reads the Parquet file (format: parquet)")
    codes = ", ".join(_lit(c) for c in RETAIL_NON_PRODUCT_CODES)
    kept = given.view(
        "kept",
        f"SELECT CAST(InvoiceNo AS VARCHAR) AS invoice, upper(trim(CAST(StockCode AS VARCHAR))) "
        "AS stock_code, Description AS description, CAST(Quantity AS BIGINT) AS quantity, "
        "CAST(InvoiceDate AS TIMESTAMP) AS local_ts, CAST(UnitPrice AS DOUBLE) AS unit_price, "
        "CAST(CAST(CustomerID AS BIGINT) AS VARCHAR) AS customer_id, Country AS country, "
        f"_file, _row FROM ({rows}) "
        f"WHERE upper(trim(CAST(StockCode AS VARCHAR))) NOT IN ({codes}) "
        "AND CAST(UnitPrice AS DOUBLE) > 0",
    )
    # Local -> UTC once per distinct time, with the loader's pandas rules (ambiguous -> dropped,
    # nonexistent -> shifted forward); ~23k distinct times instead of 540k lines.
    local = con.sql(f"SELECT DISTINCT local_ts FROM {kept} WHERE local_ts IS NOT NULL").df()
    stamps = pd.to_datetime(local["local_ts"])
    utc = stamps.dt.tz_localize(
        RETAIL_SOURCE_TZ, ambiguous="NaT", nonexistent="shift_forward"
    ).dt.tz_convert("UTC")
    zones = given.table(
        "zones",
        pa.table(
            {
                "local_ts": pa.array(stamps, pa.timestamp("us")),
                "ts": pa.array(utc, pa.timestamp("us", tz="UTC")),
            }
        ),
    )
    lines = given.view(
        "utc_lines",
        f"SELECT k.*, z.ts, starts_with(k.invoice, 'C') AS cancelled FROM {kept} k "
        f"JOIN {zones} z USING (local_ts) WHERE z.ts IS NOT NULL",
    )
    # Items: most frequent description (ties: the smallest, as pandas' mode), median price of
    # sales (of all lines where a code was only ever cancelled).
    titles = given.view(
        "titles",
        f"SELECT stock_code, description FROM (SELECT stock_code, description, "
        "row_number() OVER (PARTITION BY stock_code ORDER BY count(*) DESC, description) AS r "
        f"FROM {lines} WHERE description IS NOT NULL GROUP BY stock_code, description) "
        "WHERE r = 1",
    )
    distinct_titles = con.sql(f"SELECT DISTINCT description FROM {titles}").to_arrow_table()
    names = [*distinct_titles.column("description").to_pylist(), ""]
    categories = given.table(
        "categories",
        pa.table(
            {
                "title": pa.array(names, pa.string()),
                "category": pa.array([retail_category(t) for t in names], pa.string()),
            }
        ),
    )
    items = given.view(
        "items",
        "SELECT p.stock_code, coalesce(t.description, '') AS title, c.category, "
        "coalesce(p.sale_price, p.any_price) AS list_price FROM (SELECT stock_code, "
        "median(unit_price) FILTER (WHERE NOT cancelled) AS sale_price, "
        f"median(unit_price) AS any_price FROM {lines} GROUP BY stock_code) p "
        f"LEFT JOIN {titles} t USING (stock_code) "
        f"JOIN {categories} c ON c.title = coalesce(t.description, '')",
    )
    known = given.view("known", f"SELECT * FROM {lines} WHERE customer_id IS NOT NULL")
    customers = given.view(
        "customers",
        "SELECT customer_id, min(ts) AS signup_ts, "
        "arg_min(country, struct_pack(n := -n, country := country)) AS region FROM ("
        "SELECT customer_id, country, min(ts) AS ts, count(*) AS n "
        f"FROM {known} GROUP BY customer_id, country) GROUP BY customer_id",
    )
    orders = given.view(
        "lines",
        "SELECT * FROM (SELECT row_number() OVER (ORDER BY ts, invoice, stock_code, _file, _row) "
        "AS order_id, customer_id, stock_code, abs(quantity) AS qty, unit_price, ts, "
        "CASE WHEN cancelled THEN 'cancelled' ELSE 'completed' END AS status "
        f"FROM {known}) WHERE qty > 0",
    )
    traffic = given.view(
        "traffic",
        "SELECT m.ts, coalesce(a.requests, 0) AS requests, coalesce(a.sessions, 0) AS sessions, "
        "coalesce(a.orders, 0) AS orders FROM (SELECT unnest(generate_series("
        f"(SELECT min(date_trunc('minute', ts)) FROM {lines}), "
        f"(SELECT max(date_trunc('minute', ts)) FROM {lines}), INTERVAL 1 MINUTE)) AS ts) m "
        "LEFT JOIN (SELECT date_trunc('minute', ts) AS ts, count(*) AS requests, "
        "count(DISTINCT invoice) AS sessions, "
        "count(DISTINCT invoice) FILTER (WHERE NOT cancelled) AS orders "
        f"FROM {lines} GROUP BY 1) a USING (ts)",
    )
    return {"customers": customers, "items": items, "lines": orders, "traffic": traffic}
