"""Distributed PyTorch training: sharding, encoding, 2-process DDP on CPU, kill and resume."""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flashsale_ml.config import Settings
from flashsale_ml.datasets import Snapshot
from flashsale_ml.evaluation.binary import binary_metrics
from flashsale_ml.features import build_features
from flashsale_ml.models.propensity import train_dcn as train_propensity_deep
from flashsale_ml.models.propensity.dcn.data import encode, n_dense_columns, read_shard
from flashsale_ml.models.propensity.dcn.network import DeepConfig
from flashsale_ml.storage import open_store
from flashsale_ml.training.distributed import Launch, OutputRelay, run_relayed, torchrun_command

pytestmark = pytest.mark.slow
WORKER = "flashsale_ml.models.propensity.dcn.worker"


@pytest.mark.parametrize("row_group_size", [10, 1_000])  # many groups / fewer than 8 per rank
def test_shards_are_disjoint_and_complete(tmp_path: Path, row_group_size: int) -> None:
    files = []
    for part in range(2):
        path = tmp_path / f"part-{part}.parquet"
        pq.write_table(
            pa.table({"id": np.arange(part * 500, part * 500 + 500)}),
            path,
            row_group_size=row_group_size,
        )
        files.append(path)
    shards = [set(read_shard(files, rank, 3)["id"]) for rank in range(3)]
    assert set().union(*shards) == set(range(1_000))
    assert sum(len(s) for s in shards) == 1_000
    assert max(len(s) for s in shards) - min(len(s) for s in shards) <= 10


@pytest.mark.parametrize("sale_features", ["none", "wide", "crossed"])
def test_sale_features_reach_the_score_only_as_configured(sale_features: str) -> None:
    """Left out, the sale-level columns do not move any score; wide, they move a sale's
    scores up or down together, so they cannot reorder its users; crossed, the same change
    moves each user differently."""
    import torch

    from flashsale_ml.models.propensity.dcn.data import cardinalities, sale_columns
    from flashsale_ml.models.propensity.dcn.network import build_model

    torch.manual_seed(0)
    config = DeepConfig(sale_features=sale_features, user_buckets=7)
    model = build_model(
        n_dense_columns(), cardinalities(config.user_buckets), config, sale_columns()
    )
    dense = torch.randn(256, n_dense_columns())
    cats = torch.zeros(256, 4, dtype=torch.long)
    model.train()
    model(dense, cats)  # BatchNorm statistics from one batch, then eval mode as in scoring
    model.eval()
    new_sale = dense.clone()
    new_sale[:, list(sale_columns())] += 1.5  # the same sale-level change for every user
    with torch.no_grad():
        shift = model(new_sale, cats) - model(dense, cats)
    if sale_features == "none":
        assert shift.abs().max() == 0
    elif sale_features == "wide":
        assert shift.abs().max() > 1e-4
        torch.testing.assert_close(shift, shift[:1].expand_as(shift), atol=1e-5, rtol=0)
    else:
        assert shift.std() > 1e-4


@pytest.fixture(scope="module")
def deep_setup(tmp_path_factory: pytest.TempPathFactory):
    """Enough data for a network to learn: 6,000 users, four sales (two train campaigns)."""
    from flashsale_ml.simulation import SimulationConfig, simulate

    home = tmp_path_factory.mktemp("deep-home")
    settings = Settings(home=home, seed=5)
    lake = open_store(settings.lake_uri)
    world = simulate(SimulationConfig(users=6_000, days=28, seed=5), lake)
    return settings, build_features(world.raw_uri, lake)


def test_encoding_has_no_nan_and_codes_in_range(deep_setup) -> None:
    _, features = deep_setup
    frame = Snapshot(features).read_pandas("propensity")
    encoded = encode(frame, user_buckets=101)
    assert encoded.dense.shape == (len(frame), n_dense_columns())
    assert np.isfinite(encoded.dense).all()
    assert encoded.cats.min() >= 0 and encoded.cats[:, 0].max() < 101


def torchrun_records(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [
        (r.levelname, r.getMessage())
        for r in caplog.records
        if r.name == "flashsale_ml.training.distributed.torchrun"
    ]


# How far below LightGBM's test AUC the deep model may land on the same split. Measured
# (3 epochs, this shop): DCN-v2 0.785, LightGBM 0.797; without the gradient sync 0.768.
DEEP_VS_LGBM_MARGIN = 0.02


@pytest.fixture(scope="module")
def lgbm_same_split(deep_setup) -> dict:
    """LightGBM's test AUC on the deep model's split: both train on all sales but the newest
    two, stop on the second newest and test on the newest."""
    from flashsale_ml.models.propensity.lgbm import LgbmConfig, time_split, train_propensity_lgbm

    settings, features = deep_setup
    split = time_split(Snapshot(features).read_pandas("propensity"), seed=settings.seed)
    model = train_propensity_lgbm(split, LgbmConfig(), seed=settings.seed)
    return {"test_auc": model.metrics["test"]["auc"], "test_n": len(split.test)}


def test_ddp_two_processes_on_cpu_logs_to_mlflow(
    deep_setup, lgbm_same_split, caplog, capfd
) -> None:
    import mlflow

    settings, features = deep_setup
    caplog.set_level(logging.INFO)
    result = train_propensity_deep(
        features,
        settings,
        config=DeepConfig(epochs=3, batch_size=256),
        launch=Launch(nproc_per_node=2),
    )
    assert result["backend"] == "gloo" and result["world_size"] == 2 and result["restarts"] == 0
    # Quality, against LightGBM on the same time split (same train / valid / test sales), not
    # against a fixed number: one raw feature alone scores 0.72 here. The network reaches
    # LightGBM's test AUC to within DEEP_VS_LGBM_MARGIN; without the DDP gradient sync it fell
    # 0.029 short of LightGBM (0.768; with the sync 0.785, LightGBM 0.797).
    assert result["test_n"] == lgbm_same_split["test_n"]
    assert result["test_auc"] >= lgbm_same_split["test_auc"] - DEEP_VS_LGBM_MARGIN, (
        result["test_auc"],
        lgbm_same_split,
    )
    # DDP keeps the ranks' parameters identical: each rank logs a digest of its final ones.
    relayed = torchrun_records(caplog)
    digests = {
        rank: [m.split("parameters sha256 ")[1] for _, m in relayed if f"rank{rank} param" in m]
        for rank in (0, 1)
    }
    assert len(digests[0]) == 1 and digests[0] == digests[1], digests
    # The workers' output arrives as log records of the launcher, at the level of each line,
    # and nothing of it on the launcher's own stdout or stderr.
    for rank in (0, 1):
        assert any(
            level == "INFO" and f"INFO rank{rank} epoch 1/3: train loss" in message
            for level, message in relayed
        ), relayed
    assert not [m for level, m in relayed if level == "ERROR"], relayed
    out, err = capfd.readouterr()
    assert "epoch 1/3" not in out + err
    client = mlflow.MlflowClient()
    run = client.get_run(result["run_id"])
    assert run.info.status == "FINISHED"
    losses = client.get_metric_history(run.info.run_id, "epoch_train_loss")
    assert [m.step for m in losses] == [0, 1, 2]
    assert losses[-1].value < losses[0].value  # it learns
    model = mlflow.pyfunc.load_model(result["model_uri"])
    frame = Snapshot(features).read_pandas("propensity").head(50)
    encoded = encode(frame, DeepConfig().user_buckets)
    scores = np.asarray(model.predict(np.hstack([encoded.dense, encoded.cats.astype(np.float32)])))
    assert scores.shape[0] == 50 and ((scores > 0) & (scores < 1)).all()

    # The logged model is the epoch with the best validation loss, not simply the last one:
    # scoring the validation campaign with it reproduces that epoch's validation AUC.
    history = client.get_metric_history(run.info.run_id, "epoch_valid_log_loss")
    valid_losses = [m.value for m in history]
    best = int(np.argmin(valid_losses))
    assert result["best_epoch"] == best + 1 and result["epochs_run"] == 3
    valid_aucs = client.get_metric_history(run.info.run_id, "epoch_valid_auc")
    everything = Snapshot(features).read_pandas("propensity")
    starts = everything.groupby("campaign_id")["as_of"].min().sort_values()
    valid_rows = everything[everything.campaign_id == starts.index[-2]]
    encoded = encode(valid_rows, DeepConfig().user_buckets)
    scores = np.asarray(model.predict(np.hstack([encoded.dense, encoded.cats.astype(np.float32)])))
    auc = binary_metrics(valid_rows["label_purchase"].to_numpy(), np.clip(scores, 1e-7, 1 - 1e-7))
    # (to 1e-3: the ranks' shards hold the campaign's rows in another order and precision)
    assert auc["auc"] == pytest.approx(valid_aucs[best].value, abs=1e-3)


@pytest.mark.elastic
def test_killed_worker_resumes_from_the_last_checkpoint(deep_setup) -> None:
    """In-place elastic restart (torchrun --max-restarts). Not in the default suite (nor CI):
    a restarted gloo group intermittently fails to re-form its full mesh. Run it with
    ``make test-elastic``. Likely cause, not yet confirmed by repeated runs: torch 2.13's
    c10d rendezvous creates the shared agent TCPStore once and keeps it across in-place
    restarts, while ``init_process_group`` assumes a new store per attempt and adds no attempt
    prefix, so the restarted workers can read keys left by the dead attempt. The default
    suite covers resuming from checkpoints by relaunching instead
    (``test_a_failed_run_resumes_from_its_checkpoints``)."""
    import mlflow

    settings, features = deep_setup
    result = train_propensity_deep(
        features,
        settings,
        config=DeepConfig(epochs=3, batch_size=256),
        launch=Launch(nproc_per_node=2, max_restarts=3),
        extra_env={"FLASHSALE_TEST_FAIL_ONCE_AT_EPOCH": "1", "FLASHSALE_DIST_TIMEOUT_S": "30"},
    )
    assert 1 <= result["restarts"] <= 3
    client = mlflow.MlflowClient()
    steps = [m.step for m in client.get_metric_history(result["run_id"], "epoch_train_loss")]
    assert steps == [0, 1, 2]  # epoch 0 was not trained twice: the restart resumed after it
    store = open_store(f"{settings.lake_uri}/checkpoints/{result['run_id']}")
    assert store.list() == ["epoch-000.pt", "epoch-001.pt", "epoch-002.pt", "latest.json"]


def test_a_failed_run_resumes_from_its_checkpoints(deep_setup) -> None:
    """A worker dies and the launch fails (no restarts left); launching again with
    ``resume_run_id`` continues the same MLflow run from the last checkpoint, not from zero."""
    import mlflow

    settings, features = deep_setup
    config = DeepConfig(epochs=3, batch_size=256)
    with pytest.raises(RuntimeError, match="marked FAILED") as caught:
        train_propensity_deep(
            features,
            settings,
            config=config,
            launch=Launch(nproc_per_node=2, max_restarts=0),
            extra_env={"FLASHSALE_TEST_FAIL_ONCE_AT_EPOCH": "1"},
        )
    run_id = str(caught.value).split("MLflow run ")[1].split(" ")[0]
    store = open_store(f"{settings.lake_uri}/checkpoints/{run_id}")
    assert store.list() == ["epoch-000.pt", "latest.json"]

    result = train_propensity_deep(
        features, settings, config=config, launch=Launch(nproc_per_node=2), resume_run_id=run_id
    )
    assert result["run_id"] == run_id and result["restarts"] == 0
    client = mlflow.MlflowClient()
    assert client.get_run(run_id).info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(run_id, "epoch_train_loss")]
    assert steps == [0, 1, 2]  # epoch 0 was not trained again
    assert store.list() == ["epoch-000.pt", "epoch-001.pt", "epoch-002.pt", "latest.json"]


def test_without_restarts_a_killed_worker_fails_the_run(deep_setup, caplog) -> None:
    import mlflow

    settings, features = deep_setup
    caplog.set_level(logging.INFO)
    with pytest.raises(RuntimeError, match="marked FAILED") as caught:
        train_propensity_deep(
            features,
            settings,
            config=DeepConfig(epochs=2, batch_size=256),
            launch=Launch(nproc_per_node=2, max_restarts=0),
            extra_env={"FLASHSALE_TEST_FAIL_ONCE_AT_EPOCH": "1"},
        )
    run_id = str(caught.value).split("MLflow run ")[1].split(" ")[0]
    assert mlflow.MlflowClient().get_run(run_id).info.status == "FAILED"
    # the worker's last words, logged at their level, and torchrun's report of the failure
    relayed = torchrun_records(caplog)
    assert any(
        level == "ERROR" and "test hook: worker exits abruptly at epoch 1" in message
        for level, message in relayed
    ), relayed
    assert any(level == "ERROR" and "exitcode: 17" in message for level, message in relayed)
    # the error quotes the end of the output: torchrun's summary of the failed worker
    message = str(caught.value)
    assert "lines of its output:" in message and "exitcode  : 17" in message
    assert message.splitlines()[-1] == relayed[-1][1]


RELAYED_LINES = [
    # (line, level): the workers' log format, torch's glog-style lines, MLflow's, warnings
    ("12:00:01 INFO rank0 epoch 1/3: train loss 0.3", logging.INFO),
    ("12:00:01 ERROR rank1 test hook: worker exits abruptly at epoch 1", logging.ERROR),
    ("W1012 12:00:00.123000 140 torch/distributed/run.py:792] setting OMP", logging.WARNING),
    ("E1012 12:00:03.000000 140 torch/.../api.py:874] failed (exitcode: 17)", logging.ERROR),
    ("[W1012 12:00:00.123456 socket.cpp:752] [c10d] The client socket failed", logging.WARNING),
    ("[rank0]:[W1012 12:00:00.123456 ProcessGroupGloo.cpp:12] Warning: x", logging.WARNING),
    ("[W socket.cpp:464] [c10d] The server socket has failed to bind", logging.WARNING),
    ("I1012 12:00:00.1 140 torch/distributed/elastic/agent.py:12] starting", logging.INFO),
    ("2026/01/02 12:00:01 WARNING mlflow.models.model: Input example is large", logging.WARNING),
    ("WARNING:root:a message with logging's default format", logging.WARNING),
    ("/venv/lib/site-packages/x.py:12: UserWarning: careful", logging.WARNING),
    ("  warnings.warn(", logging.WARNING),  # the source line under a warning
    ("epoch done with not a single ERROR: a level word inside a message", logging.INFO),
    ("a plain print", logging.INFO),
    ("Traceback (most recent call last):", logging.ERROR),
    ('  File "train.py", line 1, in <module>', logging.ERROR),
    ("ValueError: boom", logging.ERROR),
    ("12:00:02 INFO rank0 the next record", logging.INFO),
    ("    indented, after an INFO line", logging.INFO),
]


def test_relayed_lines_keep_their_level(caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="relay-test")
    relay = OutputRelay(logging.getLogger("relay-test"), tail=3)
    for line, _ in RELAYED_LINES:
        relay.emit(line + "\n")
    relay.emit("\n")  # blank lines are left out
    got = [(r.getMessage(), r.levelno) for r in caplog.records]
    assert got == RELAYED_LINES
    assert list(relay.tail) == [line for line, _ in RELAYED_LINES[-3:]]


def test_run_relayed_reads_both_streams_and_returns_the_exit_status(caplog) -> None:
    """Far more output on both streams than a pipe buffer holds: a launcher that read only
    one of them (or neither, until the end) would block the process forever."""
    script = (
        "import sys\n"
        "for i in range(20000):\n"
        "    print(f'out {i}', flush=True)\n"
        "    print(f'12:00:00 WARNING rank0 err {i}', file=sys.stderr, flush=True)\n"
        "sys.exit(3)\n"
    )
    caplog.set_level(logging.INFO, logger="relay-test")
    relay = OutputRelay(logging.getLogger("relay-test"), tail=2)
    outcome: list[int] = []
    worker = threading.Thread(
        target=lambda: outcome.append(run_relayed([sys.executable, "-c", script], {}, relay)),
        daemon=True,
    )
    worker.start()
    worker.join(timeout=120)
    assert not worker.is_alive(), "the relay blocked"
    assert outcome == [3]
    levels = [r.levelno for r in caplog.records]
    assert levels.count(logging.INFO) == levels.count(logging.WARNING) == 20_000
    assert {r.getMessage() for r in caplog.records} >= {"out 19999", "out 0"}
    assert len(relay.tail) == 2


def test_torchrun_command_for_one_and_many_nodes() -> None:
    single = torchrun_command(Launch(nproc_per_node=4), ["--x"], WORKER)
    assert "--nnodes=1" in single and "--nproc-per-node=4" in single
    assert any(a.startswith("--rdzv-endpoint=127.0.0.1:") for a in single)
    multi = torchrun_command(
        Launch(nproc_per_node=8, nnodes=2, node_rank=1, rdzv_endpoint="head:29400"), [], WORKER
    )
    assert {
        "--nnodes=2",
        "--node-rank=1",
        "--rdzv-backend=c10d",
        "--rdzv-endpoint=head:29400",
    } <= set(multi)
    with pytest.raises(ValueError, match="rdzv_endpoint"):
        torchrun_command(Launch(nnodes=2), [], WORKER)
