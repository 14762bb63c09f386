"""Model registry adapter: register versions with lineage tags and move aliases.

Aliases, never stages: a new version becomes ``challenger``; ``champion`` is what scoring
loads (``models:/flashsale-propensity@champion``). The first version of a model kind becomes
champion directly; later promotions go through the gates of the promotion decision.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flashsale_ml.config import Settings
from flashsale_ml.tracking import TAG_PREFIX, configure

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS_CHAMPION = "previous-champion"


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    aliases: tuple[str, ...]
    run_id: str

    def summary(self) -> dict[str, object]:
        return {
            "name": self.name,
            "version": self.version,
            "aliases": list(self.aliases),
            "run_id": self.run_id,
        }


def register_from_run(run_id: str, model_kind: str, settings: Settings) -> RegisteredVersion:
    """Register the model logged by ``run_id`` as a new version of ``flashsale-<kind>``.

    The version carries the run's lineage and test metrics as tags and gets the
    ``challenger`` alias; when the model has no champion yet it becomes champion too.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    configure(settings)
    client = mlflow.MlflowClient()
    run = client.get_run(run_id)
    model_uri = run.data.tags.get(f"{TAG_PREFIX}model_uri")
    if not model_uri:
        raise ValueError(f"run {run_id} logged no model (tag {TAG_PREFIX}model_uri missing)")
    name = settings.registered_model_name(model_kind)
    try:
        client.create_registered_model(
            name,
            tags={f"{TAG_PREFIX}model_kind": model_kind},
            description=f"flashsale-ml {model_kind} model; load by alias, e.g. "
            f"models:/{name}@{CHAMPION}",
        )
    except MlflowException as exc:
        if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code):
            raise
    lineage = {k: v for k, v in run.data.tags.items() if k.startswith(TAG_PREFIX)}
    metrics = {
        f"{TAG_PREFIX}metric.{k}": f"{v:.6g}"
        for k, v in run.data.metrics.items()
        if k.startswith("test_")
    }
    # register_model resolves a LoggedModel URI (models:/m-...) to its source and model id,
    # which a REST registry requires; create_model_version with the bare URI is refused.
    version = mlflow.register_model(
        model_uri,
        name,
        tags={**lineage, **metrics, f"{TAG_PREFIX}training_run_id": run_id},
    )
    client.set_registered_model_alias(name, CHALLENGER, version.version)
    aliases = [CHALLENGER]
    try:
        client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        client.set_registered_model_alias(name, CHAMPION, version.version)
        client.set_model_version_tag(
            name,
            version.version,
            f"{TAG_PREFIX}promotion",
            "first version of this model: champion by default",
        )
        aliases.append(CHAMPION)
    log.info("registered %s version %s (%s)", name, version.version, ", ".join(aliases))
    return RegisteredVersion(name, version.version, tuple(aliases), run_id)
