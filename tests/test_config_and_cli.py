"""Settings from FLASHSALE_* variables, and the command line on small inputs."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from flashsale_ml.cli import main
from flashsale_ml.config import Settings, get_settings
from flashsale_ml.storage import open_store


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


def test_help_is_plain_text_without_rst_markup(capsys: pytest.CaptureFixture) -> None:
    from flashsale_ml.cli import build_parser

    parser = build_parser()
    texts = [parser.format_help()]
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for sub in subparsers.choices.values():
        texts.append(sub.format_help())
        texts += [
            s.format_help()
            for a in sub._actions
            if isinstance(a, argparse._SubParsersAction)
            for s in a.choices.values()
        ]
    assert len(texts) > 10
    assert not [t.splitlines()[0] for t in texts if "``" in t]


def test_each_demo_moves_the_shop_on_a_week(tmp_path: Path) -> None:
    from flashsale_ml.demo import ShopHistory, next_shop_history
    from flashsale_ml.simulation import SimulationConfig, simulate

    lake = open_store(tmp_path.as_uri())
    assert next_shop_history(lake.uri(), users=400, first_days=28) == ShopHistory(28, None)
    simulate(SimulationConfig(users=400, days=28, seed=1), lake)
    assert next_shop_history(lake.uri(), users=400, first_days=28) == ShopHistory(35, 28)
    simulate(SimulationConfig(users=400, days=35, seed=1), lake)
    assert next_shop_history(lake.uri(), users=400, first_days=28) == ShopHistory(42, 35)
    # Another shop size in the same lake does not move this demo's calendar.
    simulate(SimulationConfig(users=500, days=7, seed=1), lake)
    assert next_shop_history(lake.uri(), users=400, first_days=28).days == 42
    assert "moved on a week" in ShopHistory(42, 35).describe()


def test_cli_resolves_latest_and_says_when_there_is_none(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:

    missing = (tmp_path / "lake").as_uri() + "/datasets/raw/latest"
    with pytest.raises(SystemExit) as exited:
        main(["validate", "--data", missing])
    assert exited.value.code == 2
    assert "has no committed snapshot to call 'latest'" in capsys.readouterr().err


def test_mlflow_logs_through_the_host_logging_at_their_level(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture
) -> None:
    """Under Airflow a stderr line shows as [error]; MLflow's records must reach the root
    logger with their own level instead of MLflow's private stderr handler."""
    import logging

    from flashsale_ml.tracking import configure

    configure(Settings(home=tmp_path, mlflow_experiment="logging-check"))
    capfd.readouterr()
    caplog.clear()
    with caplog.at_level(logging.INFO):
        logging.getLogger("mlflow.store.db.utils").info("creating initial tables")
    assert [(r.name, r.levelname) for r in caplog.records] == [("mlflow.store.db.utils", "INFO")]
    assert "creating initial tables" not in capfd.readouterr().err


def test_an_explicit_zero_is_refused_not_read_as_the_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from flashsale_ml import steps

    monkeypatch.setenv("FLASHSALE_HOME", str(tmp_path))
    with pytest.raises(ValidationError, match="greater than or equal to 10"):
        steps.generate_data(users=0, days=28)
    assert main(["pipeline", "--users", "0", "--days", "0"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("flashsale pipeline: invalid SimulationConfig: users:")
    assert "(got 0)" in err[-1] and "days:" in err[-1]
    assert not (tmp_path / "lake" / "datasets" / "raw").exists()


def test_an_unreachable_tracking_server_fails_fast_in_one_line(tmp_path: Path) -> None:
    """MLflow's default budget took 248 s to give up, ending in a 121-line traceback."""
    import subprocess
    import sys

    from flashsale_ml.devstack import free_port

    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = subprocess.run(
        [str(Path(sys.executable).parent / "flashsale"), "pipeline", "--users", "300"],
        env={
            **os.environ,
            "FLASHSALE_HOME": str(tmp_path),
            "FLASHSALE_MLFLOW_TRACKING_URI": uri,
            "FLASHSALE_CLI_TRACKING_RETRIES": "1",
        },
        capture_output=True,
        text=True,
        # MLflow's own budget needs about 250 s to give up: a bound, not a benchmark.
        timeout=120,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("flashsale pipeline: a server did not answer")
    assert uri in last and "FLASHSALE_MLFLOW_TRACKING_URI" in last
    with_debug = subprocess.run(
        [str(Path(sys.executable).parent / "flashsale"), "--debug", "registry", "status"],
        env={**os.environ, "FLASHSALE_MLFLOW_TRACKING_URI": uri, "FLASHSALE_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert with_debug.returncode != 0 and "Traceback" in with_debug.stderr


def test_as_of_says_the_format_and_lists_the_campaign_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from flashsale_ml.simulation import SimulationConfig, simulate

    with pytest.raises(SystemExit):
        main(["features", "--data", "file:///x", "--as-of", "2026-13-01"])
    assert "'2026-13-01' is not an ISO 8601 UTC time such as" in capsys.readouterr().err
    raw = simulate(SimulationConfig(users=300, days=14, seed=2), open_store(tmp_path.as_uri()))
    code = main(["features", "--data", raw.raw_uri, "--as-of", "2026-01-06T19:00:00Z"])
    err = capsys.readouterr().err
    assert code == 1
    assert "--as-of must be one of the campaign starts: 2026-01-" in err
    assert "Traceback" not in err


def test_thread_count_is_the_steps_share_of_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert Settings().compute_threads == 8  # two training branches run at once
    assert Settings(max_parallel_steps=4).compute_threads == 4
    assert Settings(max_parallel_steps=32).compute_threads == 1
    assert Settings(threads=3).compute_threads == 3
