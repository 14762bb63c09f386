"""Launch distributed training with ``torchrun`` and track it as one MLflow run.

The launcher creates the MLflow run (nested under the pipeline run), starts ``torchrun`` with
the configured processes per node and nodes, and closes the run with the workers' outcome.
Checkpoints go to the lake under ``checkpoints/<run id>/``, so a restarted worker group
resumes there.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from flashsale_ml.config import Settings
from flashsale_ml.datasets import Snapshot
from flashsale_ml.tracking import (
    TAG_PREFIX,
    configure,
    lineage_tags,
    log_params_flat,
    log_snapshot_input,
)
from flashsale_ml.training.deep.model import DeepConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Launch:
    """Where and how wide to run: one node by default (``--standalone`` rendezvous)."""

    nproc_per_node: int = 2
    nnodes: int = 1
    node_rank: int = 0
    rdzv_endpoint: str | None = None  # host:port of the c10d rendezvous for nnodes > 1
    # More than one: a restarted gloo group occasionally fails its first reconnect on loopback.
    max_restarts: int = 3


def torchrun_command(launch: Launch, worker_args: list[str]) -> list[str]:
    torchrun = Path(sys.executable).parent / "torchrun"
    cmd = [str(torchrun) if torchrun.exists() else "torchrun"]
    if launch.nnodes == 1:
        # An explicit rendezvous on a fresh loopback port with a unique id, not --standalone:
        # a second --standalone launch from the same process was seen waiting forever in
        # rendezvous.
        from flashsale_ml.devstack import free_port

        cmd += [
            "--nnodes=1",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint=127.0.0.1:{free_port()}",
            f"--rdzv-id={uuid.uuid4().hex}",
        ]
    else:
        if not launch.rdzv_endpoint:
            raise ValueError("multi-node training needs rdzv_endpoint (host:port)")
        cmd += [
            f"--nnodes={launch.nnodes}",
            f"--node-rank={launch.node_rank}",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={launch.rdzv_endpoint}",
        ]
    cmd += [
        f"--nproc-per-node={launch.nproc_per_node}",
        f"--max-restarts={launch.max_restarts}",
        "-m",
        "flashsale_ml.training.deep.train",
        *worker_args,
    ]
    return cmd


def train_propensity_deep(
    features_uri: str,
    settings: Settings,
    parent_run_id: str | None = None,
    config: DeepConfig | None = None,
    launch: Launch | None = None,
    extra_env: dict[str, str] | None = None,
    resume_run_id: str | None = None,
) -> dict[str, object]:
    """Train the DCN-v2 propensity model with DDP; returns run id, model URI, test metrics.

    Raises:
        RuntimeError: torchrun failed (after its restarts); the MLflow run is marked FAILED.
    """
    import mlflow

    config = config or DeepConfig()
    launch = launch or Launch()
    configure(settings)
    client = mlflow.MlflowClient()
    experiment_id = client.get_experiment_by_name(settings.mlflow_experiment).experiment_id
    with Snapshot(features_uri) as snap:
        raw_snapshot_id = snap.manifest.metadata.get("input_snapshot_id")
        feature_snapshot_id = snap.snapshot_id
        rows = snap.manifest.tables["propensity"].rows
    tags = {
        **lineage_tags(settings),
        f"{TAG_PREFIX}step": "train_propensity_deep",
        f"{TAG_PREFIX}model_kind": "propensity",
        f"{TAG_PREFIX}model_flavor": "pytorch",
        f"{TAG_PREFIX}data_snapshot_id": str(raw_snapshot_id),
        f"{TAG_PREFIX}feature_snapshot_uri": features_uri,
        f"{TAG_PREFIX}feature_snapshot_id": feature_snapshot_id,
    }
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    if resume_run_id:
        # Continue a run that failed (e.g. its node died): same run, same checkpoints.
        run_id = resume_run_id
        client.update_run(run_id, status="RUNNING")
        client.set_tag(run_id, f"{TAG_PREFIX}resumed", "true")
    else:
        run_id = client.create_run(
            experiment_id, run_name="train_propensity_deep", tags=tags
        ).info.run_id
        _log_launch(client, run_id, features_uri, settings, config, launch, rows)

    checkpoints = settings.lake_uri + f"/checkpoints/{run_id}"
    with tempfile.TemporaryDirectory() as tmp:
        result_path = Path(tmp) / "result.json"
        cmd = torchrun_command(
            launch,
            [
                "--features",
                features_uri,
                "--checkpoints",
                checkpoints,
                "--run-id",
                run_id,
                "--config",
                config.model_dump_json(),
                "--seed",
                str(settings.seed),
                "--result",
                str(result_path),
            ],
        )
        threads = max(1, (os.cpu_count() or 1) // launch.nproc_per_node)
        env = {
            **os.environ,
            "OMP_NUM_THREADS": str(threads),
            "MLFLOW_TRACKING_URI": settings.tracking_uri,
            **(extra_env or {}),
        }
        log.info("launching: %s", " ".join(cmd))
        completed = subprocess.run(cmd, env=env, check=False)
        if completed.returncode != 0 or not result_path.exists():
            client.set_terminated(run_id, "FAILED")
            raise RuntimeError(
                f"torchrun exited with {completed.returncode}; MLflow run "
                f"{run_id} marked FAILED; checkpoints kept at {checkpoints}"
            )
        result = json.loads(result_path.read_text())
    client.set_terminated(run_id, "FINISHED")
    model_uri = client.get_run(run_id).data.tags.get(f"{TAG_PREFIX}model_uri")
    return {
        "run_id": run_id,
        "model_uri": model_uri,
        **{f"test_{k}": v for k, v in result["test"].items()},
        "samples_per_second": result["samples_per_second"],
        "restarts": result["restarts"],
        "world_size": result["world_size"],
        "backend": result["backend"],
        "best_epoch": result["best_epoch"],
        "epochs_run": result["epochs_run"],
    }


def _log_launch(
    client,
    run_id: str,
    features_uri: str,
    settings: Settings,
    config: DeepConfig,
    launch: Launch,
    rows: int,
) -> None:
    log_params_flat(
        run_id,
        {
            "deep": config.model_dump(mode="json"),
            "seed": settings.seed,
            "launch": launch.__dict__,
            "rows": rows,
        },
    )
    log_snapshot_input(run_id, features_uri, "propensity")
