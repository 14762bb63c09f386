"""DuckDB connections over Parquet files, set up the same way wherever the package opens one."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import duckdb


def connect(
    tables: dict[str, Sequence[Path]] | None = None,
    memory_limit: str | None = None,
    threads: int | None = None,
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with one view per table over its Parquet files.

    Args:
        tables: view name -> the Parquet files it reads (none: a connection without views).
        memory_limit: DuckDB's memory cap, e.g. ``"4GB"`` (default: DuckDB's own).
        threads: DuckDB's thread count (default: DuckDB's, every core).

    The session time zone is UTC: hours, weekdays and dates of a timestamp, and the time zone
    of timestamps handed back to Python, must not depend on the machine's zone (with
    ``TZ=America/New_York`` a 19:00 UTC sale had ``sale_hour`` 14). Row order is only
    guaranteed where a query sorts (``preserve_insertion_order=false`` lets large scans and
    aggregations run in less memory), and there is no progress bar: task logs get the
    callers' own lines instead.
    """
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone='UTC'")
        if memory_limit:
            con.execute(f"SET memory_limit='{memory_limit}'")
        con.execute("SET preserve_insertion_order=false")
        con.execute("SET enable_progress_bar=false")
        if threads:
            con.execute(f"SET threads={int(threads)}")
        for name, files in (tables or {}).items():
            paths = ", ".join(_literal(str(p)) for p in files)
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet([{paths}])")
    except BaseException:
        con.close()
        raise
    return con


def _literal(text: str) -> str:
    """``text`` as a SQL string literal."""
    return "'" + text.replace("'", "''") + "'"
