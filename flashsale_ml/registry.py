"""Thin MLflow model-registry adapter: register versions, move aliases, roll back, report.

Aliases, never stages. A new version gets ``challenger``; ``champion`` is what scoring loads
(``models:/flashsale-propensity@champion``); the champion before it keeps
``previous-champion``, and the registered model's ``flashsale.champion_history`` tag lists
every champion in order, so a rollback restores the exact previous version, and a second
rollback the one before that.

Alias moves happen under a lock and only if the champion is still the one the decision was
made against: two promotions racing for the same model cannot both win against the same
champion, and the loser re-evaluates against the new one. The lock is a registered model
(``<name>.promotion-lock``): creating a registered model is an atomic insert with a unique name
in every MLflow backend, so the registry itself arbitrates without another service.

Every write here survives a lost reply. MLflow's client retries a request whose connection
broke, even when the server had already committed it (a crash or a network cut right after
the commit), so a create can happen twice or come back as "already exists":

* registration looks for a version of the training run before creating one, and after
  creating removes the duplicate a retried create made (:func:`register_from_run`);
* a lock create that comes back "already exists" with our own owner string is ours; the lock
  is released in a ``finally`` that also covers its acquisition; its lease is half the lock
  timeout (so a waiter outlives the lock of a holder that died) and is renewed while held (so
  a slow holder never loses it) (:func:`registry_lock`);
* a decision is written on the version only after the aliases moved (:func:`apply_decision`).
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from flashsale_ml.config import Settings
from flashsale_ml.tracking import DUPLICATE_OF_TAG, TAG_PREFIX, configure

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS_CHAMPION = "previous-champion"
HISTORY_TAG = f"{TAG_PREFIX}champion_history"
LAST_DECISION_TAG = f"{TAG_PREFIX}last_decision"
DECISION_TAG = f"{TAG_PREFIX}promotion.decision"
REASONS_TAG = f"{TAG_PREFIX}promotion.reasons"
AGAINST_TAG = f"{TAG_PREFIX}promotion.against_version"
DECISION_RUN_TAG = f"{TAG_PREFIX}promotion.run_id"
DECIDED_AT_TAG = f"{TAG_PREFIX}promotion.decided_at"
FITTED_ON_TAG = f"{TAG_PREFIX}fitted_campaigns"
MODEL_KIND_TAG = f"{TAG_PREFIX}model_kind"
FEATURE_SNAPSHOT_URI_TAG = f"{TAG_PREFIX}feature_snapshot_uri"
ROLLED_BACK_AT_TAG = f"{TAG_PREFIX}rolled_back_at"
# The training run's tags a version keeps: what a person reads on the Models page (kind,
# flavor, data and feature snapshot) and what promotion reads back (the feature snapshot its
# holdout and validation report come from, the campaigns it was fitted on). Everything else,
# metrics included, stays on the run, which the version links to (``run_id``).
VERSION_LINEAGE_TAGS = (
    MODEL_KIND_TAG,
    f"{TAG_PREFIX}model_flavor",
    f"{TAG_PREFIX}data_snapshot_id",
    f"{TAG_PREFIX}feature_snapshot_id",
    FEATURE_SNAPSHOT_URI_TAG,
    FITTED_ON_TAG,
)
# Written on the version when a promotion decides about it (read by ``registry status`` and
# ``flashsale demo``).
DECISION_TAGS = (DECISION_TAG, REASONS_TAG, AGAINST_TAG, DECIDED_AT_TAG, DECISION_RUN_TAG)
LOCK_SUFFIX = ".promotion-lock"
LOCK_OWNER_TAG = f"{TAG_PREFIX}lock.owner"
LOCK_EXPIRES_TAG = f"{TAG_PREFIX}lock.expires_at"
# On a version a retried create made twice but that could not be deleted (an alias or a
# decision points at it): the version of the same training run that registration kept.
HISTORY_LIMIT = 50
TAG_VALUE_LIMIT = 5000


class RegistryError(RuntimeError):
    """A registry operation that cannot be carried out; the message says why and what to do."""


class StaleDecisionError(RegistryError):
    """The champion changed between the decision and its application."""

    def __init__(self, name: str, expected: str | None, actual: str | None) -> None:
        super().__init__(
            f"{name}: the decision was made against champion {expected or 'none'}, but the "
            f"champion is now {actual or 'none'}; re-evaluate against the new champion"
        )
        self.expected = expected
        self.actual = actual


class RegistryLockTimeout(RegistryError):
    pass


class PromotionLockLost(RegistryError):
    """The lock's lease ran out while its holder was still deciding; nothing was written."""


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


@dataclass(frozen=True)
class AliasState:
    """Where the aliases of one registered model point, plus the champion history."""

    name: str
    champion: str | None
    challenger: str | None
    previous_champion: str | None
    history: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return asdict(self)


def _client(settings: Settings):
    import mlflow

    configure(settings)
    return mlflow.MlflowClient()


def _error_code(exc: Exception) -> str:
    return str(getattr(exc, "error_code", ""))


def resolve_name(model: str, settings: Settings) -> str:
    """Accept a registered model name (``flashsale-propensity``) or a kind (``propensity``)."""
    prefix = f"{settings.registered_model_prefix}-"
    return model if model.startswith(prefix) else settings.registered_model_name(model)


def alias_version(client, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if "RESOURCE_DOES_NOT_EXIST" in _error_code(exc) or "INVALID_PARAMETER" in _error_code(exc):
            return None
        raise


def current_alias(settings: Settings, name: str, alias: str) -> str | None:
    """The version ``alias`` points to now, or None."""
    return alias_version(_client(settings), name, alias)


def version_tags(settings: Settings, name: str, version: str) -> dict[str, str]:
    """The tags of a version's training run, overlaid by the version's own tags."""
    client = _client(settings)
    model_version = client.get_model_version(name, version)
    return {**client.get_run(model_version.run_id).data.tags, **model_version.tags}


def model_tags(model_uri: str, settings: Settings | None = None) -> dict[str, str]:
    """The lineage tags behind a model URI: a version (``models:/<name>/<version>`` or
    ``models:/<name>@<alias>``: its run's tags overlaid by its own), a logged model
    (``models:/m-<id>``: its source run's tags) or a run's model (``runs:/<run id>/...``).
    Anything else (a local folder) has none. Without ``settings``, MLflow's current tracking
    URI is used (as ``mlflow.pyfunc.load_model`` would)."""
    import mlflow

    client = _client(settings) if settings is not None else mlflow.MlflowClient()
    if model_uri.startswith("runs:/"):
        return dict(client.get_run(model_uri[len("runs:/") :].split("/")[0]).data.tags)
    if not model_uri.startswith("models:/"):
        return {}
    path = model_uri[len("models:/") :]
    if path.startswith("m-") and "/" not in path and "@" not in path:
        source = client.get_logged_model(path).source_run_id
        return dict(client.get_run(source).data.tags) if source else {}
    if "@" in path:
        name, alias = path.split("@", 1)
        version = client.get_model_version_by_alias(name, alias)
    else:
        name, number = path.split("/", 1)
        version = client.get_model_version(name, number)
    return {**client.get_run(version.run_id).data.tags, **version.tags}


def alias_target(settings: Settings, name: str, alias: str) -> tuple[str, dict[str, str]] | None:
    """The version ``alias`` points to and that version's tags, in one registry request
    (None when the alias is not set)."""
    from mlflow.exceptions import MlflowException

    try:
        version = _client(settings).get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if "RESOURCE_DOES_NOT_EXIST" in _error_code(exc) or "INVALID_PARAMETER" in _error_code(exc):
            return None
        raise
    return str(version.version), dict(version.tags)


@dataclass(frozen=True)
class VersionOverview:
    """The newest version of a registered model and its training run, for summaries."""

    name: str
    version: str
    aliases: tuple[str, ...]
    tags: dict[str, str]
    run_id: str
    run_metrics: dict[str, float]
    experiment_id: str
    parent_run_id: str | None


def newest_version(settings: Settings, name: str) -> VersionOverview:
    """The highest version of ``name`` with its aliases, tags and training run."""
    client = _client(settings)
    numbers = [int(v.version) for v in client.search_model_versions(f"name = '{name}'")]
    if not numbers:
        raise RegistryError(f"{name} has no versions")
    # search results leave aliases empty; a direct lookup fills them in
    newest = client.get_model_version(name, str(max(numbers)))
    run = client.get_run(newest.run_id)
    return VersionOverview(
        name=name,
        version=str(newest.version),
        aliases=tuple(newest.aliases or ()),
        tags=dict(newest.tags),
        run_id=newest.run_id,
        run_metrics=dict(run.data.metrics),
        experiment_id=run.info.experiment_id,
        parent_run_id=run.data.tags.get("mlflow.parentRunId"),
    )


def kind_of(name: str, settings: Settings) -> str:
    """The model kind of a registered model name (``flashsale-propensity`` -> ``propensity``)."""
    prefix = f"{settings.registered_model_prefix}-"
    return name[len(prefix) :] if name.startswith(prefix) else name


def read_state(client, name: str) -> AliasState:
    model = client.get_registered_model(name)
    aliases = {alias: str(version) for alias, version in (model.aliases or {}).items()}
    history = json.loads(model.tags.get(HISTORY_TAG, "[]"))
    return AliasState(
        name,
        aliases.get(CHAMPION),
        aliases.get(CHALLENGER),
        aliases.get(PREVIOUS_CHAMPION),
        [str(v) for v in history],
    )


def versions_of_run(client, name: str, run_id: str) -> list:
    """Versions of ``name`` registered from training run ``run_id``, lowest first."""
    versions = client.search_model_versions(f"name = '{name}' AND run_id = '{run_id}'")
    return sorted(versions, key=lambda v: int(v.version))


def _ensure_registered_model(client, name: str, model_kind: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(
            name,
            tags={MODEL_KIND_TAG: model_kind},
            description=f"flashsale-ml {model_kind} model; load by alias, e.g. "
            f"models:/{name}@{CHAMPION}",
        )
    except MlflowException as exc:
        if "RESOURCE_ALREADY_EXISTS" not in _error_code(exc):
            raise


def _drop_duplicate_versions(client, name: str, run_id: str) -> str | None:
    """Keep one version of ``run_id`` (the lowest); delete the others; return the kept one.

    Why the lowest: every caller (a retry of this call, or a second registration of the same
    run racing it) picks the same one without talking to the others, and the registry never
    reuses a deleted version number, so the survivor's number stays stable.

    Why deleting is safe: a duplicate was made by a retried create a moment ago, and no
    registration returns a version before this reconciliation, so nothing refers to it. To be
    safe anyway, a duplicate that an alias or a decision already points at is kept and tagged
    ``flashsale.duplicate_of`` instead (and a warning is logged): deleting a version that
    serves traffic would be worse than an extra version.
    """
    versions = versions_of_run(client, name, run_id)
    if not versions:
        return None
    keep, *duplicates = versions
    for duplicate in duplicates:
        if duplicate.aliases or DECISION_TAG in (duplicate.tags or {}):
            log.warning(
                "%s version %s duplicates version %s (same run %s) but is in use (aliases %s); "
                "tagged, not deleted",
                name,
                duplicate.version,
                keep.version,
                run_id,
                list(duplicate.aliases or []),
            )
            client.set_model_version_tag(name, duplicate.version, DUPLICATE_OF_TAG, keep.version)
            continue
        log.warning(
            "deleting %s version %s: a retried create registered run %s again (kept version %s)",
            name,
            duplicate.version,
            run_id,
            keep.version,
        )
        _delete_version_quietly(client, name, str(duplicate.version))
    return str(keep.version)


def _delete_version_quietly(client, name: str, version: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.delete_model_version(name, version)
    except MlflowException as exc:
        if "DOES_NOT_EXIST" not in _error_code(exc):
            raise


def register_from_run(run_id: str, model_kind: str, settings: Settings) -> RegisteredVersion:
    """Register the model logged by ``run_id`` as a version of ``flashsale-<kind>``, once.

    The version keeps only the tags in :data:`VERSION_LINEAGE_TAGS` (kind, flavor, data and
    feature snapshot, the campaigns it was fitted on), gets a one-line description and the
    ``challenger`` alias. Metrics, code version and config hash stay on the training run, which
    the version links to. Whether it becomes champion is the promotion step's decision, never
    registration's.

    Idempotent per training run: a run that already has a version is not registered again (a
    retried task finishes the registration it started instead), and a duplicate made by a
    create whose reply was lost is removed (see :func:`_drop_duplicate_versions`). The
    ``challenger`` alias moves to an existing version only if nothing decided about it yet
    and no newer version exists, so a late retry never takes the alias from a newer model.
    """
    import mlflow

    client = _client(settings)
    run = client.get_run(run_id)
    model_uri = run.data.tags.get(f"{TAG_PREFIX}model_uri")
    if not model_uri:
        raise ValueError(f"run {run_id} logged no model (tag {TAG_PREFIX}model_uri missing)")
    name = settings.registered_model_name(model_kind)
    _ensure_registered_model(client, name, model_kind)
    existing = versions_of_run(client, name, run_id)
    created = not existing
    if created:
        tags = {k: run.data.tags[k] for k in VERSION_LINEAGE_TAGS if run.data.tags.get(k)}
        tags[MODEL_KIND_TAG] = model_kind
        try:
            # register_model resolves a LoggedModel URI (models:/m-...) to its source and
            # model id, which a REST registry requires; create_model_version with the bare
            # URI is refused.
            mlflow.register_model(model_uri, name, tags=tags)
        except Exception:
            # Every retry failed, but the server may have committed one of them.
            try:
                committed = versions_of_run(client, name, run_id)
            except Exception:
                committed = []
            if not committed:
                raise
            log.warning("%s: adopting version %s of run %s", name, committed[0].version, run_id)
    else:
        log.info(
            "run %s is already registered as %s version %s; not registering it again",
            run_id,
            name,
            existing[0].version,
        )
    version = _drop_duplicate_versions(client, name, run_id)
    if version is None:
        raise RegistryError(f"{name}: registering run {run_id} left no version")
    current = client.get_model_version(name, version)
    if created or (DECISION_TAG not in (current.tags or {}) and _is_newest(client, name, version)):
        client.update_model_version(name, version, description=version_description(run, model_kind))
        client.set_registered_model_alias(name, CHALLENGER, version)
        log.info("registered %s version %s as %s", name, version, CHALLENGER)
    aliases = tuple(client.get_model_version(name, version).aliases or ())
    return RegisteredVersion(name, version, aliases, run_id)


def _is_newest(client, name: str, version: str) -> bool:
    versions = client.search_model_versions(f"name = '{name}'", max_results=10_000)
    return max(int(v.version) for v in versions) == int(version)


def version_description(run, model_kind: str) -> str:
    """One line for the Models page, e.g. ``lightgbm propensity model, features
    20260301T...-feat (data 20260301T...), test AUC 0.812 / ECE 0.021; run 1a2b3c4d``."""
    tags, metrics = run.data.tags, run.data.metrics
    # The library reads better on the Models page than the flavor's short name.
    flavor = tags.get(f"{TAG_PREFIX}model_library") or tags.get(f"{TAG_PREFIX}model_flavor", "")
    parts = [f"{flavor} {model_kind} model".strip()]
    if tags.get(f"{TAG_PREFIX}feature_snapshot_id"):
        data = tags.get(f"{TAG_PREFIX}data_snapshot_id")
        parts.append(
            f"features {tags[f'{TAG_PREFIX}feature_snapshot_id']}"
            + (f" (data {data})" if data else "")
        )
    scores = [
        f"{label} {metrics[key]:.3f}"
        for key, label in (("test_auc", "AUC"), ("test_ece", "ECE"))
        if key in metrics
    ]
    if scores:
        parts.append("test " + " / ".join(scores))
    return ", ".join(parts) + f"; run {run.info.run_id[:8]}"


def lock_owner() -> str:
    """A fresh owner string per acquisition: ``host:pid:token``.

    Unique per acquisition, so "the lock exists and its owner is me" can only mean that my
    own create was committed and its reply lost; two threads of one process never share it.
    """
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def lease_for(timeout_s: float) -> timedelta:
    """The lease a holder writes: half the lock timeout (at least one second).

    Shorter than any waiter's patience (holders and waiters read the same
    ``registry_lock_timeout_s``), so a waiter breaks the lock of a holder that died instead of
    failing; a live holder renews it every third of the lease, however long it holds it.
    """
    return timedelta(seconds=max(timeout_s / 2, 1.0))


class _LeaseRenewal:
    """Pushes the lock's ``expires_at`` forward every third of the lease while it is held."""

    def __init__(self, client, lock_name: str, owner: str, lease: timedelta) -> None:
        self.client, self.lock_name, self.owner, self.lease = client, lock_name, owner, lease
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{lock_name}", daemon=True)

    def __enter__(self) -> _LeaseRenewal:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        interval = self.lease.total_seconds() / 3
        while not self._stop.wait(interval):
            try:
                holder = _lock_holder(self.client, self.lock_name)
                if holder is None or holder[0] != self.owner:
                    log.error(
                        "lost promotion lock %s (now held by %s)",
                        self.lock_name,
                        holder[0] if holder else "nobody",
                    )
                    return
                expires = datetime.now(UTC) + self.lease
                self.client.set_registered_model_tag(
                    self.lock_name, LOCK_EXPIRES_TAG, expires.isoformat()
                )
            except Exception:  # the next tick tries again; the lease covers a few misses
                log.warning("could not renew promotion lock %s", self.lock_name, exc_info=True)


@contextmanager
def registry_lock(
    client,
    name: str,
    owner: str | None = None,
    lease: timedelta | None = None,
    timeout_s: float = 120.0,
) -> Iterator[str]:
    """Hold the promotion lock of ``name`` (an atomic create of ``<name>.promotion-lock``).

    A lock whose lease has expired (its holder died) is broken. The lease defaults to
    :func:`lease_for` ``(timeout_s)`` and is renewed while held. Yields the owner string.

    Safe when a reply is lost: if the create was committed but MLflow's client retried it, the
    retry finds the lock held by this very owner, which means acquired. The release sits in a
    ``finally`` that covers the acquisition too, so a lock whose create raised after it was
    committed is released as well.

    Raises:
        RegistryLockTimeout: another holder kept the lock for ``timeout_s`` seconds.
    """
    lock_name = f"{name}{LOCK_SUFFIX}"
    owner = owner or lock_owner()
    lease = lease or lease_for(timeout_s)
    try:
        _acquire(client, name, lock_name, owner, lease, timeout_s)
        with _LeaseRenewal(client, lock_name, owner, lease):
            yield owner
    finally:
        try:
            holder = _lock_holder(client, lock_name)
            if holder and holder[0] == owner:
                _delete_quietly(client, lock_name)
        except Exception:
            log.warning(
                "could not release promotion lock %s; it expires within %s",
                lock_name,
                lease,
                exc_info=True,
            )


def ensure_lock_held(client, name: str, owner: str) -> None:
    """Check, right before an alias write, that ``owner`` still holds the promotion lock.

    The lease is renewed in the background, but a tracking server that stalls longer than the
    lease lets a waiter break the lock; two holders would then both write against the same
    champion. Re-reading the holder before writing closes that window to one round trip.

    Raises:
        PromotionLockLost: someone else holds the lock now (or nobody does).
    """
    holder = _lock_holder(client, f"{name}{LOCK_SUFFIX}")
    if not holder or holder[0] != owner:
        raise PromotionLockLost(
            f"{name}: the promotion lock passed to {holder[0] if holder else 'nobody'} while "
            f"{owner} was deciding (its lease ran out); nothing was written, run it again"
        )


def _acquire(
    client, name: str, lock_name: str, owner: str, lease: timedelta, timeout_s: float
) -> None:
    from mlflow.exceptions import MlflowException

    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while True:
        expires = datetime.now(UTC) + lease
        try:
            client.create_registered_model(
                lock_name,
                tags={
                    LOCK_OWNER_TAG: owner,
                    LOCK_EXPIRES_TAG: expires.isoformat(),
                    f"{TAG_PREFIX}kind": "lock",
                },
                description=f"transient promotion lock of {name}; safe to delete if stale",
            )
            return
        except Exception as exc:
            # ALREADY_EXISTS: held (maybe by us: a create committed, its reply lost, retried).
            # DOES_NOT_EXIST: released between our insert and the server's look-up of the
            # holder. Either way, look again. Anything else (the server unreachable after all
            # retries) may still have committed our create: ours if the holder is us.
            contended = isinstance(exc, MlflowException) and any(
                c in _error_code(exc) for c in ("ALREADY_EXISTS", "DOES_NOT_EXIST")
            )
            if not contended:
                holder = _lock_holder(client, lock_name)
                if holder and holder[0] == owner:
                    log.warning("promotion lock %s: create failed after it committed", lock_name)
                    return
                raise
        holder = _lock_holder(client, lock_name)
        if holder and holder[0] == owner:
            log.info("promotion lock %s: our create was committed and retried", lock_name)
            return
        if holder and holder[1] < datetime.now(UTC):
            log.warning("breaking expired promotion lock of %s held by %s", name, holder[0])
            _delete_quietly(client, lock_name)
            continue
        if time.monotonic() > deadline:
            raise RegistryLockTimeout(
                f"{name}: promotion lock held by {holder[0] if holder else 'unknown'} for more "
                f"than {timeout_s:.0f} s; if that process died, delete registered model "
                f"{lock_name!r}"
            )
        time.sleep(delay * (1 + random.random()))
        delay = min(delay * 2, 1.0)


def _lock_holder(client, lock_name: str) -> tuple[str, datetime] | None:
    from mlflow.exceptions import MlflowException

    try:
        tags = client.get_registered_model(lock_name).tags
    except MlflowException:
        return None
    expires = tags.get(LOCK_EXPIRES_TAG)
    return tags.get(LOCK_OWNER_TAG, "?"), (
        datetime.fromisoformat(expires) if expires else datetime.max.replace(tzinfo=UTC)
    )


def _delete_quietly(client, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.delete_registered_model(name)
    except MlflowException as exc:
        if "DOES_NOT_EXIST" not in _error_code(exc):
            raise


def _truncate(text: str) -> str:
    return text if len(text) <= TAG_VALUE_LIMIT else text[: TAG_VALUE_LIMIT - 3] + "..."


def _record_last_action(client, name: str, action: dict[str, Any]) -> None:
    """The registered model's ``last_decision`` tag: one line a person reads on the Models page.

    e.g. ``rejected v3 against v2 at 2026-11-30 11:10 UTC: primary: not significantly
    better ...``; the structured record is on the version's decision tags and the run.
    """
    against = action.get("against") or action.get("from")
    line = f"{action['action']} v{action['version']}"
    if against:
        line += f" {'from' if action['action'] == 'rollback' else 'against'} v{against}"
    line += f" at {str(action['at'])[:16].replace('T', ' ')} UTC"
    if action.get("reasons"):
        line += ": " + "; ".join(action["reasons"])
    client.set_registered_model_tag(name, LAST_DECISION_TAG, _truncate(line))


def apply_decision(
    settings: Settings,
    name: str,
    version: str,
    expected_champion: str | None,
    promote: bool,
    reasons: list[str],
    decision_run_id: str | None = None,
) -> AliasState:
    """If the decision promotes, move the aliases; then record the decision on the version.

    Runs under the registry lock and first checks that the champion is still
    ``expected_champion``. Order of writes on promotion: ``previous-champion`` first, then
    ``champion`` (the commit point), then the history tag; a crash in between leaves either
    the old state or a new champion whose predecessor is still reachable. The decision tags
    on the version come only after that, with ``flashsale.promotion.decision`` last, so the
    registry never shows a decision that was not applied. The caller marks its decision run
    only once this returns.

    Raises:
        StaleDecisionError: the champion changed since the decision was made.
    """
    client = _client(settings)
    now = datetime.now(UTC).isoformat()
    with registry_lock(client, name, timeout_s=settings.registry_lock_timeout_s) as owner:
        state = read_state(client, name)
        if state.champion != expected_champion:
            raise StaleDecisionError(name, expected_champion, state.champion)
        ensure_lock_held(client, name, owner)
        verdict = "promoted" if promote else "rejected"
        if promote:
            history = list(state.history)
            if state.champion and history[-1:] != [state.champion]:
                # The champion alias was moved outside flashsale: keep the chain truthful.
                history.append(state.champion)
            if state.champion:
                client.set_registered_model_alias(name, PREVIOUS_CHAMPION, state.champion)
            client.set_registered_model_alias(name, CHAMPION, version)
            if state.challenger == version:
                client.delete_registered_model_alias(name, CHALLENGER)
            client.set_registered_model_tag(
                name, HISTORY_TAG, json.dumps([*history, version][-HISTORY_LIMIT:])
            )
        for key, value in {
            REASONS_TAG: _truncate("; ".join(reasons)),
            AGAINST_TAG: expected_champion or "none",
            DECIDED_AT_TAG: now,
            DECISION_RUN_TAG: decision_run_id or "",
            DECISION_TAG: verdict,
        }.items():
            client.set_model_version_tag(name, version, key, value)
        _record_last_action(
            client,
            name,
            {
                "action": verdict,
                "version": version,
                "against": expected_champion,
                "at": now,
                "run_id": decision_run_id,
                "reasons": reasons,
            },
        )
        result = read_state(client, name)
    log.info("%s version %s %s (champion now %s)", name, version, verdict, result.champion)
    return result


def rollback(settings: Settings, model: str, reason: str = "manual rollback") -> AliasState:
    """Give ``champion`` back to the previous champion; the rolled-back version is tagged.

    Raises:
        RegistryError: there is no previous champion to return to.
    """
    name = resolve_name(model, settings)
    client = _client(settings)
    now = datetime.now(UTC).isoformat()
    with registry_lock(client, name, timeout_s=settings.registry_lock_timeout_s) as owner:
        state = read_state(client, name)
        target = state.previous_champion
        if not target or not state.champion:
            raise RegistryError(
                f"{name}: no previous champion to roll back to "
                f"(champion {state.champion or 'none'}, history {state.history or 'empty'})"
            )
        ensure_lock_held(client, name, owner)
        history = state.history or [target, state.champion]
        position = len(history) - 1 - history[::-1].index(target) if target in history else None
        before = history[position - 1] if position else None
        client.set_registered_model_alias(name, CHAMPION, target)
        if before:
            client.set_registered_model_alias(name, PREVIOUS_CHAMPION, before)
        else:
            client.delete_registered_model_alias(name, PREVIOUS_CHAMPION)
        kept = history[: position + 1] if position is not None else [target]
        client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(kept))
        client.set_model_version_tag(name, state.champion, ROLLED_BACK_AT_TAG, f"{now} ({reason})")
        _record_last_action(
            client,
            name,
            {
                "action": "rollback",
                "version": target,
                "from": state.champion,
                "at": now,
                "reasons": [reason],
            },
        )
        result = read_state(client, name)
    log.info("%s rolled back from %s to %s", name, state.champion, target)
    return result


@dataclass(frozen=True)
class VersionDecision:
    version: str
    decision: str
    against: str
    decided_at: str
    reasons: str


@dataclass(frozen=True)
class ModelStatus:
    state: AliasState
    versions: int
    last_decision: str | None
    decisions: list[VersionDecision]
    champion_metrics: dict[str, str]

    def summary(self) -> dict[str, Any]:
        return {
            **self.state.summary(),
            "versions": self.versions,
            "last_decision": self.last_decision,
            "decisions": [asdict(d) for d in self.decisions],
            "champion_metrics": self.champion_metrics,
        }


def status(settings: Settings, model: str | None = None, decisions: int = 5) -> list[ModelStatus]:
    """Champions, challengers and the newest decisions of every flashsale model (or one)."""
    client = _client(settings)
    if model:
        names = [resolve_name(model, settings)]
    else:
        prefix = f"{settings.registered_model_prefix}-"
        names = sorted(
            m.name
            for m in client.search_registered_models(f"name LIKE '{prefix}%'", max_results=1000)
            if not m.name.endswith(LOCK_SUFFIX)
        )
    out = []
    for name in names:
        state = read_state(client, name)
        versions = client.search_model_versions(f"name = '{name}'", max_results=10_000)
        decided = sorted(
            (v for v in versions if DECISION_TAG in v.tags),
            key=lambda v: v.tags.get(DECIDED_AT_TAG, ""),
            reverse=True,
        )[:decisions]
        champion_metrics: dict[str, str] = {}
        if state.champion:
            # Metrics live on the training run, not as tags on the version.
            run_id = client.get_model_version(name, state.champion).run_id
            if run_id:
                run_metrics = client.get_run(run_id).data.metrics
                champion_metrics = {
                    k: f"{v:.6g}" for k, v in run_metrics.items() if k.startswith("test_")
                }
        model_tags = client.get_registered_model(name).tags
        out.append(
            ModelStatus(
                state,
                len(versions),
                model_tags.get(LAST_DECISION_TAG),
                [
                    VersionDecision(
                        str(v.version),
                        v.tags[DECISION_TAG],
                        v.tags.get(AGAINST_TAG, ""),
                        v.tags.get(DECIDED_AT_TAG, ""),
                        v.tags.get(REASONS_TAG, ""),
                    )
                    for v in decided
                ],
                champion_metrics,
            )
        )
    return out


def format_status(statuses: list[ModelStatus]) -> str:
    """Plain-text report for ``flashsale registry status``."""
    if not statuses:
        return "no flashsale models registered yet"
    lines = []
    for s in statuses:
        st = s.state
        metrics = ", ".join(f"{k} {v}" for k, v in sorted(s.champion_metrics.items())[:4])
        lines += [
            f"{st.name}  ({s.versions} versions)",
            f"  champion           {st.champion or '-'}" + (f"   [{metrics}]" if metrics else ""),
            f"  challenger         {st.challenger or '-'}",
            f"  previous-champion  {st.previous_champion or '-'}",
            f"  champion history   {' -> '.join(st.history) or '-'}",
            f"  load with          models:/{st.name}@{CHAMPION}",
        ]
        if s.last_decision:
            lines.append(f"  last action        {s.last_decision[:160]}")
        for d in s.decisions:
            lines.append(
                f"  v{d.version:<4} {d.decision:<9} vs {d.against:<5} {d.decided_at[:19]}  "
                f"{d.reasons[:160]}"
            )
        lines.append("")
    return "\n".join(lines).rstrip()
