"""Distribution drift of key features against the last accepted snapshot, as PSI.

A profile holds, per feature, bin edges (deciles of the reference, for numeric features) or
categories, with the reference shares. Comparing a new snapshot bins it with the *reference's*
edges, so the two sets of shares are comparable.

References:
    Yurdakul, B. (2018). Statistical Properties of Population Stability Index. PhD thesis,
    Western Michigan University. (PSI < 0.1 stable, 0.1-0.25 moderate, > 0.25 major shift.)
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import duckdb

# (table, feature name, SQL expression over the table or a sub-select, kind)
KEY_FEATURES: tuple[tuple[str, str, str, str], ...] = (
    ("events", "events.log_price", "SELECT ln(price) AS x FROM events", "numeric"),
    ("events", "events.event_type", "SELECT event_type AS x FROM events", "categorical"),
    ("events", "events.hour", "SELECT hour(ts)::VARCHAR AS x FROM events", "categorical"),
    # Events per user *per day of history*: a raw count per user scales with how many days a
    # snapshot covers, so a legitimate 14-day extract would look like drift against a 28-day
    # reference (PSI 0.3). The rate is what stays comparable across history lengths.
    (
        "events",
        "events.per_user_day",
        "SELECT count(*)::DOUBLE / (SELECT greatest(epoch(max(ts) - min(ts)) / 86400.0, 1.0) "
        "FROM events) AS x FROM events GROUP BY user_id",
        "numeric",
    ),
    ("orders", "orders.log_unit_price", "SELECT ln(unit_price) AS x FROM orders", "numeric"),
    ("orders", "orders.qty", "SELECT least(qty, 5)::VARCHAR AS x FROM orders", "categorical"),
    ("orders", "orders.status", "SELECT status AS x FROM orders", "categorical"),
    ("users", "users.device_type", "SELECT device_type AS x FROM users", "categorical"),
)
EPSILON = 1e-4  # share floor so an empty bin does not make PSI infinite


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    psi: float
    reference_shares: list[float]
    current_shares: list[float]
    bins: list[str]


def psi(reference: list[float], current: list[float]) -> float:
    """Population stability index Σ (c − r) · ln(c / r) over bins, with shares floored at ε.

    Raises:
        ValueError: the share vectors differ in length or are empty.
    """
    if len(reference) != len(current) or not reference:
        raise ValueError(
            f"share vectors must be non-empty and equal in length, got "
            f"{len(reference)} and {len(current)}"
        )
    total = 0.0
    for r, c in zip(reference, current, strict=True):
        r, c = max(r, EPSILON), max(c, EPSILON)
        total += (c - r) * math.log(c / r)
    return total


def _shares(counts: list[int]) -> list[float]:
    n = sum(counts)
    return [c / n if n else 0.0 for c in counts]


def profile(con: duckdb.DuckDBPyConnection, tables: set[str]) -> dict[str, Any]:
    """Reference profile of a snapshot: decile edges or categories, with shares."""
    out: dict[str, Any] = {}
    for table, name, sql, kind in KEY_FEATURES:
        if table not in tables:
            continue
        if kind == "numeric":
            edges = con.execute(
                f"SELECT quantile_cont(x, [0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9]) FROM ({sql})"
            ).fetchall()[0][0]
            if edges is None:
                continue
            edges = sorted(set(float(e) for e in edges))
            out[name] = {"kind": kind, "edges": edges, "shares": _bin_shares(con, sql, edges)}
        else:
            rows = con.execute(f"SELECT x, count(*) FROM ({sql}) GROUP BY x ORDER BY x").fetchall()
            out[name] = {
                "kind": kind,
                "categories": [str(r[0]) for r in rows],
                "shares": _shares([int(r[1]) for r in rows]),
            }
    return out


def _bin_shares(con: duckdb.DuckDBPyConnection, sql: str, edges: list[float]) -> list[float]:
    conditions = [f"x < {edges[0]!r}"]
    conditions += [f"x >= {lo!r} AND x < {hi!r}" for lo, hi in itertools.pairwise(edges)]
    conditions.append(f"x >= {edges[-1]!r}")
    cols = ", ".join(f"count(*) FILTER (WHERE {c})" for c in conditions)
    counts = con.execute(f"SELECT {cols} FROM ({sql})").fetchall()[0]
    return _shares([int(c) for c in counts])


def compare(
    con: duckdb.DuckDBPyConnection, tables: set[str], reference: dict[str, Any]
) -> list[FeatureDrift]:
    """PSI of each profiled feature of the current snapshot against ``reference``."""
    drifts = []
    for table, name, sql, kind in KEY_FEATURES:
        ref = reference.get(name)
        if table not in tables or ref is None:
            continue
        if kind == "numeric":
            current = _bin_shares(con, sql, ref["edges"])
            bins = [f"bin{i}" for i in range(len(current))]
        else:
            rows = dict(con.execute(f"SELECT x, count(*) FROM ({sql}) GROUP BY x").fetchall())
            bins = sorted(set(ref["categories"]) | {str(k) for k in rows})
            ref_map = dict(zip(ref["categories"], ref["shares"], strict=True))
            current = _shares([int(rows.get(b, 0)) for b in bins])
            ref = {**ref, "shares": [ref_map.get(b, 0.0) for b in bins]}
        drifts.append(FeatureDrift(name, psi(ref["shares"], current), ref["shares"], current, bins))
    return drifts
