"""``flashsale ingest --init``: a commented mapping template, written from the contract itself.

Every mappable table is listed with each column's type, nullability and rules, so the template
cannot drift from :mod:`flashsale_ml.contract`. The tables a minimal shop needs (users, items,
orders, and traffic derived from orders) are active; the others are commented out. Fill in the
``source.path`` and source column names, delete what your shop does not have, and run
``flashsale ingest --mapping mapping.yaml``.
"""

from __future__ import annotations

from flashsale_ml.contract import CONTRACT, Column, TableContract
from flashsale_ml.ingest.mapping import MAPPABLE_TABLES, type_kind

# Tables active in the template (a minimal shop); the rest are commented out.
ACTIVE = ("users", "items", "orders", "traffic")
PLACEHOLDER = "CHANGE-ME"

# Examples of every option, per column where they fit.
_EXAMPLES: dict[tuple[str, str], str] = {
    ("users", "user_id"): "customer_no            # raw customer id: hashed with your key",
    ("users", "signup_ts"): (
        "{from: created_at, timezone: Europe/London}   # naive local times -> UTC"
    ),
    ("users", "device_type"): (
        "{from: device, map: {M: mobile, D: desktop, T: tablet, A: app, '': unknown}}"
    ),
    ("orders", "ts"): '{from: order_time, format: "%d/%m/%Y %H:%M"}   # strptime format',
    ("orders", "status"): (
        "{from: status_code, map: {'1': completed, '2': cancelled, '3': returned}}"
    ),
    ("orders", "qty"): "{from: quantity, cast: int64}",
    ("items", "item_id"): "{from: sku, hash: my-shop-sku}   # text SKU -> stable int64 id",
    ("events", "ts"): "{from: epoch, cast: epoch_ms}   # Unix milliseconds",
}
_CONSTANTS: dict[str, dict[str, str]] = {
    "users": {"device_type": "unknown"},
    "items": {"brand": "unknown"},
    "orders": {"discount": "0.0"},
    "events": {"channel": "web"},
}


def _describe(table: TableContract, col: Column) -> str:
    parts = [str(col.type), "nullable" if col.nullable else "required"]
    if col.name in table.primary_key:
        parts.append("primary key")
    if col.name in table.foreign_keys:
        parts.append(f"-> {table.foreign_keys[col.name]}")
    if col.allowed:
        parts.append(f"one of {', '.join(col.allowed)}")
    if col.min_value is not None:
        parts.append(f">= {col.min_value:g}")
    if col.description:
        parts.append(col.description)
    return "; ".join(parts)


def _table_lines(name: str) -> list[str]:
    table = CONTRACT[name]
    lines = [f"  # {table.description}"]
    if name == "traffic":
        lines += [
            "  # Derived per minute from orders (requests = lines, sessions = distinct users,",
            "  # orders = completed lines) or events (sessions = distinct session_id, orders =",
            "  # purchases). Or map it from a source like any other table.",
            f"  {name}:",
            "    derive: {from: orders, per: minute}",
        ]
        return lines
    kind = "parquet" if name in ("events",) else "csv"
    lines += [
        f"  {name}:",
        "    source:",
        f"      path: {PLACEHOLDER}/{name}.{kind}   # file, glob (*.{kind}) or s3://bucket/key",
    ]
    if kind == "csv":
        lines.append('      delimiter: ","   # header: true, quote: \'"\', null_values: [""]')
    lines.append("    columns:   # contract column: source column, or {from: ..., options}")
    constants = _CONSTANTS.get(name, {})
    for col in table.columns:
        example = _EXAMPLES.get((name, col.name))
        described = _describe(table, col)
        if col.name in constants:
            lines.append(f"      # {col.name}: ...   # {described} (constant below)")
            continue
        if type_kind(col.type) == "list":
            lines.append(f"      {col.name}: {{from: {col.name}, split: '|'}}   # {described}")
            continue
        value = example or f"{col.name}"
        line = f"      {col.name}: {value}"
        if col.nullable:
            line = f"      # {col.name}: {value}"
        lines.append(f"{line}   # {described}" if not example else line)
        if example:
            lines.append(f"        # ^ {described}")
    if constants:
        lines.append("    constants:   # for columns the source does not have")
        for col_name, value in constants.items():
            lines.append(f"      {col_name}: {value}")
    lines.append("    # filter: [{column: status_code, op: ne, value: 'T'}]   # rows to keep")
    return lines


def render_template() -> str:
    """The commented mapping template (YAML)."""
    lines = [
        "# flashsale-ml ingest mapping: your files -> the data contract (docs/ingest.md).",
        "# Run: flashsale ingest --mapping mapping.yaml [--out LAKE]",
        "# Paths are relative to this file. Replace every CHANGE-ME; delete tables you lack.",
        "# Column options: from (source column), cast (int64|float64|string|timestamp|",
        "# epoch_s|epoch_ms|bool), timezone (for naive times), format (strptime, e.g.",
        "# '%d/%m/%Y %H:%M'; add %z for offsets), map ({source value: contract value};",
        "# any other value fails the ingest), split (list columns: separator, e.g. '|'),",
        "# hash (namespace: a text key -> a stable int64 id, e.g. for SKUs).",
        "# Tables starting with '#' are switched off: delete the '#' in column 0 to use one.",
        "# Constants fill columns your source lacks (never ids or primary keys).",
        "dataset: my-shop",
        "timezone: Europe/London   # zone of timestamps without an offset (IANA name)",
        "pseudonym:",
        "  columns: [user_id]   # contract columns holding raw customer ids; hashed with",
        "  prefix: ''           # FLASHSALE_PSEUDONYM_KEY (a secret) before anything is written",
        "tables:",
    ]
    for name in MAPPABLE_TABLES:
        block = _table_lines(name)
        if name in ACTIVE:
            lines += block
        else:
            lines += [block[0]]
            # '#' in column 0 before the line's own indent: delete it to switch a table on.
            lines += ["#" + line for line in block[1:]]
        lines.append("")
    return "\n".join(lines) + "\n"
