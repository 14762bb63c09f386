"""The DCN-v2 flavor end to end: trained with DDP under torchrun through ``flashsale train
--flavor dcn --promote``, registered and judged for promotion against a real ``mlflow server``,
then judged against (or by) a LightGBM version of the same kind, and served through the
champion alias whichever flavor holds it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from flashsale_ml.config import Settings
from flashsale_ml.registry import AGAINST_TAG, DECISION_TAG, FITTED_ON_TAG, read_state
from flashsale_ml.simulation import SimulationConfig
from tests.e2e.promotion_helpers import (
    FLAVOR_TAG,
    KIND_TAG,
    RUN_DECISION_TAG,
    TEST_CAMPAIGNS_TAG,
    assert_gate_lines,
    client,
    logged_decision,
    promotion_stack,
    use_cli_environment,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PREFIX = "dcn"
NAME = f"{PREFIX}-propensity"
# Every gate a propensity decision can report (flashsale_ml.promotion.decision).
GATES = (
    "holdout",
    "data",
    "behaviour",
    "absolute",
    "calibration_in_the_large",
    "primary",
    "calibration",
    "segments",
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A real MLflow server and a validated feature snapshot of a small simulated shop."""
    work = tmp_path_factory.mktemp("dcn")
    with promotion_stack(work, SimulationConfig(users=4_000, days=28, seed=21), PREFIX) as prepared:
        yield prepared


def test_a_dcn_trained_through_the_cli_is_registered_and_judged(
    stack: dict, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from flashsale_ml.cli import main

    settings: Settings = stack["settings"]
    use_cli_environment(monkeypatch, settings, PREFIX)
    capsys.readouterr()

    code = main(
        [
            "train",
            "--model",
            "propensity",
            "--flavor",
            "dcn",
            "--features",
            stack["features_uri"],
            "--epochs",
            "2",
            "--promote",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err[-4000:]
    result = json.loads(out)  # stdout is exactly the JSON summary, for scripts

    # Trained with DDP: two CPU processes over gloo, 2 epochs, no restarts.
    assert (result["world_size"], result["backend"], result["restarts"]) == (2, "gloo", 0)
    assert 1 <= result["epochs_run"] <= 2
    assert 0.0 < result["test_auc"] < 1.0

    # 1. Registered, with the lineage promotion reads back.
    registered = result["registered"]
    assert registered["name"] == NAME and registered["run_id"] == result["run_id"]
    version = registered["version"]
    mlflow_client = client(settings)
    tags = mlflow_client.get_model_version(NAME, version).tags
    assert tags[FLAVOR_TAG] == "dcn" and tags[KIND_TAG] == "propensity", tags
    fitted = [c for c in tags.get(FITTED_ON_TAG, "").split(",") if c]
    assert fitted, tags  # without it the holdout gate cannot prove the newest sale is unseen
    assert stack["newest"] not in fitted, (stack["newest"], fitted)
    training_run = mlflow_client.get_run(result["run_id"])
    assert training_run.data.tags[TEST_CAMPAIGNS_TAG] == stack["newest"]
    assert training_run.data.tags[FITTED_ON_TAG] == tags[FITTED_ON_TAG]

    # 2. Judged: a real decision with one line per gate, not an error.
    promotion = result["promotion"]
    assert "error" not in promotion, promotion
    assert isinstance(promotion["promoted"], bool), promotion
    assert promotion["version"] == version and promotion["against"] is None  # first of its kind
    assert_gate_lines_of(promotion["reasons"], promotion["promoted"], first_model=True)
    # Scored with its own flavor's predictor on the newest sale, which it never saw.
    decision = logged_decision(settings, promotion["decision_run_id"], stack["work"])
    holdout = decision["by_gate"]["holdout"]
    assert holdout["passed"], holdout
    assert stack["newest"] in holdout["detail"] and "unseen in training" in holdout["detail"]
    assert decision["by_gate"]["data"]["passed"], decision["by_gate"]["data"]
    # A float32 network's scores move by a rounding step with a row's place in the batch: the
    # row-order check allows the flavor's numerical noise, no more (it used to fail every DCN).
    behaviour = decision["by_gate"]["behaviour"]
    assert behaviour["passed"], behaviour
    assert decision["promote"] is promotion["promoted"]
    assert decision["challenger"] == f"{NAME}/{version}" and decision["champion"] is None

    verdict = "promoted" if promotion["promoted"] else "rejected"
    decision_run = mlflow_client.get_run(promotion["decision_run_id"])
    assert decision_run.data.tags["flashsale.step"] == "promote_model"
    assert decision_run.data.tags[RUN_DECISION_TAG] == verdict
    assert mlflow_client.get_model_version(NAME, version).tags[DECISION_TAG] == verdict
    state = read_state(mlflow_client, NAME)
    assert state.champion == (version if promotion["promoted"] else None), state
    stack["versions"]["dcn"] = {"version": version, "promotion": promotion}


def test_lightgbm_and_dcn_versions_are_judged_against_each_other(stack: dict) -> None:
    from flashsale_ml import steps
    from flashsale_ml.models.propensity import train_lgbm
    from flashsale_ml.models.propensity.lgbm import LgbmConfig

    if "dcn" not in stack["versions"]:
        pytest.fail("the previous test left no judged DCN version", pytrace=False)
    settings: Settings = stack["settings"]
    dcn = stack["versions"]["dcn"]
    dcn_version = dcn["version"]

    run = train_lgbm(stack["features_uri"], settings, config=LgbmConfig())
    registered = steps.register_model(run.run_id, settings=settings)  # kind from the run
    lgbm_version = registered["version"]
    assert registered["name"] == NAME and lgbm_version != dcn_version
    mlflow_client = client(settings)
    assert mlflow_client.get_model_version(NAME, lgbm_version).tags[FLAVOR_TAG] == "lgbm"
    lgbm = steps.promote_model(lgbm_version, "propensity", settings=settings)
    assert isinstance(lgbm["promoted"], bool), lgbm

    if dcn["promotion"]["promoted"]:
        # The DCN was champion: LightGBM was judged against it.
        assert lgbm["against"] == dcn_version, lgbm
        comparison, judged, other = lgbm, lgbm_version, dcn_version
    else:
        # The DCN was rejected on its own, so LightGBM became the first champion; the DCN is
        # judged again, now against LightGBM.
        assert lgbm["against"] is None, lgbm
        assert lgbm["promoted"], lgbm["reasons"]
        comparison = steps.promote_model(dcn_version, "propensity", settings=settings)
        assert comparison["against"] == lgbm_version, comparison
        judged, other = dcn_version, lgbm_version
    stack["versions"]["lgbm"] = {"version": lgbm_version, "promotion": lgbm}
    stack["versions"]["comparison"] = comparison

    assert "error" not in comparison and isinstance(comparison["promoted"], bool), comparison
    assert_gate_lines_of(comparison["reasons"], comparison["promoted"], first_model=False)
    # The paired bootstrap ran across flavors: both models scored on the same holdout rows.
    assert (
        comparison["difference_ci_low"]
        <= comparison["difference"]
        <= comparison["difference_ci_high"]
    ), comparison
    decision = logged_decision(settings, comparison["decision_run_id"], stack["work"])
    gates = decision["by_gate"]
    holdout = gates["holdout"]
    assert "different holdouts" not in holdout["detail"], holdout
    assert holdout["passed"] and holdout["detail"].startswith("both scored on "), holdout
    primary = gates["primary"]
    assert primary["detail"].endswith(f"vs {NAME}/{other}"), primary
    if comparison["promoted"] or not primary["passed"]:  # reasons list failed gates, or all
        assert f"primary: {primary['detail']}" in comparison["reasons"], comparison["reasons"]
    assert {"challenger_auc", "champion_auc"} <= set(decision["metrics"]), decision["metrics"]
    assert decision["challenger"] == f"{NAME}/{judged}"
    assert decision["champion"] == f"{NAME}/{other}"

    verdict = "promoted" if comparison["promoted"] else "rejected"
    decision_run = mlflow_client.get_run(comparison["decision_run_id"])
    assert decision_run.data.tags[RUN_DECISION_TAG] == verdict
    judged_tags = mlflow_client.get_model_version(NAME, judged).tags
    assert judged_tags[DECISION_TAG] == verdict and judged_tags[AGAINST_TAG] == other
    state = read_state(mlflow_client, NAME)
    assert state.champion == (judged if comparison["promoted"] else other), state


def test_the_champion_alias_scores_raw_features_whatever_its_flavor(stack: dict) -> None:
    from flashsale_ml.scoring import AliasScorer, load_predictor

    if "comparison" not in stack["versions"]:
        pytest.fail("the previous tests left no champion/challenger decision", pytrace=False)
    settings: Settings = stack["settings"]
    frame: pd.DataFrame = stack["newest_rows"]
    champion = read_state(client(settings), NAME).champion
    assert champion is not None

    scored = AliasScorer("propensity", settings, refresh_interval_s=0).score(frame)
    assert scored.version == champion
    scores = np.asarray(scored.scores, dtype=float)
    assert scores.shape == (len(frame),)
    assert np.all((scores > 0.0) & (scores < 1.0)), (scores.min(), scores.max())
    assert scores.std() > 0  # it ranks the users, not a constant

    # Each flavor's version scores the same raw rows through its own predictor.
    for flavor in ("dcn", "lgbm"):
        version = stack["versions"][flavor]["version"]
        direct = np.asarray(load_predictor(f"models:/{NAME}/{version}", settings)(frame))
        assert direct.shape == (len(frame),)
        assert np.all((direct > 0.0) & (direct < 1.0)), (flavor, direct.min(), direct.max())
        if version == champion:
            np.testing.assert_allclose(direct, scores)


def assert_gate_lines_of(reasons: list[str], promoted: bool, first_model: bool) -> None:
    assert_gate_lines(reasons, promoted, first_model, GATES)
