"""Model kinds: each is one folder ``models/<kind>/`` behind :mod:`flashsale_ml.models.base`.

To add a kind, create its folder (see ``docs/architecture.md``) and add it to
:func:`_load_kinds` below: that list is the only place a generic layer learns which kinds
exist. Importing this module is light (no LightGBM, torch, DuckDB or MLflow), so the DAG files
and the settings can ask which kinds there are.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flashsale_ml.models.base import Flavor, ModelKind, TrainingBranch


@functools.cache
def _load_kinds() -> dict[str, ModelKind]:
    from flashsale_ml.models import demand, propensity, uplift

    kinds = (propensity.KIND, uplift.KIND, demand.KIND)
    return {kind.name: kind for kind in kinds}


def kind_names() -> tuple[str, ...]:
    return tuple(_load_kinds())


def get_kind(name: str) -> ModelKind:
    """The kind called ``name``.

    Raises:
        ValueError: no such kind; the message lists the kinds there are.
    """
    kinds = _load_kinds()
    if name not in kinds:
        raise ValueError(f"unknown model kind {name!r}; known kinds: {', '.join(kinds)}")
    return kinds[name]


def get_flavor(kind: str, flavor: str | None = None) -> Flavor:
    """A flavor of a kind (its default flavor when ``flavor`` is None).

    Raises:
        ValueError: no such kind or flavor; the message lists the choices.
    """
    model_kind = get_kind(kind)
    name = flavor or model_kind.default_flavor
    # Versions trained before flavors had names recorded their library (``lightgbm``).
    by_library = [f for f in model_kind.flavors.values() if f.library == name]
    if name not in model_kind.flavors and len(by_library) == 1:
        return by_library[0]
    if name not in model_kind.flavors:
        raise ValueError(
            f"model kind {kind!r} has no flavor {name!r}; flavors: {', '.join(model_kind.flavors)}"
        )
    return model_kind.flavors[name]


def kind_for_plan_role(role: str) -> ModelKind:
    """The one kind whose champion planning uses for ``role`` (see ``base.PLAN_ROLES``).

    Raises:
        ValueError: no kind, or more than one, serves that role.
    """
    serving = [kind for kind in _load_kinds().values() if kind.plan_role == role]
    if len(serving) != 1:
        names = [kind.name for kind in serving]
        raise ValueError(f"planning needs exactly one model kind for {role!r}, found {names}")
    return serving[0]


def training_branches() -> tuple[TrainingBranch, ...]:
    """Every kind's training-pipeline branches: what the DAG and ``flashsale pipeline`` train
    after building features."""
    return tuple(branch for kind in _load_kinds().values() for branch in kind.pipeline_branches)


def retraining_branches() -> tuple[TrainingBranch, ...]:
    """What the pre-sale retraining trains: every kind's pipeline branches, and for a kind
    without any, its default flavor, registered and judged for promotion."""
    from flashsale_ml.models.base import TrainingBranch

    branches = []
    for kind in _load_kinds().values():
        if kind.pipeline_branches:
            branches.extend(kind.pipeline_branches)
        else:
            branches.append(
                TrainingBranch(f"train_{kind.name}", kind.name, kind.default_flavor, promote=True)
            )
    return tuple(branches)


def flavors_logged_with(library: str) -> list[tuple[str, str]]:
    """(kind, flavor) pairs whose models MLflow logs with ``library``."""
    return [
        (kind.name, flavor.name)
        for kind in _load_kinds().values()
        for flavor in kind.flavors.values()
        if flavor.library == library
    ]
