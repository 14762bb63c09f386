"""Promote a registered version: gather the evidence, decide (pure), record, apply (thin).

Works for any model kind. The evidence for
:func:`flashsale_ml.promotion.decision.decide_promotion` is built here: the newest sale of the
challenger's feature snapshot is the holdout (rows chosen by the kind), both models are
loaded from the registry with their own flavor's predictor and scored on exactly those rows,
the challenger goes through the kind's behavioural checks, and the
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
from typing import Any

import numpy as np

from flashsale_ml.config import Settings
from flashsale_ml.datasets import Snapshot
from flashsale_ml.models import get_flavor, get_kind
from flashsale_ml.models.base import ModelKind
from flashsale_ml.promotion.decision import Decision, ModelEvaluation, decide_promotion
from flashsale_ml.promotion.gates import GateSpec
from flashsale_ml.promotion.holdout import Holdout, newest_holdout
from flashsale_ml.registry import (
    CHALLENGER,
    CHAMPION,
    FEATURE_SNAPSHOT_URI_TAG,
    FITTED_ON_TAG,
    RegistryError,
    StaleDecisionError,
    apply_decision,
    current_alias,
    kind_of,
    resolve_name,
    version_tags,
)
from flashsale_ml.tracking import (
    TAG_PREFIX,
    log_figures,
    log_json,
    log_metrics_batch,
    log_params_flat,
    log_text,
    set_tags,
    step_run,
)
from flashsale_ml.training.runner import MODEL_FLAVOR_TAG

log = logging.getLogger(__name__)

BEHAVIOUR_SAMPLE_ROWS = 2_000


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
    settings: Settings,
    kind: ModelKind,
    name: str,
    version: str,
    holdout: Holdout,
    as_challenger: bool,
) -> ModelEvaluation:
    """Score one registered version on the holdout with its own flavor's predictor.

    A challenger is also put through the kind's behavioural checks and its training data's
    validation is looked up; the champion passed both when it was promoted.
    """
    tags = version_tags(settings, name, version)
    fitted = tags.get(FITTED_ON_TAG)
    flavor = get_flavor(kind.name, tags.get(MODEL_FLAVOR_TAG))
    predict = flavor.predictor(f"models:/{name}/{version}")
    try:
        scores = predict(holdout.frame)
    except Exception as exc:  # a schema mismatch must name the model, not only the column
        raise RegistryError(
            f"{name} version {version} cannot score holdout {holdout.window.key}: {exc}"
        ) from exc
    behaviour = ()
    if as_challenger:
        sample = holdout.frame.sample(
            n=min(BEHAVIOUR_SAMPLE_ROWS, len(holdout.frame)), random_state=settings.seed
        ).reset_index(drop=True)
        behaviour = kind.behavioural_checks(
            predict, sample, settings.seed, settings, flavor.invariance_tolerance
        )
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
    gate_settings: dict[str, Any],
    spec: GateSpec,
    challenger_scores: np.ndarray,
    champion_scores: np.ndarray | None,
) -> None:
    """Log the decision's evidence on the open ``promote_model`` run: params, metrics, reasons,
    plots."""
    from flashsale_ml.training import plots

    log_params_flat(
        run_id,
        {
            "gates": gate_settings,
            "holdout": {
                "campaigns": list(holdout.window.campaign_ids),
                "as_of": holdout.window.as_of,
                "rows": holdout.window.rows,
                "row_digest": holdout.window.row_digest,
            },
        },
    )
    log_metrics_batch(run_id, decision.metrics)
    log_json(decision.to_dict(), "promotion/decision.json")
    log_text("\n".join(decision.reasons), "promotion/reasons.txt")
    figures = {}
    if set(np.unique(holdout.labels)) <= {0, 1}:  # a ROC curve needs binary targets
        curves = {f"challenger v{version}": challenger_scores}
        if champion_scores is not None:
            curves[f"champion v{champion_version}"] = champion_scores
        figures["roc_holdout.png"] = plots.roc_curves_figure(
            holdout.labels, curves, "ROC on the promotion holdout"
        )
    if decision.bootstrap is not None:
        b = decision.bootstrap
        figures["bootstrap_difference.png"] = plots.bootstrap_figure(
            b.distribution, b.difference, b.low, b.high, b.metric, spec.primary.min_improvement
        )
    log_figures(figures)


def promote_version(
    settings: Settings,
    model: str,
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
    name = resolve_name(model, settings)
    kind = get_kind(kind_of(name, settings))
    version = version or current_alias(settings, name, CHALLENGER)
    if not version:
        raise RegistryError(f"{name} has no {CHALLENGER}; pass a version to judge")
    version = str(version)
    if not features_uri:
        features_uri = version_tags(settings, name, version).get(FEATURE_SNAPSHOT_URI_TAG)
    if not features_uri:
        raise RegistryError(f"{name} version {version} records no feature snapshot; pass one")
    holdout = newest_holdout(features_uri, kind)
    gate_settings = settings.gate_settings(kind.name)
    spec = kind.gates(settings)
    challenger = evaluate_version(settings, kind, name, version, holdout, True)
    for attempt in range(1, max_attempts + 1):
        champion_version = current_alias(settings, name, CHAMPION)
        if champion_version == version:
            reasons = [f"version {version} is already the champion"]
            return {"name": name, "version": version, "promoted": False, "reasons": reasons}
        champion = (
            evaluate_version(settings, kind, name, champion_version, holdout, False)
            if champion_version
            else None
        )
        decision = decide_promotion(challenger, champion, spec, settings.seed)
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
                gate_settings.model_dump(),
                spec,
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
                set_tags({RUN_SUPERSEDED_TAG: str(exc)}, run_id)
                continue
            except Exception as exc:
                # The run ends FAILED and says why; it never claims a decision.
                _tag_quietly(run_id, RUN_NOT_APPLIED_TAG, f"{type(exc).__name__}: {exc}")
                raise
            # Applied: only now does the run carry the decision (and the parent run its copy).
            set_tags({RUN_DECISION_TAG: verdict}, run_id)
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


def _tag_quietly(run_id: str, key: str, value: str) -> None:
    try:
        set_tags({key: value[:5000]}, run_id)
    except Exception:
        log.warning("could not tag run %s with %s", run_id, key, exc_info=True)
