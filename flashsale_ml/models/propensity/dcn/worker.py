"""Worker entry point of distributed training, launched by ``torchrun``.

    torchrun --standalone --nproc-per-node=2 --max-restarts=1 \\
        -m flashsale_ml.models.propensity.dcn.worker --features URI --checkpoints URI \\
        --split '{"train": [...], "valid": [...], "test": [...]}' --run-id ID

* Backend: NCCL when CUDA is available, gloo otherwise; one GPU per local rank.
* Data: each rank reads only its shard of the feature Parquet (``data.read_shard``).
* Determinism: seeds from config; every rank draws its epoch order from (seed, epoch, rank).
* AMP (bfloat16 autocast) on GPU.
* Fault tolerance: rank 0 writes a checkpoint to storage after every epoch; a restarted worker
  group (``torchrun --max-restarts``) resumes from the newest one.
* Split: the shared campaign split policy (``training.splits``), passed by the launcher.
* Tracking: rank 0 logs per-epoch metrics (one batch per epoch) into the MLflow run the
  launcher opened, and at the end saves the best weights and the test scores for the
  launcher, which logs the model, its evaluation and the loss curves.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import os
import time
from datetime import timedelta
from typing import Any

import numpy as np

from flashsale_ml.evaluation.binary import binary_metrics, evaluate_scores
from flashsale_ml.features.columns import PROPENSITY_TABLE
from flashsale_ml.models.propensity.dcn.data import (
    Encoded,
    cardinalities,
    encode,
    n_dense_columns,
    sale_columns,
)
from flashsale_ml.models.propensity.dcn.network import DeepConfig, build_model
from flashsale_ml.training.splits import CampaignSplit, part_positions

log = logging.getLogger("flashsale_ml.models.propensity.dcn")

LATEST = "latest.json"
FAIL_ONCE_ENV = "FLASHSALE_TEST_FAIL_ONCE_AT_EPOCH"  # test hook: kill rank 1 once, at this epoch


def _split(encoded: Encoded, split: CampaignSplit, seed: int) -> dict[str, Encoded]:
    """This rank's rows of each part, by the shared campaign split policy."""
    positions = part_positions(split, encoded.campaign, encoded.user_id, seed)
    return {name: encoded.take(rows) for name, rows in positions.items()}


def _save_checkpoint(store, state: dict[str, Any], epoch: int) -> None:
    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    key = f"epoch-{epoch:03d}.pt"
    store.write_bytes(key, buffer.getvalue())
    # The pointer is written after the checkpoint, so it never names a partial file.
    store.write_bytes(LATEST, json.dumps({"epoch": epoch, "key": key}).encode())


def _load_checkpoint(store) -> dict[str, Any] | None:
    import torch

    from flashsale_ml.storage import ObjectNotFoundError

    try:
        latest = json.loads(store.read_bytes(LATEST))
    except ObjectNotFoundError:
        return None
    return torch.load(io.BytesIO(store.read_bytes(latest["key"])), weights_only=False)


def _predict(model, data: Encoded, device, batch: int) -> np.ndarray:
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(data), batch):
            dense = torch.from_numpy(data.dense[start : start + batch]).to(device)
            cats = torch.from_numpy(data.cats[start : start + batch]).to(device)
            out.append(torch.sigmoid(model(dense, cats).float()).cpu().numpy())
    model.train()
    return np.concatenate(out) if out else np.empty(0, dtype=np.float32)


def parameter_digest(model) -> str:
    """SHA-256 of a model's parameters (names and float32 values, in order). DDP keeps every
    rank's parameters identical; each rank logs this digest at the end so tests can check."""
    digest = hashlib.sha256()
    for name, tensor in model.named_parameters():
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _gather(values: np.ndarray) -> np.ndarray:
    import torch.distributed as dist

    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, values)
    return np.concatenate(parts)


def main(argv: list[str] | None = None) -> None:
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from flashsale_ml.datasets import Snapshot
    from flashsale_ml.models.propensity.dcn.data import read_shard
    from flashsale_ml.storage import open_store

    parser = argparse.ArgumentParser()
    parser.add_argument("--features", required=True)
    parser.add_argument("--checkpoints", required=True)
    parser.add_argument("--run-id", default=None)
    parser.add_argument("--config", default="{}")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--split", required=True, help="the campaign split, as JSON")
    parser.add_argument("--result", default=None, help="where rank 0 writes its result JSON")
    parser.add_argument(
        "--model-out", default=None, help="where rank 0 saves the best weights and test scores"
    )
    args = parser.parse_args(argv)
    config = DeepConfig(**json.loads(args.config))

    use_cuda = torch.cuda.is_available()
    # A bounded timeout: a restarted gloo group was seen waiting in its full-mesh connect for
    # the 30-minute default; failing fast lets torchrun's next restart attempt go through.
    timeout = timedelta(seconds=float(os.environ.get("FLASHSALE_DIST_TIMEOUT_S", "120")))
    dist.init_process_group(backend="nccl" if use_cuda else "gloo", timeout=timeout)
    rank, world = dist.get_rank(), dist.get_world_size()
    # The level in each line: the launcher relays this output to its logger at that level.
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s %(levelname)s rank{rank} %(message)s",
        datefmt="%H:%M:%S",
        force=True,
    )
    for noisy in ("botocore", "urllib3", "matplotlib", "mlflow"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))

    with Snapshot(args.features) as snap:
        frame = read_shard(snap.local_files(PROPENSITY_TABLE), rank, world)
    split = CampaignSplit.from_dict(json.loads(args.split))
    data = _split(encode(frame, config.user_buckets), split, args.seed)
    train = data["train"]
    log.info(
        "backend %s, world %d, restart %d: %s train / %s valid / %s test rows on this rank",
        dist.get_backend(),
        world,
        restart,
        f"{len(train):,}",
        f"{len(data['valid']):,}",
        f"{len(data['test']):,}",
    )

    model = build_model(
        n_dense_columns(),
        cardinalities(config.user_buckets),
        config,
        sale_columns=sale_columns(),
    )
    model.to(device)
    ddp = DistributedDataParallel(model, device_ids=[local_rank] if use_cuda else None)
    optimizer = torch.optim.AdamW(
        ddp.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    positives = float(_gather(np.array([train.label.sum()])).sum())
    total = float(_gather(np.array([len(train)])).sum())
    loss_fn = torch.nn.BCEWithLogitsLoss()

    store = open_store(args.checkpoints)
    start_epoch, history = 0, {"train_loss": [], "valid_loss": [], "valid_auc": []}
    best: dict[str, Any] | None = None  # epoch, valid log loss and weights of the best epoch
    checkpoint = _load_checkpoint(store)
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        start_epoch, history = checkpoint["epoch"] + 1, checkpoint["history"]
        best = checkpoint.get("best")
        log.info("resumed from the checkpoint of epoch %d", checkpoint["epoch"])

    # Equal step counts on every rank, or DDP's all-reduce would wait forever on the rank
    # with more batches.
    steps = int(min(_gather(np.array([len(train) // config.batch_size]))))
    steps = max(steps, 1)
    started = time.perf_counter()
    samples = 0
    for epoch in range(start_epoch, config.epochs):
        fail_at = os.environ.get(FAIL_ONCE_ENV)
        if fail_at is not None and int(fail_at) == epoch and restart == 0 and rank == world - 1:
            log.error("test hook: worker exits abruptly at epoch %d", epoch)
            os._exit(17)
        rng = np.random.default_rng([args.seed, epoch, rank])
        order_idx = rng.permutation(len(train))
        running = 0.0
        for step in range(steps):
            idx = order_idx[step * config.batch_size : (step + 1) * config.batch_size]
            dense = torch.from_numpy(train.dense[idx]).to(device, non_blocking=True)
            cats = torch.from_numpy(train.cats[idx]).to(device, non_blocking=True)
            label = torch.from_numpy(train.label[idx]).to(device, non_blocking=True)
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_cuda):
                loss = loss_fn(ddp(dense, cats).float(), label)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running += float(loss.detach())
            samples += len(idx)
        train_loss = float(_gather(np.array([running / steps])).mean())
        y_valid = _gather(data["valid"].label)
        p_valid = _gather(_predict(model, data["valid"], device, 65_536))
        valid = binary_metrics(y_valid, np.clip(p_valid, 1e-7, 1 - 1e-7))
        history["train_loss"].append(train_loss)
        history["valid_loss"].append(valid["log_loss"])
        history["valid_auc"].append(valid["auc"])
        # Every rank sees the same gathered validation metrics, so all keep the same best
        # epoch and stop together.
        if best is None or valid["log_loss"] < best["valid_log_loss"]:
            best = {
                "epoch": epoch,
                "valid_log_loss": valid["log_loss"],
                "model": {k: v.detach().clone() for k, v in model.state_dict().items()},
            }
        if rank == 0:
            _save_checkpoint(
                store,
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "epoch": epoch,
                    "history": history,
                    "best": best,
                },
                epoch,
            )
            if args.run_id:
                from flashsale_ml.tracking import log_metrics_batch

                log_metrics_batch(
                    args.run_id,
                    {
                        "epoch_train_loss": train_loss,
                        "epoch_valid_log_loss": valid["log_loss"],
                        "epoch_valid_auc": valid["auc"],
                    },
                    step=epoch,
                )
        log.info(
            "epoch %d/%d: train loss %.4f, valid log loss %.4f, valid AUC %.4f",
            epoch + 1,
            config.epochs,
            train_loss,
            valid["log_loss"],
            valid["auc"],
        )
        dist.barrier()
        if epoch - best["epoch"] >= config.early_stopping_epochs:
            log.info(
                "no better validation loss for %d epochs: stopping, keeping epoch %d",
                config.early_stopping_epochs,
                best["epoch"] + 1,
            )
            break

    if best is not None:
        model.load_state_dict(best["model"])
    # Identical on every rank when gradients are synchronised (BatchNorm's running statistics,
    # buffers, are each rank's own and left out).
    log.info("parameters sha256 %s", parameter_digest(model))

    seconds = time.perf_counter() - started
    throughput = float(_gather(np.array([samples / max(seconds, 1e-9)])).sum())
    y_test = _gather(data["test"].label)
    p_test = _gather(_predict(model, data["test"], device, 65_536))
    if rank == 0:
        evaluation = evaluate_scores(y_test, np.clip(p_test, 1e-7, 1 - 1e-7))
        test = evaluation.metrics
        result = {
            "test": test,
            "history": history,
            "samples_per_second": throughput,
            "world_size": world,
            "backend": dist.get_backend(),
            "positive_share": positives / max(total, 1.0),
            "restarts": restart,
            "best_epoch": best["epoch"] + 1 if best is not None else None,
            "epochs_run": len(history["valid_loss"]),
        }
        if args.model_out:
            # The launcher logs the model (through the tracking adapter) from these.
            torch.save(
                {
                    "state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
                    "n_dense": data["test"].dense.shape[1],
                    "example": np.hstack(
                        [data["test"].dense[:5], data["test"].cats[:5].astype(np.float32)]
                    ),
                    "y_test": y_test,
                    "p_test": np.clip(p_test, 1e-7, 1 - 1e-7),
                },
                args.model_out,
            )
        if args.result:
            with open(args.result, "w") as fh:
                json.dump(result, fh)
        log.info("test AUC %.4f, %.0f samples/s over %d ranks", test["auc"], throughput, world)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
