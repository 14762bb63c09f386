"""Lost replies after the tracking server commits: nothing duplicated, nothing stuck.

A real ``mlflow server`` sits behind :class:`tests.faultproxy.FaultProxy`, which forwards every
request and, for chosen writes, closes the client's connection after the server has processed
(committed) the request. MLflow's client retries such a request, so each of these writes
happens twice on the server unless the code makes it idempotent.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from flashsale_ml.config import Settings
from flashsale_ml.devstack import MlflowServer
from flashsale_ml.features import build_features
from flashsale_ml.models.propensity import train_lgbm as train_propensity_lgbm_step
from flashsale_ml.models.propensity.lgbm import LgbmConfig
from flashsale_ml.registry import (
    DECISION_RUN_TAG,
    DECISION_TAG,
    LOCK_SUFFIX,
    RegistryLockTimeout,
    read_state,
    registry_lock,
)
from flashsale_ml.simulation import SimulationConfig, simulate
from flashsale_ml.storage import open_store
from flashsale_ml.validation import validate_snapshot
from tests.faultproxy import FaultProxy

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

API = "/api/2.0/mlflow"
WEAK = LgbmConfig(max_rounds=3, num_leaves=2, early_stopping_rounds=3)
STRONG = LgbmConfig()
LOCK_TIMEOUT_S = 60.0  # lease 30 s: waiting on oneself until it expires would show
# MLflow's client: retry a broken connection at once, a couple of times, and do not hang.
QUICK_RETRIES = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A real MLflow server behind a fault proxy, and a validated feature snapshot."""
    work = tmp_path_factory.mktemp("faults")
    lake_uri = (work / "lake").as_uri()
    with (
        MlflowServer(work, work / "mlflow.db", str(work / "artifacts")) as server,
        FaultProxy(server.url) as proxy,
    ):
        base = Settings(
            home=work / "home",
            storage_root=lake_uri,
            mlflow_tracking_uri=proxy.url,
            registry_lock_timeout_s=LOCK_TIMEOUT_S,
        )
        world = simulate(SimulationConfig(users=5_000, days=28, seed=21), open_store(lake_uri))
        validate_snapshot(world.raw_uri, settings=base)
        features_uri = build_features(world.raw_uri, open_store(lake_uri))
        yield {"server": server, "proxy": proxy, "base": base, "features_uri": features_uri}


@pytest.fixture(autouse=True)
def quick_retries(stack: dict, monkeypatch: pytest.MonkeyPatch):
    for key, value in QUICK_RETRIES.items():
        monkeypatch.setenv(key, value)
    stack["proxy"].clear()
    yield
    stack["proxy"].clear()


def settings_for(stack: dict, prefix: str, **overrides) -> Settings:
    """Own experiment and registered-model namespace per test on the shared server."""
    return stack["base"].model_copy(
        update={"registered_model_prefix": prefix, "mlflow_experiment": prefix, **overrides}
    )


def client(settings: Settings):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=settings.tracking_uri)


def test_lost_replies_after_commit_leave_one_of_everything(stack: dict) -> None:
    """The register + promote path of a pipeline, with the first reply of every create lost."""
    from mlflow.entities import ViewType

    from flashsale_ml import steps

    proxy: FaultProxy = stack["proxy"]
    settings = settings_for(stack, "faults")
    name = "faults-propensity"
    rules = [
        # parent run, training run, promote_model run
        proxy.drop_response("POST", f"{API}/runs/create", times=3),
        proxy.drop_response("POST", f"{API}/model-versions/create"),
        # the lock create first (its name contains the model's), then the model's own create
        proxy.drop_response("POST", f"{API}/registered-models/create", body_contains=LOCK_SUFFIX),
        proxy.drop_response("POST", f"{API}/registered-models/create", body_contains=f'"{name}"'),
        # the lock release
        proxy.drop_response("DELETE", f"{API}/registered-models/delete"),
    ]

    started = time.monotonic()
    try:
        parent = steps.start_pipeline("faulty", settings=settings)
        training = train_propensity_lgbm_step(stack["features_uri"], settings, parent, WEAK)
        registered = steps.register_model(training.run_id, "propensity", settings)
        promote_started = time.monotonic()
        promotion = steps.promote_model(registered["version"], "propensity", parent, settings)
        promote_took = time.monotonic() - promote_started
        steps.finish_pipeline(parent, settings=settings)
    finally:
        elapsed = time.monotonic() - started
        print(f"\nregister+promote pipeline path with lost replies: {elapsed:.1f} s")
    # Every fault happened: otherwise this test would prove nothing.
    assert [r.dropped for r in rules] == [r.times for r in rules], proxy.dropped()

    mlflow_client = client(settings)
    experiment_id = mlflow_client.get_experiment_by_name(settings.mlflow_experiment).experiment_id
    active = mlflow_client.search_runs([experiment_id], max_results=1000)
    everything = mlflow_client.search_runs(
        [experiment_id], max_results=1000, run_view_type=ViewType.ALL
    )
    # One parent run, one run per step, and nothing RUNNING anywhere (deleted runs included).
    names = collections.Counter(r.info.run_name for r in active)
    assert names == {"faulty": 1, "train_propensity_lgbm": 1, "promote_model": 1}, names
    assert [r.info.run_id for r in active if r.info.run_name == "faulty"] == [parent]
    assert not [r.info.run_id for r in everything if r.info.status == "RUNNING"]

    # One version per training run.
    versions = mlflow_client.search_model_versions(f"name = '{name}'")
    per_run = collections.Counter(v.run_id for v in versions)
    assert per_run == {training.run_id: 1}, per_run
    assert registered["version"] == str(versions[0].version)

    # The lock was taken at once (the dropped create and its retry, no polling, no waiting
    # for a lease to expire), and it is gone.
    lock_creates = [
        e
        for e in proxy.requests("POST", f"{API}/registered-models/create")
        if LOCK_SUFFIX.encode() in e.body
    ]
    assert len(lock_creates) == 2, lock_creates
    assert promote_took < LOCK_TIMEOUT_S / 2, promote_took
    assert not mlflow_client.search_registered_models(f"name = '{name}{LOCK_SUFFIX}'")

    # The decision on the version is the one its promote_model run claims, and the only one.
    version_tags = mlflow_client.get_model_version(name, registered["version"]).tags
    verdict = "promoted" if promotion["promoted"] else "rejected"
    assert version_tags[DECISION_TAG] == verdict
    assert version_tags[DECISION_RUN_TAG] == promotion["decision_run_id"]
    claims = {
        r.info.run_id: r.data.tags["flashsale.promotion.decision"]
        for r in everything  # deleted duplicates included: they must claim nothing
        if r.info.run_name == "promote_model" and "flashsale.promotion.decision" in r.data.tags
    }
    assert claims == {promotion["decision_run_id"]: verdict}, claims
    parent_run = mlflow_client.get_run(parent)
    assert parent_run.info.status == "FINISHED"
    assert parent_run.data.tags["flashsale.promotion.decision"] == verdict

    # Registering the same training run again (a retried task) gives the same version,
    # without creating (and then deleting) another one.
    proxy.clear()
    again = steps.register_model(training.run_id, "propensity", settings)
    assert again["version"] == registered["version"]
    assert not proxy.requests("POST", f"{API}/model-versions/create")
    assert len(mlflow_client.search_model_versions(f"name = '{name}'")) == 1

    # A second promotion right after takes the lock at once.
    second = train_propensity_lgbm_step(stack["features_uri"], settings, None, STRONG)
    second_version = steps.register_model(second.run_id, "propensity", settings)["version"]
    started = time.monotonic()
    outcome = steps.promote_model(second_version, "propensity", settings=settings)
    took = time.monotonic() - started
    print(f"second promotion right after: {took:.1f} s")
    assert took < LOCK_TIMEOUT_S / 2, took
    if outcome["promoted"]:
        assert read_state(mlflow_client, name).champion == second_version
    assert not mlflow_client.search_registered_models(f"name = '{name}{LOCK_SUFFIX}'")


def test_a_lock_create_that_fails_after_its_commit_is_ours_and_released(
    stack: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No client retry at all: the create raises although the server holds our lock."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    settings = settings_for(stack, "noretry")
    name = "noretry-model"
    rule = stack["proxy"].drop_response("POST", f"{API}/registered-models/create")
    mlflow_client = client(settings)
    entered = []
    with registry_lock(mlflow_client, name, timeout_s=10):
        entered.append(True)
    assert rule.dropped == 1
    assert entered == [True]
    assert not mlflow_client.search_registered_models(f"name = '{name}{LOCK_SUFFIX}'")


HOLDER = """
import sys, time
import mlflow
from flashsale_ml.registry import registry_lock
client = mlflow.MlflowClient(tracking_uri=sys.argv[1])
with registry_lock(client, sys.argv[2], timeout_s=float(sys.argv[3])):
    print("held", flush=True)
    time.sleep(3600)
"""


def test_a_waiter_outlives_the_lease_of_a_holder_that_died(stack: dict) -> None:
    """Holders and waiters share the timeout setting; a dead holder's lease is shorter."""
    settings = settings_for(stack, "dead")
    name, timeout_s = "dead-model", 8.0
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, settings.tracking_uri, name, str(timeout_s)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **QUICK_RETRIES},
    )
    try:
        assert holder.stdout.readline().strip() == "held"
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
    started = time.monotonic()
    with registry_lock(client(settings), name, timeout_s=timeout_s):
        waited = time.monotonic() - started
    assert waited < timeout_s, waited


def test_a_slow_holder_keeps_its_lock_past_the_lease(stack: dict) -> None:
    """The lease is renewed while the lock is held: nobody breaks a live holder's lock."""
    settings = settings_for(stack, "slow")
    name = "slow-model"
    events: list[tuple[str, float]] = []
    errors: list[BaseException] = []
    held = threading.Event()

    def hold() -> None:
        try:
            with registry_lock(client(settings), name, timeout_s=3.0):  # lease 1.5 s
                events.append(("holder in", time.monotonic()))
                held.set()
                time.sleep(6)
                events.append(("holder out", time.monotonic()))
        except BaseException as exc:
            errors.append(exc)
            held.set()

    def wait() -> None:
        try:
            with registry_lock(client(settings), name, timeout_s=30.0):
                events.append(("waiter in", time.monotonic()))
        except BaseException as exc:
            errors.append(exc)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(30)
    waiter = threading.Thread(target=wait)
    waiter.start()
    holder.join()
    waiter.join()
    assert not errors, errors
    assert [e for e, _ in sorted(events, key=lambda e: e[1])] == [
        "holder in",
        "holder out",
        "waiter in",
    ], events


def test_a_decision_that_was_not_applied_is_not_claimed(
    stack: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Neither the promote_model run nor the version claims a decision that did not happen."""
    from mlflow.exceptions import MlflowException

    from flashsale_ml import steps

    settings = settings_for(stack, "unapplied", registry_lock_timeout_s=2.0)
    name = "unapplied-propensity"
    training = train_propensity_lgbm_step(stack["features_uri"], settings, None, STRONG)
    version = steps.register_model(training.run_id, "propensity", settings)["version"]
    mlflow_client = client(settings)
    experiment_id = mlflow_client.get_experiment_by_name(settings.mlflow_experiment).experiment_id

    def assert_nothing_claimed(error: str) -> None:
        (run,) = mlflow_client.search_runs(
            [experiment_id], "attributes.run_name = 'promote_model'", max_results=1
        )
        assert run.data.tags["flashsale.promotion.proposed"] == "promoted"
        assert run.info.status == "FAILED"
        assert "flashsale.promotion.decision" not in run.data.tags, run.data.tags
        assert error in run.data.tags["flashsale.promotion.not_applied"]
        assert DECISION_TAG not in mlflow_client.get_model_version(name, version).tags
        assert read_state(mlflow_client, name).champion is None

    # 1. A live process holds the lock for longer than we wait.
    lock = f"{name}{LOCK_SUFFIX}"
    mlflow_client.create_registered_model(
        lock,
        tags={
            "flashsale.lock.owner": "someone-else:1:alive",
            "flashsale.lock.expires_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
        },
    )
    try:
        with pytest.raises(RegistryLockTimeout, match="held by someone-else:1:alive"):
            steps.promote_model(version, "propensity", settings=settings)
    finally:
        mlflow_client.delete_registered_model(lock)
    assert_nothing_claimed("RegistryLockTimeout")

    # 2. Moving the champion alias fails outright (no client retry): the version must not say
    # "promoted" while the champion never moved.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    rule = stack["proxy"].refuse_request("POST", f"{API}/registered-models/alias")
    with pytest.raises(MlflowException):
        steps.promote_model(version, "propensity", settings=settings)
    assert rule.dropped == 1
    assert_nothing_claimed("MlflowException")
    assert not mlflow_client.search_registered_models(f"name = '{lock}'")


def test_a_holder_whose_lock_passed_on_writes_nothing(stack: dict) -> None:
    """A server stall longer than the lease lets a waiter break the lock; the first holder must
    then not write. ``ensure_lock_held`` runs right before every alias write."""
    from flashsale_ml.registry import LOCK_SUFFIX, PromotionLockLost, ensure_lock_held

    settings = settings_for(stack, "lost")
    name = "lost-model"
    mlflow_client = client(settings)
    with registry_lock(mlflow_client, name, timeout_s=30.0) as owner:
        ensure_lock_held(mlflow_client, name, owner)  # still ours: no error
        # The lease ran out during a stall and a waiter took the lock over.
        mlflow_client.delete_registered_model(f"{name}{LOCK_SUFFIX}")
        with pytest.raises(PromotionLockLost, match="nothing was written"):
            ensure_lock_held(mlflow_client, name, owner)
        with (
            registry_lock(mlflow_client, name, owner="waiter:1:x", timeout_s=5.0),
            pytest.raises(PromotionLockLost, match="passed to waiter:1:x"),
        ):
            ensure_lock_held(mlflow_client, name, owner)
