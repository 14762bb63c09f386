"""Convert real public datasets into the data contract.

Each ``load_*`` function is pure: a path in, contract tables out (plus a small report of what
was dropped or imputed and why). :func:`ingest` commits them as a snapshot. Point the loaders
at your own copy of a file; nothing here downloads anything.

Bad input fails before anything is written, as :class:`InputFileError` (a
:class:`~flashsale_ml.errors.DataError`) naming the file, the column, the rule and the first
offending rows: an empty or header-only file, a value that does not fit its column, or an
ingest that would leave a table without rows. User ids are keyed hashes; the key
(``FLASHSALE_PSEUDONYM_KEY`` unless passed) must be a secret one for real data, never the
public development key (:func:`flashsale_ml.config.check_pseudonym_key`).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from flashsale_ml.config import check_pseudonym_key, get_settings
from flashsale_ml.contract import CONTROL_ARM, conform, pseudonymize, stable_ids
from flashsale_ml.datasets import SnapshotWriter
from flashsale_ml.errors import DataError
from flashsale_ml.storage import ObjectStore

log = logging.getLogger(__name__)

# How many offending rows a message quotes.
SAMPLE_ROWS = 5


class InputFileError(DataError):
    """A source file cannot become contract tables.

    The message names the file, the column (where one is at fault), the rule, and the first
    offending rows as ``row N: value``, counting data rows from 1 (the first row after a CSV's
    header is row 1).
    """

    def __init__(
        self,
        path: Path | str,
        problem: str,
        column: str | None = None,
        rows: Sequence[tuple[int, Any]] = (),
    ) -> None:
        self.path = Path(path)
        self.column = column
        self.rows = list(rows)
        where = f"{self.path}" + (f", column {column!r}" if column else "")
        message = f"{where}: {problem}"
        if self.rows:
            quoted = ", ".join(f"row {n}: {_show(v)}" for n, v in self.rows)
            message += f"; first offending rows: {quoted}"
        super().__init__(message)


def _show(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return "<empty>"
    return repr(value.item() if isinstance(value, np.generic) else value)


@dataclass
class LoadedDataset:
    name: str
    tables: dict[str, pa.Table]
    report: dict[str, object] = field(default_factory=dict)


def _read_source(path: Path, sep: str = ",") -> pd.DataFrame:
    """Read a CSV (or ``.parquet``) file; refuse a missing, empty or header-only one."""
    if not path.is_file():
        raise InputFileError(path, "no such file")
    if path.stat().st_size == 0:
        raise InputFileError(path, "the file is empty (0 bytes); nothing to ingest")
    if path.suffix == ".parquet":
        try:
            frame = pd.read_parquet(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputFileError(path, f"not a readable Parquet file: {exc}") from None
    else:
        try:
            frame = pd.read_csv(path, sep=sep)
        except pd.errors.EmptyDataError:
            raise InputFileError(
                path, "the file has no header and no rows; nothing to ingest"
            ) from None
        except pd.errors.ParserError as exc:
            raise InputFileError(path, f"not a valid {sep!r}-separated file: {exc}") from None
        except UnicodeDecodeError as exc:
            raise InputFileError(path, f"not UTF-8 text: {exc}") from None
    if len(frame) == 0:
        what = "no rows" if path.suffix == ".parquet" else "a header but no data rows"
        raise InputFileError(path, f"the file has {what}; nothing to ingest")
    return frame


def _require_columns(
    frame: pd.DataFrame, columns: Sequence[str], source: Path, sep: str = ","
) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        hint = ""
        if len(frame.columns) == 1 and any(s in str(frame.columns[0]) for s in ",;\t|"):
            hint = f" (is the file separated by {sep!r}?)"
        raise InputFileError(
            source, f"missing column(s) {missing}; found {list(frame.columns)}{hint}"
        )


def _offending(frame: pd.DataFrame, mask: pd.Series, column: str) -> list[tuple[int, Any]]:
    """The first offending (row number, raw value) pairs; rows count from 1."""
    positions = np.flatnonzero(mask.to_numpy())[:SAMPLE_ROWS]
    values = frame[column].to_numpy()
    return [(int(i) + 1, values[i]) for i in positions]


def _fail_rows(frame: pd.DataFrame, mask: pd.Series, column: str, source: Path, rule: str) -> None:
    if mask.any():
        raise InputFileError(
            source,
            f"{rule}: {int(mask.sum()):,} of {len(frame):,} row(s) break it",
            column,
            _offending(frame, mask, column),
        )


def _numbers(
    frame: pd.DataFrame, column: str, source: Path, *, integer: bool, required: bool = True
) -> pd.Series:
    """``column`` as numbers; non-numeric, non-finite, missing (if ``required``) or, for an
    ``integer`` column, fractional values raise :class:`InputFileError` naming the rows."""
    raw = frame[column]
    if pd.api.types.is_integer_dtype(raw) and not raw.isna().any():
        return raw.astype("int64")  # whole numbers already, none missing
    if pd.api.types.is_bool_dtype(raw):
        numbers = pd.Series(np.nan, index=raw.index)  # TRUE/FALSE is not a number here
    elif pd.api.types.is_numeric_dtype(raw):
        numbers = raw.astype("float64")
    else:
        numbers = pd.to_numeric(raw, errors="coerce").astype("float64")
    present = raw.notna()
    bad = (present & numbers.isna()) | (numbers.notna() & ~np.isfinite(numbers))
    rule = "must be a number"
    if integer:
        bad |= numbers.notna() & np.isfinite(numbers) & (numbers % 1 != 0)
        rule = "must be a whole number"
    if required:
        bad |= ~present
        rule += " in every row"
    else:
        rule += " where given"
    _fail_rows(frame, bad, column, source, rule)
    if integer and required:
        return numbers.astype("int64")
    return numbers


def _texts(frame: pd.DataFrame, columns: Sequence[str], source: Path) -> None:
    """Every row of each of ``columns`` has a non-blank value."""
    for column in columns:
        values = frame[column]
        blank = values.isna() | (values.astype(str).str.strip() == "")
        _fail_rows(frame, blank, column, source, "must have a value in every row")


def _in_set(
    frame: pd.DataFrame, column: str, allowed: Sequence[Any], source: Path, what: str
) -> None:
    unknown = ~frame[column].isin(list(allowed))
    _fail_rows(frame, unknown, column, source, f"must be one of {list(allowed)} ({what})")


def _resolve_key(pseudonym_key: str | None) -> str:
    """The key for real data: the given one or ``FLASHSALE_PSEUDONYM_KEY``, never the public
    development key (see :func:`flashsale_ml.config.check_pseudonym_key`)."""
    key = pseudonym_key if pseudonym_key is not None else get_settings().pseudonym_key
    return check_pseudonym_key(key, purpose="real-data")


# --- Hillstrom e-mail experiment -------------------------------------------------------------

HILLSTROM_CAMPAIGN = "hillstrom-2008"
# The source gives no dates; this nominal start keeps timestamps valid and is documented.
HILLSTROM_START = datetime(2008, 3, 1, tzinfo=UTC)
HILLSTROM_ARMS = {
    "No E-Mail": CONTROL_ARM,
    "Mens E-Mail": "mens_email",
    "Womens E-Mail": "womens_email",
}
HILLSTROM_COLUMNS = [
    "recency",
    "history_segment",
    "history",
    "mens",
    "womens",
    "zip_code",
    "newbie",
    "channel",
    "segment",
    "visit",
    "conversion",
    "spend",
]


HILLSTROM_TEXT_COLUMNS = ("history_segment", "zip_code", "channel", "segment")
HILLSTROM_FLOAT_COLUMNS = ("history", "spend")


def load_hillstrom(path: Path, pseudonym_key: str | None = None) -> LoadedDataset:
    """Kevin Hillstrom's MineThatData e-mail experiment (64,000 customers, randomized).

    Returns the tables ``users``, ``campaigns`` (one campaign with the two e-mail promotions),
    ``assignments`` (the randomized arm: control = no e-mail), ``campaign_outcomes`` (visit,
    conversion, spend over the following two weeks) and ``hillstrom_customers`` (the
    pre-treatment covariates, for uplift models).

    ``pseudonym_key`` (default: ``FLASHSALE_PSEUDONYM_KEY``) keys the user-id hash; the public
    development key is refused for real data.

    Raises:
        InputFileError: the file is missing, empty, lacks a column, or a value breaks its
            column's rule (the message names the column and the first offending rows).
        DataError: the pseudonym key may not protect real data.

    References:
        Hillstrom, K. (2008). The MineThatData E-Mail Analytics And Data Mining Challenge.
    """
    path = Path(path)
    key = _resolve_key(pseudonym_key)
    frame = _read_source(path)
    _require_columns(frame, HILLSTROM_COLUMNS, path)
    _texts(frame, HILLSTROM_TEXT_COLUMNS, path)
    _in_set(frame, "segment", list(HILLSTROM_ARMS), path, "the experiment's arms")
    numbers = {
        c: _numbers(frame, c, path, integer=c not in HILLSTROM_FLOAT_COLUMNS)
        for c in HILLSTROM_COLUMNS
        if c not in HILLSTROM_TEXT_COLUMNS
    }
    frame = frame.assign(**numbers)
    n = len(frame)
    user_id = pseudonymize((f"hillstrom:{i}" for i in range(n)), key)
    # Newbies joined within the last 12 months; the source has no signup date, so signup is
    # imputed as 6 months (newbies) or 24 months (others) before the campaign.
    months = np.where(frame["newbie"].to_numpy() == 1, 6, 24)
    signup = [HILLSTROM_START - timedelta(days=30 * int(m)) for m in months]
    start_ts = pa.array([HILLSTROM_START], pa.timestamp("us", tz="UTC"))
    tables = {
        "users": conform(
            "users",
            pa.table(
                {
                    "user_id": user_id,
                    "signup_ts": pa.array(signup, pa.timestamp("us", tz="UTC")),
                    "region": frame["zip_code"].astype(str).str.lower().to_numpy(dtype=object),
                    "device_type": ["unknown"] * n,
                }
            ),
        ),
        "campaigns": conform(
            "campaigns",
            pa.table(
                {
                    "campaign_id": [HILLSTROM_CAMPAIGN],
                    "start_ts": start_ts,
                    "end_ts": pa.array(
                        [HILLSTROM_START + timedelta(days=14)], pa.timestamp("us", tz="UTC")
                    ),
                    "item_ids": pa.array([[]], pa.list_(pa.int64())),
                    "promo_types": [["mens_email", "womens_email"]],
                    "discount_depth": [0.0],
                    "budget": [0.0],
                    "holdout_share": [1 / 3],
                }
            ),
        ),
        "assignments": conform(
            "assignments",
            pa.table(
                {
                    "campaign_id": [HILLSTROM_CAMPAIGN] * n,
                    "user_id": user_id,
                    "arm": frame["segment"].map(HILLSTROM_ARMS).to_numpy(dtype=object),
                    "assigned_ts": pa.array([HILLSTROM_START] * n, pa.timestamp("us", tz="UTC")),
                }
            ),
        ),
        "campaign_outcomes": conform(
            "campaign_outcomes",
            pa.table(
                {
                    "campaign_id": [HILLSTROM_CAMPAIGN] * n,
                    "user_id": user_id,
                    "visit": frame["visit"].astype("int64").to_numpy(),
                    "conversion": frame["conversion"].astype("int64").to_numpy(),
                    "spend": frame["spend"].astype("float64").to_numpy(),
                }
            ),
        ),
        "hillstrom_customers": pa.table(
            {
                "user_id": user_id,
                "recency": frame["recency"].astype("int64").to_numpy(),
                "history_segment": frame["history_segment"].to_numpy(dtype=object),
                "history": frame["history"].astype("float64").to_numpy(),
                "mens": frame["mens"].astype("int64").to_numpy(),
                "womens": frame["womens"].astype("int64").to_numpy(),
                "zip_code": frame["zip_code"].to_numpy(dtype=object),
                "newbie": frame["newbie"].astype("int64").to_numpy(),
                "channel": frame["channel"].to_numpy(dtype=object),
            }
        ),
    }
    return LoadedDataset("hillstrom", tables, {"rows": n, "imputed": ["users.signup_ts"]})


# --- UCI Online Retail -------------------------------------------------------------------------

RETAIL_COLUMNS = [
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
]
# Keyword buckets for a coarse product category; the source has none. First match wins.
RETAIL_CATEGORY_KEYWORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("christmas", ("CHRISTMAS", "XMAS", "ADVENT", "SANTA", "REINDEER")),
    ("bags", ("BAG", "PURSE", "TOTE")),
    ("lighting", ("LIGHT", "LANTERN", "CANDLE", "T-LIGHT", "LAMP")),
    (
        "kitchen",
        (
            "MUG",
            "CUP",
            "PLATE",
            "BOWL",
            "TEA",
            "CAKE",
            "BAKING",
            "JAR",
            "LUNCH",
            "SPOON",
            "BOTTLE",
            "NAPKIN",
            "TRAY",
        ),
    ),
    ("stationery", ("CARD", "WRAP", "PAPER", "NOTEBOOK", "PEN", "STICKER", "TAPE", "CALENDAR")),
    (
        "decor",
        (
            "HEART",
            "SIGN",
            "FRAME",
            "CLOCK",
            "DOORMAT",
            "CUSHION",
            "VINTAGE",
            "HANGING",
            "ORNAMENT",
            "WREATH",
            "BUNTING",
            "DECORATION",
        ),
    ),
    ("toys", ("TOY", "GAME", "DOLL", "JIGSAW", "PLAYHOUSE", "SPACEBOY", "DOLLY")),
    ("garden", ("GARDEN", "PLANT", "FLOWER", "BIRD")),
    ("jewellery", ("NECKLACE", "EARRINGS", "BRACELET", "RING ", "JEWEL")),
)
# Not products: postage, fees and bookkeeping lines.
RETAIL_NON_PRODUCT_CODES = (
    "POST",
    "DOT",
    "M",
    "C2",
    "BANK CHARGES",
    "AMAZONFEE",
    "CRUK",
    "D",
    "S",
    "B",
    "PADS",
    "ADJUST",
    "ADJUST2",
)
RETAIL_SOURCE_TZ = "Europe/London"


def _timestamps(frame: pd.DataFrame, column: str, source: Path) -> pd.Series:
    raw = frame[column]
    if pd.api.types.is_datetime64_any_dtype(raw):
        parsed, rule = raw, "must be a date and time in every row"
    else:
        # Text: the format is inferred from the first value, so a row in another format fails.
        parsed = pd.to_datetime(raw, errors="coerce")
        rule = "must be a date and time in every row, in one format throughout"
    _fail_rows(frame, parsed.isna(), column, source, rule)
    return parsed


def retail_category(description: str | None) -> str:
    text = (description or "").upper()
    for category, words in RETAIL_CATEGORY_KEYWORDS:
        if any(w in text for w in words):
            return category
    return "other"


def load_online_retail(path: Path, pseudonym_key: str | None = None) -> LoadedDataset:
    """UCI Online Retail (Chen, Sain & Guo, 2012): every invoice line of a UK gift retailer.

    Produces ``users`` (one per CustomerID; region = country), ``items`` (one per StockCode, with
    its most frequent description as title, median positive price as list price), ``orders``
    (invoice lines of known customers; ``C``-invoices become status ``cancelled`` with positive
    quantity) and ``traffic`` (per minute over the whole period, from all lines including
    guests: requests = lines, sessions = distinct invoices, orders = distinct non-cancelled
    invoices).

    Dropped, and counted in the report: non-product lines (postage, fees, adjustments) and
    lines with a non-positive price. Local UK times are converted to UTC.

    ``pseudonym_key`` (default: ``FLASHSALE_PSEUDONYM_KEY``) keys the user-id hash; the public
    development key is refused for real data.

    Raises:
        InputFileError: the file is missing, empty, lacks a column, a value breaks its column's
            rule (the message names the column and the first offending rows), or no product
            line is left.
        DataError: the pseudonym key may not protect real data.

    References:
        Chen, D., Sain, S. L., & Guo, K. (2012). Data mining for the online retail industry.
        Journal of Database Marketing & Customer Strategy Management, 19(3).
    """
    path = Path(path)
    key = _resolve_key(pseudonym_key)
    frame = _read_source(path)
    _require_columns(frame, RETAIL_COLUMNS, path)
    total = len(frame)
    _texts(frame, ["InvoiceNo", "StockCode", "Country"], path)
    frame = frame.assign(
        StockCode=frame["StockCode"].astype(str).str.strip().str.upper(),
        Quantity=_numbers(frame, "Quantity", path, integer=True),
        UnitPrice=_numbers(frame, "UnitPrice", path, integer=False),
        CustomerID=_numbers(frame, "CustomerID", path, integer=True, required=False),
        InvoiceDate=_timestamps(frame, "InvoiceDate", path),
    )
    non_product = frame["StockCode"].isin(RETAIL_NON_PRODUCT_CODES)
    bad_price = frame["UnitPrice"] <= 0
    frame = frame[~non_product & ~bad_price].copy()
    local = frame["InvoiceDate"]
    if local.dt.tz is None:
        local = local.dt.tz_localize(RETAIL_SOURCE_TZ, ambiguous="NaT", nonexistent="shift_forward")
    frame["ts"] = local.dt.tz_convert("UTC")
    frame = frame[frame["ts"].notna()]
    if frame.empty:
        raise InputFileError(
            path,
            f"no product line left to ingest: of {total:,} line(s), "
            f"{int(non_product.sum()):,} are postage, fees or adjustments "
            f"(StockCode in {list(RETAIL_NON_PRODUCT_CODES)}) and "
            f"{int((bad_price & ~non_product).sum()):,} have a price <= 0",
        )
    frame["cancelled"] = frame["InvoiceNo"].astype(str).str.startswith("C")
    frame["item_id"] = stable_ids(frame["StockCode"], "online-retail-stock-code")

    # Items: catalogue view from the lines themselves.
    sales = frame[~frame["cancelled"]]
    grouped = frame.groupby("StockCode", sort=True)
    title = grouped["Description"].agg(
        lambda s: s.dropna().mode().iloc[0] if s.notna().any() else ""
    )
    price = sales.groupby("StockCode")["UnitPrice"].median().reindex(title.index)
    price = price.fillna(grouped["UnitPrice"].median())
    items = pd.DataFrame(
        {
            "item_id": stable_ids(title.index, "online-retail-stock-code"),
            "category": [retail_category(t) for t in title],
            "brand": "unknown",
            "list_price": price.to_numpy(),
            "cost": None,
            "stock_on_hand": None,
            "title": title.to_numpy(dtype=object),
        }
    )

    known = frame[frame["CustomerID"].notna()].copy()
    known["user_id"] = pseudonymize((f"online-retail:{int(c)}" for c in known["CustomerID"]), key)
    first_seen = known.groupby("user_id").agg(
        signup_ts=("ts", "min"), region=("Country", lambda s: s.mode().iloc[0])
    )
    users = pd.DataFrame(
        {
            "user_id": first_seen.index.to_numpy(),
            # No signup date in the source: first invoice is the earliest evidence of the account.
            "signup_ts": first_seen["signup_ts"].to_numpy(),
            "region": first_seen["region"].to_numpy(dtype=object),
            "device_type": "unknown",
        }
    )
    known = known.sort_values(["ts", "InvoiceNo", "StockCode"], kind="stable")
    orders = pd.DataFrame(
        {
            "order_id": np.arange(1, len(known) + 1, dtype=np.int64),
            "user_id": known["user_id"].to_numpy(),
            "item_id": known["item_id"].to_numpy(),
            "qty": known["Quantity"].abs().astype("int64").to_numpy(),
            "unit_price": known["UnitPrice"].astype("float64").to_numpy(),
            "discount": 0.0,
            "ts": known["ts"].to_numpy(),
            "campaign_id": None,
            "status": np.where(known["cancelled"], "cancelled", "completed"),
        }
    )
    orders = orders[orders["qty"] > 0]

    minute = frame["ts"].dt.floor("min")
    per_minute = (
        frame.assign(minute=minute)
        .groupby("minute")
        .agg(requests=("StockCode", "size"), sessions=("InvoiceNo", "nunique"))
    )
    per_minute["orders"] = (
        frame[~frame["cancelled"]].assign(minute=minute).groupby("minute")["InvoiceNo"].nunique()
    )
    full_range = pd.date_range(minute.min(), minute.max(), freq="min")
    traffic = per_minute.reindex(full_range, fill_value=0).fillna(0).astype("int64")
    traffic = traffic.rename_axis("ts").reset_index()

    tables = {
        "users": conform("users", pa.Table.from_pandas(users, preserve_index=False)),
        "items": conform("items", pa.Table.from_pandas(items, preserve_index=False)),
        "orders": conform("orders", pa.Table.from_pandas(orders, preserve_index=False)),
        "traffic": conform("traffic", pa.Table.from_pandas(traffic, preserve_index=False)),
    }
    report = {
        "source_lines": total,
        "dropped_non_product": int(non_product.sum()),
        "dropped_non_positive_price": int((bad_price & ~non_product).sum()),
        "guest_lines_traffic_only": int(frame["CustomerID"].isna().sum()),
        "imputed": ["users.signup_ts (first invoice)", "items.category (keywords)"],
    }
    return LoadedDataset("online-retail", tables, report)


# --- UCI Online Shoppers Purchasing Intention --------------------------------------------------

SHOPPERS_MONTHS = {
    "Jan": 1,
    "Feb": 2,
    "Mar": 3,
    "Apr": 4,
    "May": 5,
    "June": 6,
    "Jun": 6,
    "Jul": 7,
    "Aug": 8,
    "Sep": 9,
    "Oct": 10,
    "Nov": 11,
    "Dec": 12,
}
SHOPPERS_COLUMNS = {
    "Administrative": "administrative",
    "Administrative_Duration": "administrative_duration",
    "Informational": "informational",
    "Informational_Duration": "informational_duration",
    "ProductRelated": "product_related",
    "ProductRelated_Duration": "product_related_duration",
    "BounceRates": "bounce_rates",
    "ExitRates": "exit_rates",
    "PageValues": "page_values",
    "SpecialDay": "special_day",
    "OperatingSystems": "operating_systems",
    "Browser": "browser",
    "Region": "region",
    "TrafficType": "traffic_type",
    "VisitorType": "visitor_type",
    "Weekend": "weekend",
    "Revenue": "revenue",
}


SHOPPERS_INTEGER_COLUMNS = (
    "Administrative",
    "Informational",
    "ProductRelated",
    "OperatingSystems",
    "Browser",
    "Region",
    "TrafficType",
)
SHOPPERS_FLOAT_COLUMNS = (
    "Administrative_Duration",
    "Informational_Duration",
    "ProductRelated_Duration",
    "BounceRates",
    "ExitRates",
    "PageValues",
    "SpecialDay",
)


def _flags(frame: pd.DataFrame, column: str, source: Path) -> pd.Series:
    raw = frame[column]
    if pd.api.types.is_bool_dtype(raw):
        return raw.astype(bool)
    flags = raw.astype(str).str.strip().str.upper().map({"TRUE": True, "FALSE": False})
    _fail_rows(frame, flags.isna() | raw.isna(), column, source, "must be TRUE or FALSE")
    return flags.astype(bool)


def load_online_shoppers(path: Path) -> LoadedDataset:
    """UCI Online Shoppers Purchasing Intention (Sakar et al., 2019): 12,330 sessions.

    Produces ``shopper_sessions``: one row per session, snake_case columns, ``month`` as 1-12
    (for time-forward splits) and ``revenue`` as the purchase label. The file uses ``;``.

    References:
        Sakar, C. O., Polat, S. O., Katircioglu, M., & Kastro, Y. (2019). Real-time prediction
        of online shoppers' purchasing intention using multilayer perceptron and LSTM recurrent
        neural networks. Neural Computing and Applications, 31(10).

    Raises:
        InputFileError: the file is missing, empty, lacks a column, or a value breaks its
            column's rule (the message names the column and the first offending rows).
    """
    path = Path(path)
    frame = _read_source(path, sep=";")
    _require_columns(frame, [*SHOPPERS_COLUMNS, "Month"], path, sep=";")
    _in_set(frame, "Month", list(SHOPPERS_MONTHS), path, "month abbreviations")
    _texts(frame, ["VisitorType"], path)
    numbers = {
        c: _numbers(frame, c, path, integer=c in SHOPPERS_INTEGER_COLUMNS)
        for c in SHOPPERS_COLUMNS
        if c in SHOPPERS_INTEGER_COLUMNS or c in SHOPPERS_FLOAT_COLUMNS
    }
    flags = {c: _flags(frame, c, path) for c in ("Weekend", "Revenue")}
    out = frame.assign(**numbers, **flags).rename(columns=SHOPPERS_COLUMNS)
    out["month"] = frame["Month"].map(SHOPPERS_MONTHS).astype("int64")
    out["session_id"] = np.arange(1, len(out) + 1, dtype=np.int64)
    table = conform("shopper_sessions", pa.Table.from_pandas(out, preserve_index=False))
    return LoadedDataset(
        "online-shoppers",
        {"shopper_sessions": table},
        {"rows": len(out), "positive_rate": float(out["revenue"].mean())},
    )


LOADERS: dict[str, Callable[..., LoadedDataset]] = {
    "hillstrom": load_hillstrom,
    "online-retail": load_online_retail,
    "online-shoppers": load_online_shoppers,
}


def ingest(dataset: str, path: Path, lake: ObjectStore, pseudonym_key: str | None = None) -> str:
    """Load ``dataset`` from ``path`` and commit it as a snapshot; returns the snapshot URI.

    ``pseudonym_key`` defaults to ``FLASHSALE_PSEUDONYM_KEY``; datasets with user ids refuse
    the public development key before reading anything. Nothing is written unless every table
    has rows: an ingest of nothing fails.

    Raises:
        InputFileError: the file cannot become contract tables, or a table would be empty.
        DataError: unknown dataset, or the pseudonym key may not protect real data.
    """
    try:
        loader = LOADERS[dataset]
    except KeyError:
        raise DataError(f"unknown dataset {dataset!r}; choose from {sorted(LOADERS)}") from None
    kwargs = {}
    if "pseudonym_key" in inspect.signature(loader).parameters:
        kwargs["pseudonym_key"] = _resolve_key(pseudonym_key)  # fail before reading the file
    loaded = loader(Path(path), **kwargs)
    empty = [name for name, table in loaded.tables.items() if table.num_rows == 0]
    if empty:
        raise InputFileError(
            path,
            f"nothing to ingest: table(s) {empty} would have no rows (every table of a "
            f"snapshot needs at least one); loader report: {loaded.report}",
        )
    metadata = {
        "source_path": str(Path(path).resolve()),
        "loader": dataset,
        "report": loaded.report,
    }
    with SnapshotWriter(lake, dataset, metadata=metadata) as writer:
        for name, table in loaded.tables.items():
            writer.write_table(name, table)
    log.info(
        "ingested %s from %s: %s", dataset, path, {k: t.num_rows for k, t in loaded.tables.items()}
    )
    return writer.uri
