"""Settings from FLASHSALE_* variables, and the command line on small inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from flashsale_ml.cli import main
from flashsale_ml.config import Settings, get_settings


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FLASHSALE_HOME", str(tmp_path))
    monkeypatch.setenv("FLASHSALE_SEED", "7")
    monkeypatch.setenv("FLASHSALE_STORAGE_ROOT", "s3://lake/prefix/")
    settings = get_settings()
    assert settings.seed == 7
    assert settings.lake_uri == "s3://lake/prefix"
    assert settings.tracking_uri == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert settings.registered_model_name("propensity") == "flashsale-propensity"


def test_defaults_live_under_the_home_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FLASHSALE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FLASHSALE_STORAGE_ROOT", raising=False)
    assert get_settings().lake_uri == (tmp_path / "home" / "lake").resolve().as_uri()


def test_bad_storage_root_is_refused_with_the_variable_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLASHSALE_STORAGE_ROOT", "gs://nope")
    with pytest.raises(ValidationError, match="FLASHSALE_STORAGE_ROOT must start with"):
        get_settings()


def test_config_hash_is_stable_and_leaves_out_the_secret() -> None:
    a = Settings(seed=1, pseudonym_key="secret-a")
    b = Settings(seed=1, pseudonym_key="secret-b")
    assert a.config_hash() == b.config_hash()
    assert Settings(seed=2).config_hash() != a.config_hash()
    assert "pseudonym_key" not in a.public_dict()
    assert "secret-a" not in repr(a)


def test_cli_simulate_validate_features(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    lake = tmp_path.as_uri()
    assert (
        main(
            [
                "--log-level",
                "WARNING",
                "simulate",
                "--users",
                "300",
                "--days",
                "14",
                "--seed",
                "1",
                "--out",
                lake,
            ]
        )
        == 0
    )
    raw = json.loads(capsys.readouterr().out)["raw_uri"]
    assert main(["--log-level", "WARNING", "validate", "--data", raw, "--table", "users"]) == 0
    assert json.loads(capsys.readouterr().out)["success"] is True
    assert (
        main(
            [
                "--log-level",
                "WARNING",
                "features",
                "--data",
                raw,
                "--out",
                lake,
                "--as-of",
                "2026-01-11T19:00:00Z",
            ]
        )
        == 0
    )
    assert "features" in json.loads(capsys.readouterr().out)["features_uri"]


def test_cli_validate_reports_failures_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import pyarrow as pa

    from flashsale_ml.datasets import SnapshotWriter
    from flashsale_ml.storage import open_store

    with SnapshotWriter(open_store(tmp_path.as_uri()), "raw") as writer:
        writer.write_table(
            "users",
            pa.table(
                {
                    "user_id": pa.array([1, 1], pa.int64()),
                    "signup_ts": pa.array([0, 0], pa.timestamp("us", tz="UTC")),
                    "region": ["north", "south"],
                    "device_type": ["app", "fax"],
                }
            ),
        )
    assert main(["--log-level", "WARNING", "validate", "--data", writer.uri]) == 1
    err = capsys.readouterr().err
    assert "table 'users', column 'user_id': expect_column_values_to_be_unique" in err
    assert "table 'users', column 'device_type': expect_column_values_to_be_in_set" in err
    assert "'fax'" in err
