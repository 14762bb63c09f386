"""A team's own experiment, run outside this system, as a snapshot evaluation can read.

Two files (CSV or Parquet, local or ``s3://``): one row per assigned user with the user and
the arm (and optionally when they were assigned), and one row per user with outcomes. A column
mapping says which column is what. The result is a small raw snapshot (``experiments``) with
``campaigns``, ``assignments``, ``campaign_outcomes`` and, when a pre-period covariate is
mapped, ``experiment_covariates``; :mod:`flashsale_ml.evaluation.campaign` then evaluates it
like any other campaign, integrity checks included (a user in two arms, a sample-ratio
mismatch against the stated holdout share).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from flashsale_ml.contract import CONTROL_ARM, pseudonymize
from flashsale_ml.errors import DataError
from flashsale_ml.loaders import InputFileError, _read_source, _resolve_key
from flashsale_ml.storage import ObjectStore, open_store

EXPERIMENT_DATASET = "experiments"
# What a mapping may name: ids and arms, the outcome metrics evaluation knows, a covariate.
ID_FIELDS = ("user_id", "arm")
OPTIONAL_FIELDS = ("assigned_ts", "covariate")
METRIC_FIELDS = ("conversion", "visit", "spend")


def parse_mapping(pairs: list[str] | None) -> dict[str, str]:
    """``["user_id=customer", "arm=group"]`` -> ``{"user_id": "customer", "arm": "group"}``.

    Raises:
        ValueError: a pair without ``=`` or a field evaluation does not know.
    """
    mapping: dict[str, str] = {}
    known = (*ID_FIELDS, *OPTIONAL_FIELDS, *METRIC_FIELDS)
    for pair in pairs or []:
        field_name, sep, column = pair.partition("=")
        if not sep or not field_name or not column:
            raise ValueError(f"--map expects FIELD=COLUMN, got {pair!r}")
        if field_name not in known:
            raise ValueError(f"--map field {field_name!r} is not one of {list(known)}")
        mapping[field_name] = column
    return mapping


def _local(uri: str, tmp: Path) -> Path:
    """A local path of ``uri`` (an ``s3://`` or ``file://`` object is downloaded first)."""
    if "://" not in uri:
        return Path(uri)
    parent, _, name = uri.rstrip("/").rpartition("/")
    target = tmp / name
    target.write_bytes(open_store(parent).read_bytes(name))
    return target


def _column(frame: pd.DataFrame, mapping: Mapping[str, str], field_name: str, path: Path) -> str:
    column = mapping.get(field_name, field_name)
    if column not in frame.columns:
        raise InputFileError(
            path,
            f"no column {column!r} for {field_name} (columns: {list(frame.columns)}); map it "
            f"with --map {field_name}=<column>",
            column=column,
        )
    return column


def _ids(frame: pd.DataFrame, column: str, path: Path, key: str) -> np.ndarray:
    values = frame[column]
    blank = values.isna() | (values.astype(str).str.strip() == "")
    if blank.any():
        rows = [(int(i) + 1, values.iloc[i]) for i in np.flatnonzero(blank.to_numpy())[:5]]
        raise InputFileError(path, "must have a user id in every row", column=column, rows=rows)
    return pseudonymize(values.astype(str), key)


def experiment_snapshot(
    assignments: str,
    outcomes: str,
    mapping: Mapping[str, str],
    campaign_id: str,
    lake: ObjectStore,
    control: str = CONTROL_ARM,
    holdout_share: float | None = None,
    pseudonym_key: str | None = None,
) -> str:
    """Write an external experiment as a raw snapshot; returns its URI.

    Args:
        assignments: file of assigned users (user id, arm, optionally assigned_ts).
        outcomes: file of per-user outcomes (user id and any of conversion, visit, spend).
        mapping: evaluation field -> column (fields not mapped use their own name).
        campaign_id: the experiment's id in the snapshot and the report.
        lake: where the snapshot goes.
        control: the control arm's value in the arm column.
        holdout_share: the designed share of control (the sample-ratio check compares with
            it); default: every arm an equal share.
        pseudonym_key: the key user ids are pseudonymised with (real data: a secret one).

    Raises:
        InputFileError: a file cannot be read, a mapped column is missing, an id is blank, a
            metric is not a number, there is no control arm or no outcome metric.
    """
    from flashsale_ml.datasets import SnapshotWriter
    from flashsale_ml.loaders import _numbers

    if holdout_share is not None and not 0.0 < holdout_share < 1.0:
        raise DataError(
            f"--holdout-share must lie strictly between 0 and 1 (the designed share of "
            f"control), got {holdout_share}"
        )
    key = _resolve_key(pseudonym_key)
    with tempfile.TemporaryDirectory(prefix="flashsale-experiment-") as tmp:
        a_path, o_path = _local(assignments, Path(tmp)), _local(outcomes, Path(tmp))
        a_frame, o_frame = _read_source(a_path), _read_source(o_path)
    user_col, arm_col = (_column(a_frame, mapping, f, a_path) for f in ID_FIELDS)
    arms = a_frame[arm_col].astype(str).str.strip()
    if control not in set(arms):
        raise InputFileError(
            a_path,
            f"no user is in the control arm {control!r} (arms: {sorted(set(arms))}); name "
            "it with --control",
            column=arm_col,
        )
    promo_types = sorted(set(arms) - {control})
    # The control arm is called 'control' in every snapshot (the report still names the others
    # as the team does).
    arms = arms.where(arms != control, CONTROL_ARM)
    if not promo_types:
        raise InputFileError(a_path, f"every user is in {control!r}: nothing to compare")
    share = holdout_share if holdout_share is not None else 1.0 / (len(promo_types) + 1)
    if "assigned_ts" in mapping:
        ts_col = _column(a_frame, mapping, "assigned_ts", a_path)
        assigned = pd.to_datetime(a_frame[ts_col], utc=True, errors="coerce")
        if assigned.isna().any():
            rows = [
                (int(i) + 1, a_frame[ts_col].iloc[i]) for i in np.flatnonzero(assigned.isna())[:5]
            ]
            raise InputFileError(a_path, "must be a timestamp in every row", ts_col, rows)
    else:
        assigned = pd.Series(pd.Timestamp(datetime(1970, 1, 1, tzinfo=UTC)), index=a_frame.index)
    start = assigned.min().to_pydatetime()
    user_ids = _ids(a_frame, user_col, a_path, key)

    o_user = _column(o_frame, mapping, "user_id", o_path)
    metrics = {
        m: _column(o_frame, mapping, m, o_path)
        for m in METRIC_FIELDS
        if m in mapping or m in o_frame.columns
    }
    if not metrics:
        raise InputFileError(
            o_path,
            f"no outcome metric: map one of {list(METRIC_FIELDS)} (e.g. --map conversion=bought)",
        )
    outcome_ids = _ids(o_frame, o_user, o_path, key)
    repeated = pd.Series(outcome_ids).duplicated(keep="first").to_numpy()
    if repeated.any():
        rows = [(int(i) + 1, o_frame[o_user].iloc[i]) for i in np.flatnonzero(repeated)[:5]]
        raise InputFileError(
            o_path,
            "each user has one row of outcomes (a repeated user would count twice)",
            o_user,
            rows,
        )
    unknown = ~np.isin(outcome_ids, user_ids)
    if unknown.any():
        rows = [(int(i) + 1, o_frame[o_user].iloc[i]) for i in np.flatnonzero(unknown)[:5]]
        raise InputFileError(
            o_path, "every user with outcomes must be in the assignments", o_user, rows
        )
    ts = pa.timestamp("us", tz="UTC")
    tables = {
        "campaigns": pa.table(
            {
                "campaign_id": [campaign_id],
                "start_ts": pa.array([start], ts),
                "end_ts": pa.array([start], ts),
                "item_ids": pa.array([[]], pa.list_(pa.int64())),
                "promo_types": pa.array([promo_types], pa.list_(pa.string())),
                "discount_depth": [0.0],
                "budget": [0.0],
                "holdout_share": [share],
            }
        ),
        "assignments": pa.table(
            {
                "campaign_id": [campaign_id] * len(a_frame),
                "user_id": pa.array(user_ids, pa.int64()),
                "arm": arms.to_numpy(dtype=object),
                "assigned_ts": pa.array(assigned.dt.to_pydatetime(), ts),
            }
        ),
        "campaign_outcomes": pa.table(
            {
                "campaign_id": [campaign_id] * len(o_frame),
                "user_id": pa.array(outcome_ids, pa.int64()),
                **{
                    m: _numbers(o_frame, column, o_path, integer=False).to_numpy(dtype=float)
                    for m, column in metrics.items()
                },
            }
        ),
    }
    if "covariate" in mapping:
        column = _column(o_frame, mapping, "covariate", o_path)
        tables["experiment_covariates"] = pa.table(
            {
                "user_id": pa.array(outcome_ids, pa.int64()),
                "pre_value": _numbers(o_frame, column, o_path, integer=False).to_numpy(float),
            }
        )
    metadata = {
        "source_path": {"assignments": assignments, "outcomes": outcomes},
        "mapping": dict(mapping),
        "loader": "external-experiment",
    }
    with SnapshotWriter(lake, EXPERIMENT_DATASET, metadata=metadata) as writer:
        for name, table in tables.items():
            writer.write_table(name, table)
    return writer.uri
