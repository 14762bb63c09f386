"""What the end-to-end promotion tests of each kind share: the CLI's environment, the
decision a ``promote_model`` run logged, and the shape of a decision's reasons."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from flashsale_ml.config import Settings

FLAVOR_TAG = "flashsale.model_flavor"
KIND_TAG = "flashsale.model_kind"
TEST_CAMPAIGNS_TAG = "flashsale.test_campaigns"
RUN_DECISION_TAG = "flashsale.promotion.decision"
FIRST_MODEL_LINE = "first model of this kind: absolute gates passed"
# What `flashsale` sets for itself when the user has not (it would outlive the test).
CLI_DEFAULTED_ENV = (
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
    "MLFLOW_HTTP_REQUEST_TIMEOUT",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT",
)


@contextlib.contextmanager
def promotion_stack(work: Path, shop, prefix: str, **settings_fields) -> Iterator[dict]:
    """A real MLflow server and a validated feature snapshot of a simulated ``shop`` (a
    ``SimulationConfig``): settings, features, the newest campaign and its rows (found from
    the rows, independently of the training split's own planning), and a ``versions`` dict
    the tests of a module fill in order."""
    from flashsale_ml.datasets import Snapshot
    from flashsale_ml.devstack import MlflowServer
    from flashsale_ml.features import build_features
    from flashsale_ml.simulation import simulate
    from flashsale_ml.storage import open_store
    from flashsale_ml.validation import validate_snapshot

    lake_uri = (work / "lake").as_uri()
    with MlflowServer(work, work / "mlflow.db", str(work / "artifacts")) as server:
        settings = Settings(
            home=work / "home",
            storage_root=lake_uri,
            mlflow_tracking_uri=server.url,
            registered_model_prefix=prefix,
            **settings_fields,
        )
        world = simulate(shop, open_store(lake_uri))
        validate_snapshot(world.raw_uri, settings=settings)  # the promotion's data gate
        features_uri = build_features(world.raw_uri, open_store(lake_uri))
        with Snapshot(features_uri) as snapshot:
            frame = snapshot.read_pandas("propensity")
        starts = frame.groupby("campaign_id")["as_of"].min().sort_values()
        assert len(starts) >= 3, starts  # train, early-stop and newest (holdout) sales
        newest = str(starts.index[-1])
        yield {
            "settings": settings,
            "features_uri": features_uri,
            "newest": newest,
            "newest_rows": frame[frame["campaign_id"] == newest].reset_index(drop=True),
            "work": work,
            "versions": {},
        }


def use_cli_environment(monkeypatch: pytest.MonkeyPatch, settings: Settings, prefix: str) -> None:
    """Point `flashsale` at the test's lake, MLflow server and registered-model prefix, with
    the variables the CLI defaults for itself absent, as in a fresh shell."""
    for key, value in {
        "FLASHSALE_HOME": str(settings.home),
        "FLASHSALE_STORAGE_ROOT": settings.lake_uri,
        "FLASHSALE_MLFLOW_TRACKING_URI": settings.tracking_uri,
        "FLASHSALE_REGISTERED_MODEL_PREFIX": prefix,
        "FLASHSALE_SEED": str(settings.seed),
    }.items():
        monkeypatch.setenv(key, value)
    for key in CLI_DEFAULTED_ENV:  # absent as in a fresh shell; restored after the test
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)


def client(settings: Settings):
    import mlflow

    mlflow.set_tracking_uri(settings.tracking_uri)
    return mlflow.MlflowClient()


def logged_decision(settings: Settings, run_id: str, work: Path) -> dict:
    """The ``promotion/decision.json`` a ``promote_model`` run logged (every gate, passed or
    not), with its gates keyed by name."""
    path = client(settings).download_artifacts(run_id, "promotion/decision.json", str(work))
    decision = json.loads(Path(path).read_text())
    decision["by_gate"] = {gate["name"]: gate for gate in decision["gates"]}
    return decision


def assert_gate_lines(
    reasons: list[str], promoted: bool, first_model: bool, gates: Iterable[str]
) -> None:
    """A real decision: a non-empty list of ``<gate>: ...`` lines (a first model's promotion
    opens with :data:`FIRST_MODEL_LINE`)."""
    known = set(gates)
    assert isinstance(reasons, list) and reasons, reasons
    lines = reasons[1:] if promoted and first_model else reasons
    if promoted and first_model:
        assert reasons[0] == FIRST_MODEL_LINE, reasons
    for line in lines:
        assert line.split(":", 1)[0] in known, (line, reasons)
