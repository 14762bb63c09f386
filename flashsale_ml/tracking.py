"""Thin MLflow tracking adapter: experiment setup, pipeline and step runs, batched logging,
lineage tags, logging a model with any MLflow flavor and loading one back.

Only this module and :mod:`flashsale_ml.registry` import ``mlflow`` (a test enforces it), so
training, promotion and scoring code stays testable without a server and MLflow's API is
wrapped in one place. ``mlflow`` itself is imported inside the functions: importing this
module is cheap.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from flashsale_ml.config import Settings
from flashsale_ml.lineage import code_version

log = logging.getLogger(__name__)

TAG_PREFIX = "flashsale."
# A token the client generates for each run it creates. MLflow's client retries a create whose
# reply was lost (the server had committed it), which makes a second run; the token finds both,
# so the one the caller keeps is the only one left (see :func:`create_run_once`).
CREATE_TOKEN_TAG = f"{TAG_PREFIX}create_token"
DUPLICATE_OF_TAG = f"{TAG_PREFIX}duplicate_of"
# MLflow 3's UI opens an experiment in its GenAI "Traces" view unless the experiment says it
# holds model training; with this tag it opens on the runs table.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
# Step tags worth a column on the parent run (the decision of this pipeline's promotion).
SUMMARY_TAGS = (f"{TAG_PREFIX}promotion.decision", f"{TAG_PREFIX}challenger_version")
# A saved runs-table view (MLflow's "shared view": an experiment tag the UI reads when the URL
# carries ?viewStateShareKey=<key>): pipeline runs with their headline results as columns.
RUNS_VIEW_KEY = "pipeline-results"
RUNS_VIEW_TAG = f"mlflow.sharedViewState.{RUNS_VIEW_KEY}"


def runs_view() -> dict[str, Any]:
    """The saved view: the decision, the version judged, and each training branch's headline
    test metrics (all of them for a branch that is promoted, the first for the others)."""
    from flashsale_ml.models import get_flavor, get_kind, training_branches

    columns = [f"tags.`{TAG_PREFIX}promotion.decision`", f"tags.`{TAG_PREFIX}challenger_version`"]
    for branch in training_branches():
        step = get_flavor(branch.kind, branch.flavor).step_name
        headline = get_kind(branch.kind).headline_metrics
        columns += [f"metrics.`{step}.{m}`" for m in (headline if branch.promote else headline[:1])]
    return {
        "selectedColumns": columns,
        "searchFilter": f"tags.`{TAG_PREFIX}kind` = 'pipeline'",
        "orderByKey": "attributes.start_time",
        "orderByAsc": False,
    }


def runs_view_url(server_url: str, experiment_id: str) -> str:
    """The runs table of the experiment, opened on the pipeline-results view."""
    return f"{server_url}/#/experiments/{experiment_id}/runs?viewStateShareKey={RUNS_VIEW_KEY}"


def _ensure_ui_tags(client: Any, experiment_id: str, tags: Mapping[str, str]) -> None:
    """Experiments made before these tags existed (or by hand) get them too."""
    wanted = {EXPERIMENT_KIND_TAG: EXPERIMENT_KIND, RUNS_VIEW_TAG: json.dumps(runs_view())}
    for key, value in wanted.items():
        if tags.get(key) != value:
            client.set_experiment_tag(experiment_id, key, value)


def route_mlflow_logging() -> None:
    """Send MLflow's log records through the host's logging instead of MLflow's own handler.

    On import MLflow gives its logger a stderr handler and stops propagation; under Airflow
    every stderr line of a task is shown as ``[error]``, so an INFO line about a database
    migration looked like a failure. Propagating to the root logger keeps each record's level
    (Airflow, the CLI and pytest all configure the root).
    """
    mlflow_logger = logging.getLogger("mlflow")
    for handler in list(mlflow_logger.handlers):
        mlflow_logger.removeHandler(handler)
    mlflow_logger.propagate = True


_initialised_stores: set[str] = set()
_initialise_guard = threading.Lock()


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI (None for any other store)."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    path = tracking_uri[len("sqlite:///") :].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def initialise_sqlite_store(tracking_uri: str) -> None:
    """Create a fresh SQLite tracking store once, under a file lock next to the database.

    MLflow creates its tables and runs its migrations the first time a process opens an empty
    database, without any lock: two processes starting together on a fresh store both do it,
    and the second dies with ``table experiments already exists`` (or ``duplicate column``).
    Here the first process initialises it while holding ``<db>.init-lock`` (``fcntl.flock``);
    the others wait and then find the tables in place. Once per database and process.
    """
    path = sqlite_path(tracking_uri)
    if path is None:
        return
    key = str(path.resolve())
    with _initialise_guard:
        if key in _initialised_stores:
            return
        import mlflow

        try:
            import fcntl
        except ImportError:  # not POSIX: no cross-process lock to take
            fcntl = None
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.with_name(path.name + ".init-lock").open("a") as lock_file:
            if fcntl is not None:
                fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                # Opening both stores creates (or verifies) the schema.
                client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
                client.search_experiments(max_results=1)
                client.search_registered_models(max_results=1)
            finally:
                if fcntl is not None:
                    fcntl.flock(lock_file, fcntl.LOCK_UN)
        _initialised_stores.add(key)


# (tracking URI, experiment name) -> experiment id, for the life of the process: the store is
# initialised and the experiment looked up (or created) once, not on every registry call.
_CONFIGURED: dict[tuple[str, str], str] = {}


def configure(settings: Settings) -> str:
    """Point MLflow at the configured store and make sure the experiment exists.

    The first call per store and experiment in a process initialises a fresh SQLite store
    (under a file lock, see :func:`initialise_sqlite_store`), finds or creates the experiment
    and sets it active; later calls only point MLflow at the store (no request).

    Returns:
        The experiment id.
    """
    import mlflow

    key = (settings.tracking_uri, settings.mlflow_experiment)
    if key in _CONFIGURED:
        if mlflow.get_tracking_uri() != settings.tracking_uri:
            mlflow.set_tracking_uri(settings.tracking_uri)
        return _CONFIGURED[key]
    _CONFIGURED[key] = experiment_id = _configure_store(settings)
    return experiment_id


def _configure_store(settings: Settings) -> str:
    import mlflow

    route_mlflow_logging()
    initialise_sqlite_store(settings.tracking_uri)
    mlflow.set_tracking_uri(settings.tracking_uri)
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(settings.mlflow_experiment)
    if experiment is not None:
        _ensure_ui_tags(client, experiment.experiment_id, experiment.tags)
        mlflow.set_experiment(experiment_id=experiment.experiment_id)
        return experiment.experiment_id
    # A local (non-server) store needs an explicit artifact root, or MLflow would write to
    # ./mlruns of whatever folder the worker happens to run in.
    artifact_location = (
        None if settings.tracking_uri.startswith("http") else settings.mlflow_artifact_root
    )
    try:
        experiment_id = client.create_experiment(
            settings.mlflow_experiment,
            artifact_location=artifact_location,
            tags={
                "project": "flashsale-ml",
                EXPERIMENT_KIND_TAG: EXPERIMENT_KIND,
                RUNS_VIEW_TAG: json.dumps(runs_view()),
            },
        )
    except mlflow.exceptions.MlflowException:
        # Another task created it between our lookup and create: use theirs.
        experiment_id = client.get_experiment_by_name(settings.mlflow_experiment).experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def lineage_tags(settings: Settings, **extra: str | None) -> dict[str, str]:
    tags = {
        f"{TAG_PREFIX}code_version": code_version(),
        f"{TAG_PREFIX}config_hash": settings.config_hash(),
    }
    tags.update({f"{TAG_PREFIX}{k}": str(v) for k, v in extra.items() if v is not None})
    return tags


def _runs_with_token(client: Any, experiment_id: str, token: str) -> list[Any]:
    """Runs of the experiment created with ``token``, oldest first."""
    runs = client.search_runs(
        [experiment_id], f"tags.`{CREATE_TOKEN_TAG}` = '{token}'", max_results=100
    )
    return sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id))


def _committed_run(client: Any, experiment_id: str, token: str) -> str | None:
    """After a create failed: the run the server committed anyway, if any (oldest)."""
    try:
        runs = _runs_with_token(client, experiment_id, token)
    except Exception:
        return None
    return runs[0].info.run_id if runs else None


def drop_duplicate_runs(client: Any, experiment_id: str, token: str, keep: str) -> list[str]:
    """Close and delete the runs a retried create made besides ``keep``; returns their ids.

    A duplicate was made by the same call a moment earlier and has nothing logged to it yet,
    so deleting it loses nothing. It is first marked KILLED and tagged with the run it
    duplicates, so even a search that includes deleted runs shows no RUNNING leftover.
    Best effort: a failure here is logged, never raised, because the kept run is sound.
    """
    try:
        duplicates = [
            r.info.run_id
            for r in _runs_with_token(client, experiment_id, token)
            if r.info.run_id != keep
        ]
    except Exception:
        log.warning("could not look for duplicates of run %s", keep, exc_info=True)
        return []
    dropped = []
    for run_id in duplicates:
        try:
            client.set_tag(run_id, DUPLICATE_OF_TAG, keep)
            client.set_terminated(run_id, "KILLED")
            client.delete_run(run_id)
        except Exception:
            log.warning("could not remove run %s, a duplicate of %s", run_id, keep, exc_info=True)
            continue
        dropped.append(run_id)
        log.warning("deleted run %s: a retried create duplicated run %s", run_id, keep)
    return dropped


def create_run_once(client: Any, experiment_id: str, run_name: str, tags: Mapping[str, str]) -> str:
    """``create_run`` that leaves exactly one run behind even when a reply is lost.

    The run carries a fresh :data:`CREATE_TOKEN_TAG`. If the server committed the create but
    the reply was lost, MLflow's client retries and a second run appears: the duplicates are
    removed after the create. If every retry failed, a run the server did commit is adopted.
    """
    token = uuid.uuid4().hex
    try:
        run_id = client.create_run(
            experiment_id, run_name=run_name, tags={**tags, CREATE_TOKEN_TAG: token}
        ).info.run_id
    except Exception as exc:
        committed = _committed_run(client, experiment_id, token)
        if committed is None:
            raise
        run_id = committed
        log.warning("adopting run %s: its create was committed, the reply lost (%s)", run_id, exc)
    drop_duplicate_runs(client, experiment_id, token, keep=run_id)
    return run_id


def start_pipeline_run(settings: Settings, name: str, tags: Mapping[str, str] | None = None) -> str:
    """Create the parent run that groups one pipeline execution's step runs; returns its id.

    Exactly one parent run exists afterwards, even if the create's reply was lost and MLflow's
    client retried it (see :func:`create_run_once`).
    """
    import mlflow

    experiment_id = configure(settings)
    client = mlflow.MlflowClient()
    run_id = create_run_once(
        client,
        experiment_id,
        name,
        {**lineage_tags(settings), **(tags or {}), f"{TAG_PREFIX}kind": "pipeline"},
    )
    client.log_dict(run_id, settings.public_dict(), "config/settings.json")
    client.set_terminated(run_id, "RUNNING")
    return run_id


def finish_pipeline_run(settings: Settings, run_id: str, status: str = "FINISHED") -> None:
    """Close the pipeline's parent run, with its steps' headline results copied onto it.

    The runs table lists parent runs; with each step's ``test_*`` metrics (as
    ``<step>.test_auc``) and the promotion decision on the parent, one row per pipeline run
    answers "how good was it and what happened" without expanding anything.
    """
    import mlflow
    from mlflow.entities import Metric, RunTag

    configure(settings)
    client = mlflow.MlflowClient()
    parent = client.get_run(run_id)
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'"
    )
    now = int(time.time() * 1000)
    metrics: list[Metric] = []
    tags: list[RunTag] = []
    for child in children:
        step = child.data.tags.get(f"{TAG_PREFIX}step")
        if not step:
            continue
        metrics += [
            Metric(f"{step}.{key}", value, now, 0)
            for key, value in child.data.metrics.items()
            if key.startswith("test_")
        ]
        tags += [RunTag(k, v) for k, v in child.data.tags.items() if k in SUMMARY_TAGS]
    if metrics or tags:
        client.log_batch(run_id, metrics=metrics[:1000], tags=tags)
    client.set_terminated(run_id, status)


@contextlib.contextmanager
def step_run(
    settings: Settings,
    name: str,
    parent_run_id: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> Iterator[Any]:
    """A run for one pipeline step, nested under the pipeline run when one is given.

    Like :func:`create_run_once`, a create whose reply was lost leaves no second run behind.
    """
    import mlflow

    experiment_id = configure(settings)
    token = uuid.uuid4().hex
    all_tags = {
        **lineage_tags(settings),
        **(tags or {}),
        f"{TAG_PREFIX}step": name,
        CREATE_TOKEN_TAG: token,
    }
    nested = parent_run_id is not None
    client = mlflow.MlflowClient()
    try:
        active = mlflow.start_run(
            experiment_id=experiment_id,
            run_name=name,
            parent_run_id=parent_run_id,
            tags=all_tags,
            nested=nested,
        )
    except Exception as exc:
        committed = _committed_run(client, experiment_id, token)
        if committed is None:
            raise
        log.warning("adopting %s run %s: create committed, reply lost (%s)", name, committed, exc)
        active = mlflow.start_run(run_id=committed, nested=nested)
    with active as run:
        drop_duplicate_runs(client, experiment_id, token, keep=run.info.run_id)
        yield run


def log_metrics_batch(
    run_id: str,
    metrics: Mapping[str, float],
    step: int = 0,
    history: Mapping[str, list[float]] | None = None,
) -> None:
    """Log scalar metrics and per-step histories in batches of 1000 (one HTTP call each).

    One ``log_metric`` call per value costs a round trip each; against a remote server
    1000 values took 90 s one by one and 4 s batched.
    """
    import mlflow
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    entries = [Metric(k, float(v), now, step) for k, v in metrics.items() if v == v]
    for key, values in (history or {}).items():
        entries += [Metric(key, float(v), now, i) for i, v in enumerate(values)]
    client = mlflow.MlflowClient()
    for start in range(0, len(entries), 1000):
        client.log_batch(run_id, metrics=entries[start : start + 1000])


def log_params_flat(run_id: str, params: Mapping[str, Any], prefix: str = "") -> None:
    """Log nested params flattened with dots, in one batch (values truncated to MLflow's limit)."""
    import mlflow
    from mlflow.entities import Param

    flat: dict[str, str] = {}

    def walk(obj: Any, key: str) -> None:
        if isinstance(obj, Mapping):
            for k, v in obj.items():
                walk(v, f"{key}.{k}" if key else str(k))
        else:
            flat[key] = obj if isinstance(obj, str) else json.dumps(obj, default=str)

    walk(params, prefix)
    entries = [Param(k, v[:6000]) for k, v in flat.items()]
    client = mlflow.MlflowClient()
    for start in range(0, len(entries), 100):
        client.log_batch(run_id, params=entries[start : start + 100])


def log_snapshot_input(
    run_id: str, snapshot_uri: str, table: str, context: str = "training"
) -> None:
    """Record a feature snapshot as the run's MLflow dataset input, from its manifest.

    ``mlflow.data.from_pandas`` infers a schema and a digest by walking every row (141 s for
    a million rows here); the manifest already holds the schema, the row count and an
    immutable id, so the dataset entity is built from those.
    """
    import mlflow
    from mlflow.entities import Dataset, DatasetInput, InputTag

    from flashsale_ml.datasets import Snapshot

    with Snapshot(snapshot_uri) as snapshot:
        entry = snapshot.manifest.tables[table]
        dataset = Dataset(
            name=f"{snapshot.manifest.dataset}.{table}@{snapshot.snapshot_id}",
            digest=snapshot.snapshot_id[-8:],
            source_type="flashsale-lake",
            source=json.dumps({"uri": snapshot_uri, "table": table}),
            schema=json.dumps({"columns": entry.schema}),
            profile=json.dumps({"num_rows": entry.rows, "files": entry.num_files}),
        )
    mlflow.MlflowClient().log_inputs(
        run_id, [DatasetInput(dataset, [InputTag("mlflow.data.context", context)])]
    )


# --- Logging into the open run and loading models: the only MLflow calls other modules make.


def set_tags(tags: Mapping[str, str], run_id: str | None = None) -> None:
    """Tags on ``run_id`` (default: the active run), in one batch."""
    import mlflow
    from mlflow.entities import RunTag

    target = run_id or mlflow.active_run().info.run_id
    mlflow.MlflowClient().log_batch(target, tags=[RunTag(k, str(v)) for k, v in tags.items()])


def log_figures(figures: Mapping[str, Any], folder: str = "plots") -> None:
    """Log matplotlib figures into the active run as ``<folder>/<name>`` and close them."""
    import mlflow

    from flashsale_ml.training.plots import close

    for name, figure in figures.items():
        mlflow.log_figure(figure, f"{folder}/{name}" if folder else name)
        close(figure)


def log_json(obj: Any, artifact_file: str) -> None:
    """A JSON artifact in the active run."""
    import mlflow

    mlflow.log_dict(obj, artifact_file)


def log_text(text: str, artifact_file: str) -> None:
    import mlflow

    mlflow.log_text(text, artifact_file)


def log_artifacts(local_dir: str | Path, artifact_path: str | None = None) -> None:
    import mlflow

    mlflow.log_artifacts(str(local_dir), artifact_path)


def log_metrics(metrics: Mapping[str, float], run_id: str | None = None) -> None:
    """Scalar metrics on ``run_id`` (default: the active run), in one batch."""
    import mlflow

    log_metrics_batch(run_id or mlflow.active_run().info.run_id, metrics)


def log_model(
    mlflow_flavor: str,
    model: Any,
    input_example: Any,
    output_example: Any,
    pip_requirements: list[str],
    metadata: Mapping[str, Any] | None = None,
    params_example: Mapping[str, Any] | None = None,
) -> str:
    """Log ``model`` with MLflow's ``mlflow.<mlflow_flavor>`` module into the active run, with
    a signature inferred from the examples; tag the run with the model URI; return it.

    ``mlflow_flavor="pyfunc"`` logs any picklable object with a ``predict(frame) -> array``
    method as a pyfunc model (for models no MLflow flavor covers, e.g. a meta-learner made of
    several boosters). ``params_example`` declares inference parameters with their defaults
    (the signature's params schema); the pyfunc passes them to ``predict`` as keywords.

    Raises:
        ValueError: ``params_example`` with a flavor other than ``pyfunc``.
    """
    import importlib

    import mlflow
    from mlflow.models import infer_signature

    if params_example and mlflow_flavor != "pyfunc":
        raise ValueError(
            f"params_example needs the pyfunc flavor (it passes them to predict), "
            f"not {mlflow_flavor!r}"
        )
    module = importlib.import_module(f"mlflow.{mlflow_flavor}")
    model_args = {"python_model": _DelegatingModel(model)} if mlflow_flavor == "pyfunc" else {}
    info = module.log_model(
        *(() if model_args else (model,)),
        name="model",
        signature=infer_signature(
            input_example, output_example, params=dict(params_example) if params_example else None
        ),
        input_example=input_example,
        pip_requirements=pip_requirements,
        metadata=dict(metadata or {}),
        **model_args,
    )
    mlflow.set_tag(f"{TAG_PREFIX}model_uri", info.model_uri)
    return info.model_uri


def _delegating_model_class():
    import mlflow.pyfunc

    class DelegatingModel(mlflow.pyfunc.PythonModel):
        """An MLflow pyfunc that hands ``predict`` to the wrapped object."""

        def __init__(self, model: Any) -> None:
            self.model = model

        def predict(self, context, model_input, params=None):
            # MLflow fills in the signature's defaults: a model logged with params gets them
            # all, one logged without gets None.
            if params:
                return self.model.predict(model_input, **params)
            return self.model.predict(model_input)

    return DelegatingModel


def _DelegatingModel(model: Any) -> Any:
    return _delegating_model_class()(model)


def model_libraries(model_uri: str) -> list[str]:
    """The MLflow flavors a logged model was saved with (from its MLmodel file)."""
    from mlflow.models import get_model_info

    return sorted(get_model_info(model_uri).flavors)


def load_pyfunc(model_uri: str) -> Any:
    """A logged model as an MLflow pyfunc (``.predict``, ``.metadata``)."""
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(model_uri)


@contextlib.contextmanager
def resumed_run(settings: Settings, run_id: str) -> Iterator[Any]:
    """Continue a run that failed (e.g. its node died): RUNNING again, tagged ``resumed``,
    active for the block, FINISHED or FAILED by how the block ends."""
    import mlflow

    configure(settings)
    mlflow.MlflowClient().set_tag(run_id, f"{TAG_PREFIX}resumed", "true")
    with mlflow.start_run(run_id=run_id) as run:
        yield run


def run_tags(run_id: str) -> dict[str, str]:
    import mlflow

    return dict(mlflow.MlflowClient().get_run(run_id).data.tags)


def sibling_step_metrics(
    settings: Settings, experiment_id: str, parent_run_id: str | None, step: str
) -> dict[str, float]:
    """The metrics of the ``step`` run nested under ``parent_run_id`` (empty if none)."""
    import mlflow

    if not parent_run_id:
        return {}
    configure(settings)
    runs = mlflow.MlflowClient().search_runs(
        [experiment_id],
        f"tags.mlflow.parentRunId = '{parent_run_id}' and tags.`{TAG_PREFIX}step` = '{step}'",
    )
    return dict(runs[0].data.metrics) if runs else {}


def run_url(run_id: str, settings: Settings | None = None) -> str | None:
    """The MLflow UI's page of a run (``<server>/#/experiments/<id>/runs/<run>``), or None
    where the tracking store is not a server (a SQLite file: ``make mlflow-ui`` serves it)."""
    import mlflow

    from flashsale_ml.config import get_settings

    settings = settings or get_settings()
    uri = settings.tracking_uri
    if not uri.startswith(("http://", "https://")):
        return None
    configure(settings)
    experiment = mlflow.MlflowClient().get_run(run_id).info.experiment_id
    return f"{uri.rstrip('/')}/#/experiments/{experiment}/runs/{run_id}"
