"""Training-workflow steps: open and close the pipeline run, train a kind's flavor, register
it, judge it for promotion; and the whole pipeline in-process for the CLI.

The Airflow DAG and ``flashsale pipeline`` run the same branches
(:func:`flashsale_ml.models.training_branches`), so the two cannot drift apart.
"""

from __future__ import annotations

import logging
from typing import Any

from flashsale_ml.config import Settings, get_settings

log = logging.getLogger(__name__)


def start_pipeline(
    name: str, tags: dict[str, str] | None = None, settings: Settings | None = None
) -> str:
    """Open the MLflow parent run of one pipeline execution; returns its run id."""
    from flashsale_ml.tracking import start_pipeline_run

    return start_pipeline_run(settings or get_settings(), name, tags)


def finish_pipeline(
    parent_run_id: str, status: str = "FINISHED", settings: Settings | None = None
) -> None:
    """Close the pipeline run with ``status``, copying its steps' test metrics onto it."""
    from flashsale_ml.tracking import finish_pipeline_run

    finish_pipeline_run(settings or get_settings(), parent_run_id, status)


def train_model(
    features_uri: str,
    kind: str,
    flavor: str | None = None,
    parent_run_id: str | None = None,
    settings: Settings | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Train one flavor of a model kind on a feature snapshot (see
    :func:`flashsale_ml.training.runner.train_model`); returns its run id, model URI, test
    metrics and the flavor's extras. ``options`` go to the flavor (e.g. ``epochs``)."""
    from flashsale_ml.training.runner import train_model as run

    result = run(kind, features_uri, settings or get_settings(), flavor, parent_run_id, options)
    return result.summary()


def train_branch(
    task_id: str,
    features_uri: str,
    parent_run_id: str | None = None,
    settings: Settings | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Train the pipeline branch ``task_id`` (one of :func:`training_branches`)."""
    from flashsale_ml.models import training_branches

    branches = {b.task_id: b for b in training_branches()}
    if task_id not in branches:
        raise ValueError(f"no training branch {task_id!r}; branches: {', '.join(branches)}")
    branch = branches[task_id]
    return train_model(features_uri, branch.kind, branch.flavor, parent_run_id, settings, **options)


def retrain_branch(
    task_id: str,
    features_uri: str,
    parent_run_id: str | None = None,
    settings: Settings | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Retrain one of :func:`~flashsale_ml.models.retraining_branches` and, for a branch that
    promotes, register the model and judge it against the champion.

    A rejected challenger is a decision, not a failure: the result says ``promoted: False``
    with the gates' reasons.
    """
    from flashsale_ml.models import retraining_branches

    settings = settings or get_settings()
    branches = {b.task_id: b for b in retraining_branches()}
    if task_id not in branches:
        raise ValueError(f"no retraining branch {task_id!r}; branches: {', '.join(branches)}")
    branch = branches[task_id]
    trained = train_model(
        features_uri, branch.kind, branch.flavor, parent_run_id, settings, **options
    )
    result = {
        "task_id": task_id,
        "kind": branch.kind,
        "flavor": branch.flavor,
        "run_id": trained["run_id"],
        "judged": branch.promote,
    }
    if branch.promote:
        registered = register_model(trained["run_id"], branch.kind, settings)
        decision = promote_model(registered["version"], branch.kind, parent_run_id, settings)
        result.update(
            version=registered["version"],
            promoted=bool(decision.get("promoted")),
            reasons=list(decision.get("reasons", []))[:10],
            champion=decision.get("champion"),
        )
    return result


def register_model(
    run_id: str, model_kind: str | None = None, settings: Settings | None = None
) -> dict[str, Any]:
    """Register the run's model as a new version with the ``challenger`` alias.

    The kind defaults to the one the training run recorded.
    """
    from flashsale_ml.registry import register_from_run
    from flashsale_ml.tracking import configure, run_tags
    from flashsale_ml.training.runner import MODEL_KIND_TAG

    settings = settings or get_settings()
    if model_kind is None:
        configure(settings)
        model_kind = run_tags(run_id).get(MODEL_KIND_TAG)
        if not model_kind:
            raise ValueError(f"run {run_id} records no model kind; pass one")
    return register_from_run(run_id, model_kind, settings).summary()


def promote_model(
    version: str,
    model_kind: str,
    parent_run_id: str | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Judge a registered version against the champion on the newest holdout; apply the result.

    The decision (promote or not, with every gate's reason) is logged as a ``promote_model``
    run and as tags on the version; only a passing challenger moves ``champion``.
    """
    from flashsale_ml.promotion.flow import promote_version

    return promote_version(
        settings or get_settings(), model_kind, version, parent_run_id=parent_run_id
    )


def run_pipeline(
    name: str,
    users: int | None = None,
    days: int | None = None,
    branch_options: dict[str, dict[str, Any]] | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Every step of the training pipeline in this process, in the DAG's order: generate,
    validate, build features, then each training branch (trained; registered and judged
    where the branch promotes). The pipeline run ends FAILED if any step fails.

    Args:
        name: the pipeline run's name.
        users, days: the simulated shop's size (default: settings).
        branch_options: task id -> flavor options (e.g. ``{"train_propensity_deep":
            {"epochs": 2}}``).
        settings: runtime settings (default: from the environment).
    """
    from flashsale_ml.models import training_branches
    from flashsale_ml.steps.data import build_features, generate_data, validate_data

    settings = settings or get_settings()
    parent = start_pipeline(name, settings=settings)
    summary: dict[str, Any] = {"pipeline_run_id": parent}
    try:
        summary["raw_uri"] = raw = generate_data(parent, settings, users=users, days=days)
        summary["validation"] = validate_data(raw, parent, settings)
        summary["features_uri"] = features = build_features(raw, parent, settings)
        for branch in training_branches():
            options = (branch_options or {}).get(branch.task_id, {})
            trained = train_branch(branch.task_id, features, parent, settings, **options)
            outcome: dict[str, Any] = {"training": trained}
            if branch.promote:
                registered = register_model(trained["run_id"], branch.kind, settings)
                outcome["registered"] = registered
                outcome["promotion"] = promote_model(
                    registered["version"], branch.kind, parent, settings
                )
            summary[branch.task_id] = outcome
    except BaseException:
        try:
            finish_pipeline(parent, "FAILED", settings)
        except Exception as exc:  # the tracking server may be what failed
            log.warning("could not mark pipeline run %s FAILED (%s)", parent, type(exc).__name__)
        raise
    finish_pipeline(parent, "FINISHED", settings)
    return summary
