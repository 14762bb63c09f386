"""Promote a registered version: gather the evidence, decide (pure), record, apply (thin).

The evidence for :func:`flashsale_ml.promotion.decide_promotion` is built here: the newest
sale of the challenger's feature snapshot is the holdout, both models are loaded from the
registry and scored on exactly those rows, the challenger's behaviour is checked, and the
validation report of its training data is looked up next to the data. The evidence is logged
as a ``promote_model`` MLflow run (metrics, reasons, plots, the proposed verdict) and the
decision is applied to the aliases by :func:`flashsale_ml.registry.apply_decision` while that
run is open; it refuses if the champion changed meanwhile, and the decision is then remade
against the new champion. The run is tagged with the decision only once it has been applied,
so a ``promote_model`` run and the registry never disagree: a run whose decision was not
applied says ``superseded`` or failed, with the error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from flashsale_ml.config import PromotionGates, Settings
from flashsale_ml.datasets import Snapshot
from flashsale_ml.features.build import LABEL
from flashsale_ml.promotion import (
    Decision,
    HoldoutWindow,
    ModelEvaluation,
    behavioural_checks,
    decide_promotion,
    row_digest,
    value_tiers,
)
from flashsale_ml.registry import (
    CHALLENGER,
    CHAMPION,
    FEATURE_SNAPSHOT_URI_TAG,
    FITTED_ON_TAG,
    RegistryError,
    StaleDecisionError,
    alias_version,
    apply_decision,
    resolve_name,
)
from flashsale_ml.tracking import (
    TAG_PREFIX,
    configure,
    log_metrics_batch,
    log_params_flat,
    step_run,
)

log = logging.getLogger(__name__)

# A deeper discount must never make a purchase less likely on average (beyond noise).
MONOTONE_GRID: dict[str, tuple[float, ...]] = {
    "discount_depth": (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
}
BEHAVIOUR_SAMPLE_ROWS = 2_000


@dataclass(frozen=True)
class Holdout:
    """The newest sale of a feature snapshot, in a fixed row order."""

    frame: pd.DataFrame
    window: HoldoutWindow
    labels: np.ndarray
    segments: np.ndarray


def newest_holdout(features_uri: str) -> Holdout:
    """Rows of the newest campaign in ``features_uri`` (sorted by user), labels and tiers.

    Raises:
        ValueError: the snapshot has no propensity rows.
    """
    with Snapshot(features_uri) as snapshot:
        frame = snapshot.read_pandas("propensity")
        snapshot_id = snapshot.snapshot_id
    if frame.empty:
        raise ValueError(f"feature snapshot {features_uri} has no propensity rows")
    newest = frame.groupby("campaign_id")["as_of"].min().idxmax()
    rows = frame[frame["campaign_id"] == newest].sort_values("user_id").reset_index(drop=True)
    window = HoldoutWindow(
        feature_snapshot_id=snapshot_id,
        campaign_ids=(str(newest),),
        as_of=pd.Timestamp(rows["as_of"].min()).isoformat(),
        rows=len(rows),
        row_digest=row_digest(rows[["campaign_id", "user_id"]]),
    )
    return Holdout(rows, window, rows[LABEL].to_numpy(dtype=int), value_tiers(rows["revenue_all"]))


def _training_data_validated(features_uri: str | None) -> bool:
    """Did the raw snapshot behind the model's training features pass a full validation?"""
    from flashsale_ml.validation import latest_validation

    if not features_uri:
        return False
    with Snapshot(features_uri) as snapshot:
        raw_uri = snapshot.manifest.metadata.get("input_snapshot")
    report = latest_validation(raw_uri) if raw_uri else None
    return bool(report and report.get("success"))


def evaluate_version(
    client,
    name: str,
    version: str,
    holdout: Holdout,
    seed: int,
    as_challenger: bool,
) -> ModelEvaluation:
    """Score one registered version on the holdout.

    A challenger is also put through the behavioural checks and its training data's
    validation is looked up; the champion passed both when it was promoted.
    """
    from flashsale_ml.scoring import load_predictor

    model_version = client.get_model_version(name, version)
    tags = {**client.get_run(model_version.run_id).data.tags, **model_version.tags}
    fitted = tags.get(FITTED_ON_TAG)
    predict = load_predictor(f"models:/{name}/{version}")
    try:
        scores = predict(holdout.frame)
    except Exception as exc:  # a schema mismatch must name the model, not only the column
        raise RegistryError(
            f"{name} version {version} cannot score holdout {holdout.window.key}: {exc}"
        ) from exc
    behaviour = ()
    if as_challenger:
        sample = holdout.frame.sample(
            n=min(BEHAVIOUR_SAMPLE_ROWS, len(holdout.frame)), random_state=seed
        ).reset_index(drop=True)
        behaviour = behavioural_checks(predict, sample, seed, MONOTONE_GRID)
    return ModelEvaluation(
        model=f"{name}/{version}",
        holdout=holdout.window,
        fitted_on=frozenset(c for c in fitted.split(",") if c) if fitted is not None else None,
        labels=holdout.labels,
        scores=scores,
        segments=holdout.segments,
        behaviour=behaviour,
        data_validated=(
            _training_data_validated(tags.get(FEATURE_SNAPSHOT_URI_TAG)) if as_challenger else None
        ),
    )


# On the ``promote_model`` run: the verdict the gates proposed (always), the decision that was
# applied to the registry (only once it was), or why it was not applied.
RUN_PROPOSED_TAG = f"{TAG_PREFIX}promotion.proposed"
RUN_DECISION_TAG = f"{TAG_PREFIX}promotion.decision"
RUN_SUPERSEDED_TAG = f"{TAG_PREFIX}promotion.superseded"
RUN_NOT_APPLIED_TAG = f"{TAG_PREFIX}promotion.not_applied"


def _decision_run_tags(
    name: str, version: str, champion_version: str | None, holdout: Holdout, decision: Decision
) -> dict[str, str]:
    return {
        f"{TAG_PREFIX}registered_model": name,
        f"{TAG_PREFIX}challenger_version": version,
        f"{TAG_PREFIX}champion_version": champion_version or "none",
        RUN_PROPOSED_TAG: "promoted" if decision.promote else "rejected",
        f"{TAG_PREFIX}feature_snapshot_id": holdout.window.feature_snapshot_id,
    }


def _log_evidence(
    run_id: str,
    version: str,
    champion_version: str | None,
    holdout: Holdout,
    decision: Decision,
    gates: PromotionGates,
    challenger_scores: np.ndarray,
    champion_scores: np.ndarray | None,
) -> None:
    """Log the decision's evidence on the open ``promote_model`` run: params, metrics, reasons,
    plots."""
    import mlflow

    from flashsale_ml.training import plots

    log_params_flat(
        run_id,
        {
            "gates": gates.model_dump(),
            "holdout": {
                "campaigns": list(holdout.window.campaign_ids),
                "as_of": holdout.window.as_of,
                "rows": holdout.window.rows,
                "row_digest": holdout.window.row_digest,
            },
        },
    )
    log_metrics_batch(run_id, decision.metrics)
    mlflow.log_dict(decision.to_dict(), "promotion/decision.json")
    mlflow.log_text("\n".join(decision.reasons), "promotion/reasons.txt")
    curves = {f"challenger v{version}": challenger_scores}
    if champion_scores is not None:
        curves[f"champion v{champion_version}"] = champion_scores
    mlflow.log_figure(
        plots.roc_curves_figure(holdout.labels, curves, "ROC on the promotion holdout"),
        "plots/roc_holdout.png",
    )
    if decision.bootstrap is not None:
        b = decision.bootstrap
        mlflow.log_figure(
            plots.bootstrap_figure(
                b.distribution, b.difference, b.low, b.high, b.metric, gates.min_improvement
            ),
            "plots/bootstrap_difference.png",
        )


def promote_version(
    settings: Settings,
    model: str = "propensity",
    version: str | None = None,
    features_uri: str | None = None,
    parent_run_id: str | None = None,
    max_attempts: int = 3,
) -> dict[str, Any]:
    """Decide whether a registered version becomes champion, record why, and apply it.

    Args:
        settings: registry location, gates (``settings.promotion``) and the seed.
        model: registered model name or kind.
        version: the version to judge (default: the one with the ``challenger`` alias).
        features_uri: where the holdout comes from (default: the version's own feature
            snapshot, whose newest sale it was never fitted on).
        parent_run_id: pipeline run to nest the ``promote_model`` run under.
        max_attempts: how often to re-decide when another promotion won the race.

    Returns:
        A small summary: version, whether it was promoted, the aliases afterwards, the reasons
        and the MLflow run that recorded the decision.

    Raises:
        RegistryError: nothing to judge, or the champion kept changing.
    """
    import mlflow

    name = resolve_name(model, settings)
    configure(settings)
    client = mlflow.MlflowClient()
    version = version or alias_version(client, name, CHALLENGER)
    if not version:
        raise RegistryError(f"{name} has no {CHALLENGER}; pass a version to judge")
    version = str(version)
    if not features_uri:
        features_uri = client.get_model_version(name, version).tags.get(FEATURE_SNAPSHOT_URI_TAG)
    if not features_uri:
        raise RegistryError(f"{name} version {version} records no feature snapshot; pass one")
    holdout = newest_holdout(features_uri)
    gates = settings.promotion
    challenger = evaluate_version(client, name, version, holdout, settings.seed, True)
    for attempt in range(1, max_attempts + 1):
        champion_version = alias_version(client, name, CHAMPION)
        if champion_version == version:
            reasons = [f"version {version} is already the champion"]
            return {"name": name, "version": version, "promoted": False, "reasons": reasons}
        champion = (
            evaluate_version(client, name, champion_version, holdout, settings.seed, False)
            if champion_version
            else None
        )
        decision = decide_promotion(challenger, champion, gates, settings.seed)
        verdict = "promoted" if decision.promote else "rejected"
        tags = _decision_run_tags(name, version, champion_version, holdout, decision)
        with step_run(settings, "promote_model", parent_run_id, tags) as run:
            run_id = run.info.run_id
            _log_evidence(
                run_id,
                version,
                champion_version,
                holdout,
                decision,
                gates,
                challenger.scores,
                champion.scores if champion else None,
            )
            try:
                state = apply_decision(
                    settings,
                    name,
                    version,
                    champion_version,
                    decision.promote,
                    decision.reasons,
                    run_id,
                )
            except StaleDecisionError as exc:
                log.warning("attempt %d superseded: %s", attempt, exc)
                client.set_tag(run_id, RUN_SUPERSEDED_TAG, str(exc))
                continue
            except Exception as exc:
                # The run ends FAILED and says why; it never claims a decision.
                _tag_quietly(client, run_id, RUN_NOT_APPLIED_TAG, f"{type(exc).__name__}: {exc}")
                raise
            # Applied: only now does the run carry the decision (and the parent run its copy).
            client.set_tag(run_id, RUN_DECISION_TAG, verdict)
        log.info(
            "%s v%s %s: %s",
            name,
            version,
            "PROMOTED" if decision.promote else "not promoted",
            " | ".join(decision.reasons),
        )
        return {
            "name": name,
            "version": version,
            "promoted": decision.promote,
            "against": champion_version,
            "champion": state.champion,
            "previous_champion": state.previous_champion,
            "reasons": decision.reasons,
            "decision_run_id": run_id,
            "attempts": attempt,
            **{k: round(v, 6) for k, v in decision.metrics.items() if k.startswith("difference")},
        }
    raise RegistryError(
        f"{name} version {version}: the champion changed {max_attempts} times while deciding"
    )


def _tag_quietly(client, run_id: str, key: str, value: str) -> None:
    try:
        client.set_tag(run_id, key, value[:5000])
    except Exception:
        log.warning("could not tag run %s with %s", run_id, key, exc_info=True)
