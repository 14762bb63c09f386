"""Champion/challenger promotion, rollback, races and alias-based scoring against a real
``mlflow server`` process (SQLite backend, local artifact store) over HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from flashsale_ml.config import Settings
from flashsale_ml.datasets import Snapshot
from flashsale_ml.devstack import MlflowServer
from flashsale_ml.features import build_features
from flashsale_ml.models.propensity import train_lgbm as train_propensity_lgbm_step
from flashsale_ml.models.propensity.lgbm import LgbmConfig
from flashsale_ml.registry import (
    AGAINST_TAG,
    DECISION_RUN_TAG,
    DECISION_TAG,
    DECISION_TAGS,
    FITTED_ON_TAG,
    LOCK_SUFFIX,
    ROLLED_BACK_AT_TAG,
    VERSION_LINEAGE_TAGS,
    StaleDecisionError,
    apply_decision,
    read_state,
    registry_lock,
)
from flashsale_ml.simulation import SimulationConfig, simulate
from flashsale_ml.storage import open_store
from flashsale_ml.validation import validate_snapshot

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

WEAK = LgbmConfig(max_rounds=3, num_leaves=2, early_stopping_rounds=3)
STRONG = LgbmConfig()
STUMP = LgbmConfig(max_rounds=1, num_leaves=2, early_stopping_rounds=1)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A real MLflow server and a validated feature snapshot of a simulated shop."""
    work = tmp_path_factory.mktemp("registry")
    lake_uri = (work / "lake").as_uri()
    with MlflowServer(work, work / "mlflow.db", str(work / "artifacts")) as server:
        base = Settings(home=work / "home", storage_root=lake_uri, mlflow_tracking_uri=server.url)
        world = simulate(SimulationConfig(users=5_000, days=28, seed=21), open_store(lake_uri))
        validate_snapshot(world.raw_uri, settings=base)
        features_uri = build_features(world.raw_uri, open_store(lake_uri))
        yield {"server": server, "base": base, "features_uri": features_uri, "work": work}


def settings_for(stack: dict, prefix: str, **overrides) -> Settings:
    """An isolated registered-model namespace per test on the shared server."""
    return stack["base"].model_copy(update={"registered_model_prefix": prefix, **overrides})


def train_and_register(stack: dict, settings: Settings, config: LgbmConfig) -> str:
    from flashsale_ml import steps

    run = train_propensity_lgbm_step(stack["features_uri"], settings, config=config)
    return steps.register_model(run.run_id, "propensity", settings)["version"]


def promote(settings: Settings, version: str) -> dict:
    from flashsale_ml import steps

    return steps.promote_model(version, "propensity", settings=settings)


def client(settings: Settings):
    import mlflow

    mlflow.set_tracking_uri(settings.tracking_uri)
    return mlflow.MlflowClient()


def test_champion_challenger_lifecycle(stack: dict, capsys: pytest.CaptureFixture) -> None:
    from flashsale_ml.cli import main
    from flashsale_ml.scoring import AliasScorer, load_predictor

    settings = settings_for(stack, "life")
    name = "life-propensity"
    mlflow_client = client(settings)
    with Snapshot(stack["features_uri"]) as snap:
        frame = snap.read_pandas("propensity").head(500)

    # 1. The first version becomes champion once it passes the absolute gates.
    v1 = train_and_register(stack, settings, WEAK)
    assert read_state(mlflow_client, name).champion is None  # registration never promotes
    # A new version carries a handful of readable tags and a one-line description; its
    # metrics stay on the training run.
    registered = mlflow_client.get_model_version(name, v1)
    assert set(registered.tags) == set(VERSION_LINEAGE_TAGS), sorted(registered.tags)
    training_run = mlflow_client.get_run(registered.run_id)
    for key in VERSION_LINEAGE_TAGS:
        assert registered.tags[key] == training_run.data.tags[key]
    assert registered.tags[FITTED_ON_TAG]  # promotion's holdout gate reads it back
    assert "\n" not in registered.description
    assert registered.description.startswith("lightgbm propensity model, features ")
    assert f"test AUC {training_run.data.metrics['test_auc']:.3f}" in registered.description
    first = promote(settings, v1)
    assert first["promoted"], first["reasons"]
    assert first["reasons"][0] == "first model of this kind: absolute gates passed"
    scorer = AliasScorer("propensity", settings, refresh_interval_s=0)
    before = scorer.score(frame)
    assert before.version == v1

    # 2. A clearly better challenger is promoted; the old champion stays reachable.
    v2 = train_and_register(stack, settings, STRONG)
    assert read_state(mlflow_client, name).challenger == v2
    second = promote(settings, v2)
    assert second["promoted"], second["reasons"]
    assert second["against"] == v1 and second["difference_ci_low"] > 0
    state = read_state(mlflow_client, name)
    assert (state.champion, state.previous_champion, state.challenger) == (v2, v1, None)
    assert state.history == [v1, v2]

    # Scoring code picks up the new champion without a code change or a restart.
    after = scorer.score(frame)
    assert after.version == v2
    direct = load_predictor(f"models:/{name}/{v2}")(frame)
    np.testing.assert_allclose(after.scores, direct)
    assert not np.allclose(after.scores, before.scores)

    # The decision is on the MLflow run (tags, metrics, reasons, plots) and on the version.
    version_tags = mlflow_client.get_model_version(name, v2).tags
    assert set(version_tags) == {*VERSION_LINEAGE_TAGS, *DECISION_TAGS}, sorted(version_tags)
    assert version_tags[DECISION_TAG] == "promoted" and version_tags[AGAINST_TAG] == v1
    decision_run = mlflow_client.get_run(version_tags[DECISION_RUN_TAG])
    assert decision_run.data.tags["flashsale.promotion.decision"] == "promoted"
    assert decision_run.data.metrics["difference"] == pytest.approx(second["difference"], abs=1e-6)
    artifacts = {a.path for a in mlflow_client.list_artifacts(decision_run.info.run_id, "plots")}
    assert artifacts == {"plots/roc_holdout.png", "plots/bootstrap_difference.png"}
    logged = json.loads(
        Path(
            mlflow_client.download_artifacts(
                decision_run.info.run_id, "promotion/decision.json", str(stack["work"])
            )
        ).read_text()
    )
    assert logged["promote"] is True and {g["name"] for g in logged["gates"]} >= {
        "holdout",
        "data",
        "behaviour",
        "absolute",
        "calibration_in_the_large",
        "primary",
        "calibration",
        "segments",
    }

    # 3. An identical retrain is statistically indistinguishable: not promoted, reason kept.
    v3 = train_and_register(stack, settings, STRONG)
    third = promote(settings, v3)
    assert not third["promoted"]
    assert any(r.startswith("primary: not significantly better") for r in third["reasons"])
    assert read_state(mlflow_client, name).champion == v2
    tags = mlflow_client.get_model_version(name, v3).tags
    assert (
        tags[DECISION_TAG] == "rejected"
        and "not significantly better" in tags["flashsale.promotion.reasons"]
    )

    # 4. A worse challenger is not promoted either.
    v4 = train_and_register(stack, settings, STUMP)
    fourth = promote(settings, v4)
    assert not fourth["promoted"]
    # "worse" only because the whole interval lies on the worse side.
    assert fourth["difference_ci_high"] < 0, fourth
    assert any(r.startswith("primary: worse") for r in fourth["reasons"]), fourth["reasons"]
    assert read_state(mlflow_client, name).champion == v2

    # 5. `flashsale registry status` shows aliases and decisions; rollback restores v1 exactly.
    import os

    env = {
        "FLASHSALE_MLFLOW_TRACKING_URI": settings.tracking_uri,
        "FLASHSALE_REGISTERED_MODEL_PREFIX": "life",
        "FLASHSALE_STORAGE_ROOT": settings.lake_uri,
        "FLASHSALE_HOME": str(settings.home),
    }
    old_env = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        assert main(["registry", "status", "--model", "propensity"]) == 0
        report = capsys.readouterr().out
        assert f"champion           {v2}" in report
        # The champion's test metrics come from its training run, not from version tags.
        v2_auc = mlflow_client.get_run(
            mlflow_client.get_model_version(name, v2).run_id
        ).data.metrics["test_auc"]
        assert f"test_auc {v2_auc:.6g}" in report
        assert f"previous-champion  {v1}" in report
        assert f"v{v4:<4} rejected  vs {v2}" in report
        # The Models page shows the last action as one readable line, not a JSON blob.
        assert f"  last action        rejected v{v4} against v{v2} at " in report
        assert main(["registry", "rollback", "--model", name]) == 0
        assert f"champion is now version {v1}" in capsys.readouterr().out
        last = mlflow_client.get_registered_model(name).tags["flashsale.last_decision"]
        assert last.startswith(f"rollback v{v1} from v{v2} at ") and last.endswith(
            ": manual rollback"
        )
        # Nothing left to roll back to: a clear error, not a traceback.
        assert main(["registry", "rollback", "--model", name]) == 2
        assert "no previous champion" in capsys.readouterr().err
    finally:
        for key, value in old_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    state = read_state(mlflow_client, name)
    assert (state.champion, state.previous_champion, state.history) == (v1, None, [v1])
    assert ROLLED_BACK_AT_TAG in mlflow_client.get_model_version(name, v2).tags
    assert scorer.score(frame).version == v1


def test_a_decision_against_a_replaced_champion_is_refused(stack: dict) -> None:
    settings = settings_for(stack, "stale")
    v1 = train_and_register(stack, settings, WEAK)
    assert promote(settings, v1)["promoted"]
    v2 = train_and_register(stack, settings, STRONG)
    assert promote(settings, v2)["promoted"]
    stale = "made against champion 1, but the champion is now 2"
    with pytest.raises(StaleDecisionError, match=stale):
        apply_decision(settings, "stale-propensity", v2, v1, True, ["decided against v1"])
    assert read_state(client(settings), "stale-propensity").champion == v2


def test_the_registry_lock_serialises_read_modify_write(stack: dict) -> None:
    settings = settings_for(stack, "lock")
    mlflow_client = client(settings)
    name = "lock-counter"
    mlflow_client.create_registered_model(name, tags={"count": "0"})
    errors: list[BaseException] = []

    def increment(worker: int) -> None:
        try:
            with registry_lock(client(settings), name, owner=f"worker-{worker}", timeout_s=60):
                count = int(client(settings).get_registered_model(name).tags["count"])
                time.sleep(0.05)  # widen the window a lost update would need
                client(settings).set_registered_model_tag(name, "count", str(count + 1))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=increment, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert mlflow_client.get_registered_model(name).tags["count"] == "6"
    assert not mlflow_client.search_registered_models(f"name = '{name}{LOCK_SUFFIX}'")


def test_racing_promotions_leave_consistent_aliases(stack: dict) -> None:
    """Two processes promote two better challengers at once; the history must stay a chain."""
    settings = settings_for(stack, "race")
    name = "race-propensity"
    v1 = train_and_register(stack, settings, WEAK)
    assert promote(settings, v1)["promoted"]
    contenders = [
        train_and_register(stack, settings, STRONG),
        train_and_register(stack, settings.model_copy(update={"seed": 1234}), STRONG),
    ]
    env = {
        **__import__("os").environ,
        "FLASHSALE_MLFLOW_TRACKING_URI": settings.tracking_uri,
        "FLASHSALE_REGISTERED_MODEL_PREFIX": "race",
        "FLASHSALE_STORAGE_ROOT": settings.lake_uri,
        "FLASHSALE_HOME": str(settings.home),
    }
    racers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flashsale_ml.cli",
                "--log-level",
                "WARNING",
                "registry",
                "promote",
                "--model",
                name,
                "--version",
                version,
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for version in contenders
    ]
    outcomes = []
    for racer in racers:
        out, err = racer.communicate(timeout=300)
        assert racer.returncode == 0, err[-3000:]
        outcomes.append(json.loads(out))

    mlflow_client = client(settings)
    state = read_state(mlflow_client, name)
    promoted = [o["version"] for o in outcomes if o["promoted"]]
    assert promoted, outcomes  # both beat v1, so at least the first to apply wins
    assert state.history == [v1, *promoted], (state, outcomes)
    assert state.champion == state.history[-1]
    assert state.previous_champion == state.history[-2]
    # Each promotion was decided against the champion it actually replaced.
    for before, after in zip(state.history, state.history[1:], strict=False):
        assert mlflow_client.get_model_version(name, after).tags[AGAINST_TAG] == before
    for outcome in outcomes:
        tags = mlflow_client.get_model_version(name, outcome["version"]).tags
        assert tags[DECISION_TAG] == ("promoted" if outcome["promoted"] else "rejected")
    assert not mlflow_client.search_registered_models(f"name = '{name}{LOCK_SUFFIX}'")


def test_a_promotion_race_supersedes_one_attempt_which_re_decides(
    stack: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two promotions start together behind a barrier, and both decide against v1 before
    either applies: one wins; the other's first attempt is refused as stale, recorded as
    superseded, and re-decided against the winner."""
    import mlflow

    from flashsale_ml.promotion import flow as promote_module

    settings = settings_for(stack, "barrier")
    name = "barrier-propensity"
    v1 = train_and_register(stack, settings, WEAK)
    assert promote(settings, v1)["promoted"]
    contenders = [
        train_and_register(stack, settings, STRONG),
        train_and_register(stack, settings.model_copy(update={"seed": 1234}), STRONG),
    ]
    start = threading.Barrier(2, timeout=120)
    decided = threading.Barrier(2, timeout=300)
    real_apply = promote_module.apply_decision
    first_calls: list[str | None] = []

    def apply_after_both_decided(settings_, name_, version, expected, *args, **kwargs):
        if version not in first_calls:  # only each racer's first attempt waits
            first_calls.append(version)
            assert expected == v1  # both decided against the same champion
            decided.wait()
        return real_apply(settings_, name_, version, expected, *args, **kwargs)

    monkeypatch.setattr(promote_module, "apply_decision", apply_after_both_decided)
    outcomes: dict[str, dict] = {}
    errors: list[BaseException] = []

    def racer(version: str) -> None:
        try:
            start.wait()
            outcomes[version] = promote_module.promote_version(settings, name, version)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
            start.abort()
            decided.abort()

    threads = [threading.Thread(target=racer, args=(v,)) for v in contenders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert not errors, errors
    assert sorted(first_calls) == sorted(contenders)

    winner = next(o for o in outcomes.values() if o["attempts"] == 1)
    loser = next(o for o in outcomes.values() if o["attempts"] == 2)
    assert winner["promoted"] and winner["against"] == v1
    assert loser["against"] == winner["version"]  # re-decided against the new champion

    mlflow_client = client(settings)
    state = read_state(mlflow_client, name)
    promoted = [v for v in (winner["version"], loser["version"]) if outcomes[v]["promoted"]]
    assert state.history == [v1, *promoted], (state, outcomes)
    # The loser's first promote_model run says it was superseded, and claims no decision.
    mlflow.set_tracking_uri(settings.tracking_uri)
    runs = mlflow_client.search_runs(
        [mlflow_client.get_run(loser["decision_run_id"]).info.experiment_id],
        # Version numbers repeat across the models of this module's tests: filter by model too.
        f"tags.`flashsale.challenger_version` = '{loser['version']}' "
        f"and tags.`flashsale.registered_model` = '{name}'",
    )
    superseded = [r for r in runs if promote_module.RUN_SUPERSEDED_TAG in r.data.tags]
    assert len(superseded) == 1, [r.data.tags for r in runs]
    tags = superseded[0].data.tags
    assert (
        f"made against champion {v1}, but the champion is now {winner['version']}"
        in tags[promote_module.RUN_SUPERSEDED_TAG]
    )
    assert promote_module.RUN_DECISION_TAG not in tags
    assert tags["flashsale.champion_version"] == v1
    assert not mlflow_client.search_registered_models(f"name = '{name}{LOCK_SUFFIX}'")
