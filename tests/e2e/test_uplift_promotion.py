"""The uplift kind end to end against a real ``mlflow server``: a T-learner trained, registered
and judged through ``flashsale train --model uplift --flavor t --promote``; an S-learner of the
same kind judged against it (Qini, paired bootstrap on the same per-arm holdout rows); the
champion alias serving per-arm uplifts of raw feature rows."""

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

PREFIX = "upl"
NAME = f"{PREFIX}-uplift"
ARMS = ("gift_with_purchase", "pct_discount", "timed_coupon")
# Every gate an uplift decision can report (flashsale_ml.promotion.decision; the uplift kind
# has no challenger-only checks, one no-regression gate and the per-arm segment gate).
GATES = ("holdout", "data", "behaviour", "absolute", "primary", "calibration", "segments")
# A small shop whose purchases follow the true probabilities (no sellouts). With seed 7 the
# T- and S-learners both have a positive Qini on the newest sale (0.016 and 0.014), so the
# first version passes the default absolute gate (Qini >= 0) and the second is judged against
# it; the test also copes with the other order.
SHOP = SimulationConfig(users=4_000, days=35, seed=7, sale_stock_factor=1000)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A real MLflow server and a validated feature snapshot of a small simulated shop."""
    work = tmp_path_factory.mktemp("uplift")
    with promotion_stack(work, SHOP, PREFIX, threads=2) as prepared:
        yield prepared


def test_an_uplift_model_trained_through_the_cli_is_registered_and_judged(
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
            "uplift",
            "--flavor",
            "t",
            "--features",
            stack["features_uri"],
            "--promote",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err[-4000:]
    result = json.loads(out)
    for metric in ("test_qini", "test_auuc", "test_uplift_at_30", "test_uplift_calibration_error"):
        assert np.isfinite(result[metric]), result

    registered = result["registered"]
    assert registered["name"] == NAME and registered["run_id"] == result["run_id"]
    version = registered["version"]
    mlflow_client = client(settings)
    tags = mlflow_client.get_model_version(NAME, version).tags
    assert tags[FLAVOR_TAG] == "t" and tags[KIND_TAG] == "uplift", tags
    fitted = [c for c in tags.get(FITTED_ON_TAG, "").split(",") if c]
    assert fitted and stack["newest"] not in fitted, (stack["newest"], fitted)
    assert mlflow_client.get_run(result["run_id"]).data.tags[TEST_CAMPAIGNS_TAG] == stack["newest"]

    promotion = result["promotion"]
    print("first decision:", json.dumps(promotion, indent=1))  # shown with -rP
    assert "error" not in promotion, promotion
    assert isinstance(promotion["promoted"], bool), promotion
    assert promotion["version"] == version and promotion["against"] is None
    assert_gate_lines_of(promotion["reasons"], promotion["promoted"], first_model=True)
    decision = logged_decision(settings, promotion["decision_run_id"], stack["work"])
    gates = decision["by_gate"]
    assert set(gates) == {"holdout", "data", "behaviour", "absolute"}, sorted(gates)
    holdout = gates["holdout"]
    assert holdout["passed"], holdout
    assert stack["newest"] in holdout["detail"] and "unseen in training" in holdout["detail"]
    # The holdout is one block per arm: its treated users and every control user of the sale.
    newest = stack["newest_rows"]
    expected_rows = sum(
        int((newest["arm"] == arm).sum() + (newest["arm"] == "control").sum()) for arm in ARMS
    )
    assert f"scored on {expected_rows} rows" in holdout["detail"], holdout
    assert gates["data"]["passed"] and gates["behaviour"]["passed"], gates
    assert gates["absolute"]["detail"].startswith("Qini "), gates["absolute"]
    # The promotion holdout is the test sale the training run evaluated, ranked the same way.
    assert decision["metrics"]["challenger_qini"] == pytest.approx(result["test_qini"], abs=1e-6)
    assert decision["promote"] is promotion["promoted"]
    assert decision["challenger"] == f"{NAME}/{version}" and decision["champion"] is None

    verdict = "promoted" if promotion["promoted"] else "rejected"
    assert mlflow_client.get_run(promotion["decision_run_id"]).data.tags[RUN_DECISION_TAG] == (
        verdict
    )
    assert mlflow_client.get_model_version(NAME, version).tags[DECISION_TAG] == verdict
    assert read_state(mlflow_client, NAME).champion == (version if promotion["promoted"] else None)
    stack["versions"]["t"] = {
        "version": version,
        "promotion": promotion,
        "qini": result["test_qini"],
    }


def test_a_second_learner_is_judged_against_the_first_on_qini(stack: dict) -> None:
    from flashsale_ml import steps

    if "t" not in stack["versions"]:
        pytest.fail("the previous test left no judged uplift version", pytrace=False)
    settings: Settings = stack["settings"]
    first = stack["versions"]["t"]

    trained = steps.train_model(stack["features_uri"], "uplift", "s", settings=settings)
    registered = steps.register_model(trained["run_id"], settings=settings)  # kind from the run
    s_version = registered["version"]
    assert registered["name"] == NAME and s_version != first["version"]
    mlflow_client = client(settings)
    assert mlflow_client.get_model_version(NAME, s_version).tags[FLAVOR_TAG] == "s"
    s_promotion = steps.promote_model(s_version, "uplift", settings=settings)
    assert isinstance(s_promotion["promoted"], bool), s_promotion

    if first["promotion"]["promoted"]:
        assert s_promotion["against"] == first["version"], s_promotion
        comparison, judged, other = s_promotion, s_version, first["version"]
        judged_qini, other_qini = trained["test_qini"], first["qini"]
    else:  # the T-learner failed on its own: the S-learner is first, the T is judged again
        assert s_promotion["against"] is None and s_promotion["promoted"], s_promotion
        comparison = steps.promote_model(first["version"], "uplift", settings=settings)
        assert comparison["against"] == s_version, comparison
        judged, other = first["version"], s_version
        judged_qini, other_qini = first["qini"], trained["test_qini"]
    stack["versions"]["s"] = {"version": s_version, "promotion": s_promotion}
    stack["versions"]["comparison"] = comparison

    print("champion/challenger decision:", json.dumps(comparison, indent=1))  # shown with -rP
    assert "error" not in comparison and isinstance(comparison["promoted"], bool), comparison
    assert_gate_lines_of(comparison["reasons"], comparison["promoted"], first_model=False)
    decision = logged_decision(settings, comparison["decision_run_id"], stack["work"])
    gates = decision["by_gate"]
    assert set(GATES) == set(gates), sorted(gates)
    holdout = gates["holdout"]
    assert holdout["passed"] and holdout["detail"].startswith("both scored on "), holdout
    # The primary gate: the paired bootstrap of the normalized Qini on the same rows.
    primary = gates["primary"]
    assert primary["detail"].endswith(f"vs {NAME}/{other}"), primary
    assert "qini gain" in primary["detail"].lower(), primary
    if comparison["promoted"] or not primary["passed"]:  # reasons list failed gates, or all
        assert f"primary: {primary['detail']}" in comparison["reasons"], comparison["reasons"]
    assert any(r.startswith("primary:") for r in comparison["reasons"]) or (
        not comparison["promoted"] and primary["passed"]
    )
    metrics = decision["metrics"]
    assert metrics["challenger_qini"] == pytest.approx(judged_qini, abs=1e-6)
    assert metrics["champion_qini"] == pytest.approx(other_qini, abs=1e-6)
    assert metrics["difference"] == pytest.approx(
        metrics["challenger_qini"] - metrics["champion_qini"], abs=1e-9
    )
    assert (
        comparison["difference_ci_low"]
        <= comparison["difference"]
        <= comparison["difference_ci_high"]
    ), comparison
    # The segment gate compared each promotion arm's Qini.
    assert all(f"{arm} " in gates["segments"]["detail"] for arm in ARMS), gates["segments"]
    assert decision["challenger"] == f"{NAME}/{judged}"
    assert decision["champion"] == f"{NAME}/{other}"

    verdict = "promoted" if comparison["promoted"] else "rejected"
    assert mlflow_client.get_run(comparison["decision_run_id"]).data.tags[RUN_DECISION_TAG] == (
        verdict
    )
    judged_tags = mlflow_client.get_model_version(NAME, judged).tags
    assert judged_tags[DECISION_TAG] == verdict and judged_tags[AGAINST_TAG] == other
    state = read_state(mlflow_client, NAME)
    assert state.champion == (judged if comparison["promoted"] else other), state


def test_the_champion_alias_scores_per_arm_uplift(stack: dict) -> None:
    from flashsale_ml.scoring import AliasScorer, load_predictor

    if "comparison" not in stack["versions"]:
        pytest.fail("the previous tests left no champion/challenger decision", pytrace=False)
    settings: Settings = stack["settings"]
    frame: pd.DataFrame = stack["newest_rows"]
    champion = read_state(client(settings), NAME).champion
    assert champion is not None

    scorer = AliasScorer("uplift", settings, refresh_interval_s=0)
    scored = scorer.score(frame)
    assert scored.version == champion
    best = np.asarray(scored.scores, dtype=float)
    assert best.shape == (len(frame),) and np.isfinite(best).all()
    assert best.std() > 0
    per_arm = np.column_stack(
        [np.asarray(scorer.score(frame.assign(scored_arm=arm)).scores, dtype=float) for arm in ARMS]
    )
    assert np.isfinite(per_arm).all()
    np.testing.assert_allclose(best, per_arm.max(axis=1))  # no column: the best arm's uplift
    direct = np.asarray(load_predictor(f"models:/{NAME}/{champion}", settings)(frame))
    np.testing.assert_allclose(direct, best)


def assert_gate_lines_of(reasons: list[str], promoted: bool, first_model: bool) -> None:
    assert_gate_lines(reasons, promoted, first_model, GATES)
