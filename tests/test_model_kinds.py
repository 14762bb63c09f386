"""Model kinds as plug-ins: the boundaries that keep them plug-ins, and the generic layers
(settings, promotion, scoring, the pipeline) working for any kind.

Static checks parse the package with ``ast``; the rest runs on fakes and small arrays, so the
whole file takes a few seconds and needs neither MLflow nor a feature snapshot.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import flashsale_ml.scoring as scoring
import flashsale_ml.steps.data as data_steps
import flashsale_ml.steps.training as training_steps
from flashsale_ml.config import Settings, get_settings
from flashsale_ml.evaluation.bootstrap import RowMean
from flashsale_ml.models import get_kind, kind_names, training_branches
from flashsale_ml.promotion.decision import Decision, ModelEvaluation, decide_promotion
from flashsale_ml.promotion.gates import GateSpec, MetricBound, NoRegression, PrimaryGate
from flashsale_ml.promotion.holdout import HoldoutWindow
from flashsale_ml.registry import RegistryError

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = REPO_ROOT / "flashsale_ml"
SCANNED = (PACKAGE, REPO_ROOT / "dags")
MLFLOW_ADAPTERS = {"flashsale_ml/tracking.py", "flashsale_ml/registry.py"}
COLUMNS_MODULE = "flashsale_ml/features/columns.py"


def python_files() -> Iterator[tuple[str, ast.Module]]:
    """(path relative to the repository, parsed module) of every .py under the scanned folders."""
    for root in SCANNED:
        for path in sorted(root.rglob("*.py")):
            rel = path.relative_to(REPO_ROOT).as_posix()
            yield rel, ast.parse(path.read_text(encoding="utf-8"), filename=rel)


def mlflow_imports(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, module) of every ``import mlflow...`` / ``from mlflow... import``, at any depth."""

    def is_mlflow(module: str | None) -> bool:
        return module is not None and (module == "mlflow" or module.startswith("mlflow."))

    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if is_mlflow(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and is_mlflow(node.module):
            found.append((node.lineno, node.module))
    return found


# -- 1. only the tracking and registry adapters import MLflow ------------------------------


def test_only_tracking_and_registry_import_mlflow() -> None:
    importers = {rel: hits for rel, tree in python_files() if (hits := mlflow_imports(tree))}
    # The scan sees imports inside functions: the adapters import MLflow lazily, in function
    # bodies, and must be found (else this test would pass whatever the package did).
    assert set(importers) >= MLFLOW_ADAPTERS, f"scanner missed the adapters: {sorted(importers)}"
    outside = {rel: hits for rel, hits in importers.items() if rel not in MLFLOW_ADAPTERS}
    assert not outside, f"modules other than {sorted(MLFLOW_ADAPTERS)} import mlflow: {outside}"


def test_mlflow_import_scanner_sees_nested_and_aliased_imports() -> None:
    source = (
        "import os\n"
        "import mlflowish\n"
        "from .mlflow import x\n"
        "def f():\n"
        "    class C:\n"
        "        def g(self):\n"
        "            import mlflow.pyfunc as p\n"
        "            from mlflow.tracking import MlflowClient\n"
    )
    assert mlflow_imports(ast.parse(source)) == [(7, "mlflow.pyfunc"), (8, "mlflow.tracking")]


# -- 2. generic layers never name a kind ---------------------------------------------------


def kind_literals() -> tuple[list[tuple[str, int, str]], list[tuple[str, int, str]]]:
    """String constants equal to a kind's name outside ``models/<that kind>/``: those allowed
    (a module-level constant of columns.py holding that kind's feature table name) and the
    others."""
    names = set(kind_names())
    allowed: list[tuple[str, int, str]] = []
    offending: list[tuple[str, int, str]] = []
    for rel, tree in python_files():
        table_constants = set()
        if rel == COLUMNS_MODULE:
            table_constants = {
                id(node.value)
                for node in tree.body
                if isinstance(node, ast.Assign)
                and isinstance(node.value, ast.Constant)
                and node.value.value in names
                and node.value.value == get_kind(node.value.value).feature_table
            }
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Constant) and node.value in names):
                continue
            if rel.startswith(f"flashsale_ml/models/{node.value}/"):
                continue
            hit = (rel, node.lineno, node.value)
            (allowed if id(node) in table_constants else offending).append(hit)
    return allowed, offending


def test_generic_layers_never_name_a_kind() -> None:
    assert kind_names(), "no model kinds registered"
    allowed, offending = kind_literals()
    assert not offending, f"generic code names a kind (go through flashsale_ml.models): {offending}"
    # Exactly the feature table constant (PROPENSITY_TABLE) is let through, nothing else.
    assert len(allowed) == 1, allowed
    assert allowed[0][0] == COLUMNS_MODULE


def test_kind_literal_scan_sees_the_kinds_own_folder() -> None:
    """The scan finds kind names where they do belong (else it could pass vacuously)."""
    names = set(kind_names())
    for name in names:
        tree = ast.parse((PACKAGE / "models" / name / "kind.py").read_text(encoding="utf-8"))
        assert any(isinstance(n, ast.Constant) and n.value == name for n in ast.walk(tree))


# -- 3. per-kind gate settings from the environment ----------------------------------------


@pytest.fixture
def clean_promotion_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in list(os.environ):
        if key.upper().startswith("FLASHSALE_PROMOTION"):
            monkeypatch.delenv(key)
    return monkeypatch


def test_kind_section_sets_a_gate(clean_promotion_env: pytest.MonkeyPatch) -> None:
    assert get_settings().gate_settings("propensity").min_auc == 0.6  # the default
    clean_promotion_env.setenv("FLASHSALE_PROMOTION__PROPENSITY__MIN_AUC", "0.7")
    assert get_settings().gate_settings("propensity").min_auc == 0.7
    assert get_kind("propensity").gates(get_settings()).absolute[0].bound == 0.7


def test_flat_gate_still_configures_propensity(clean_promotion_env: pytest.MonkeyPatch) -> None:
    clean_promotion_env.setenv("FLASHSALE_PROMOTION__MIN_AUC", "0.65")
    assert get_settings().gate_settings("propensity").min_auc == 0.65


def test_kind_section_wins_over_flat(clean_promotion_env: pytest.MonkeyPatch) -> None:
    clean_promotion_env.setenv("FLASHSALE_PROMOTION__MIN_AUC", "0.65")
    clean_promotion_env.setenv("FLASHSALE_PROMOTION__PROPENSITY__MIN_AUC", "0.7")
    clean_promotion_env.setenv("FLASHSALE_PROMOTION__MAX_ECE", "0.05")  # flat, not overridden
    gates = get_settings().gate_settings("propensity")
    assert (gates.min_auc, gates.max_ece) == (0.7, 0.05)


@pytest.mark.parametrize(
    ("variable", "value", "field"),
    [
        ("FLASHSALE_PROMOTION__PROPENSITY__MIN_AUCC", "0.7", "min_aucc"),
        ("FLASHSALE_PROMOTION__MIN_AUCC", "0.7", "min_aucc"),
        ("FLASHSALE_PROMOTION__PROPENSITY__MIN_AUC", "1.5", "min_auc"),
        ("FLASHSALE_PROMOTION__MIN_AUC", "1.5", "min_auc"),
        ("FLASHSALE_PROMOTION__PROPENSITY__BOOTSTRAP_SAMPLES", "10", "bootstrap_samples"),
    ],
)
def test_bad_gate_settings_fail_when_settings_are_read(
    clean_promotion_env: pytest.MonkeyPatch, variable: str, value: str, field: str
) -> None:
    clean_promotion_env.setenv(variable, value)
    with pytest.raises(ValueError, match=field):
        get_settings()


def test_gate_settings_of_an_unknown_kind_lists_the_kinds(
    clean_promotion_env: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ValueError, match="nope") as raised:
        get_settings().gate_settings("nope")
    for name in kind_names():
        assert name in str(raised.value)


# -- 4. monotone_tolerance reaches the behavioural checks ----------------------------------

DROP_PER_STEP = 0.01  # the mean prediction falls this much per 0.1 of discount_depth


def falling_with_discount(frame: pd.DataFrame) -> np.ndarray:
    """Row-wise (reads columns by name, no row order): falls 0.1 per unit of discount."""
    return (
        0.3
        + 0.01 * frame["events_7d"].to_numpy(dtype=float)
        - 0.1 * frame["discount_depth"].to_numpy(dtype=float)
        + 0.02 * (frame["region"] == "north").to_numpy(dtype=float)
    )


@pytest.fixture
def sample_frame() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    n = 120
    return pd.DataFrame(
        {
            "user_id": [f"u{i:03d}" for i in range(n)],
            "events_7d": rng.integers(0, 10, n),
            "region": rng.choice(["north", "south"], n),
            "discount_depth": rng.choice([0.1, 0.2, 0.3], n),
        }
    )


def propensity_checks(frame: pd.DataFrame) -> dict[str, Any]:
    results = get_kind("propensity").behavioural_checks(
        falling_with_discount, frame, 11, get_settings()
    )
    return {r.name: r for r in results}


@pytest.mark.parametrize(
    "variable",
    [
        "FLASHSALE_PROMOTION__MONOTONE_TOLERANCE",
        "FLASHSALE_PROMOTION__PROPENSITY__MONOTONE_TOLERANCE",
    ],
)
def test_configured_monotone_tolerance_lets_a_small_fall_pass(
    clean_promotion_env: pytest.MonkeyPatch, sample_frame: pd.DataFrame, variable: str
) -> None:
    clean_promotion_env.setenv(variable, "0.05")
    checks = propensity_checks(sample_frame)
    assert set(checks) == {"row_order", "irrelevant_columns", "monotone:discount_depth"}
    assert all(c.passed for c in checks.values()), checks
    assert "tolerance 0.05" in checks["monotone:discount_depth"].detail


def test_default_monotone_tolerance_fails_the_same_fall(
    clean_promotion_env: pytest.MonkeyPatch, sample_frame: pd.DataFrame
) -> None:
    checks = propensity_checks(sample_frame)
    assert checks["row_order"].passed and checks["irrelevant_columns"].passed
    monotone = checks["monotone:discount_depth"]
    assert not monotone.passed
    assert "largest fall 0.0100" in monotone.detail and "tolerance 0.002" in monotone.detail


@pytest.mark.parametrize(("tolerance", "passes"), [("0.009", False), ("0.011", True)])
def test_monotone_tolerance_is_the_threshold(
    clean_promotion_env: pytest.MonkeyPatch,
    sample_frame: pd.DataFrame,
    tolerance: str,
    passes: bool,
) -> None:
    """Just below the fall fails, just above passes: the configured value is the bound."""
    clean_promotion_env.setenv("FLASHSALE_PROMOTION__PROPENSITY__MONOTONE_TOLERANCE", tolerance)
    assert propensity_checks(sample_frame)["monotone:discount_depth"].passed is passes


# -- 5. decide_promotion on a made-up regression kind --------------------------------------

ROWS = 2_000
MAE_BOUND = 20.0


def mae(targets: np.ndarray, forecasts: np.ndarray) -> dict[str, float]:
    return {"mae": float(np.mean(np.abs(np.asarray(targets) - np.asarray(forecasts))))}


REVENUE_GATES = GateSpec(
    evaluate=mae,
    primary=PrimaryGate(
        RowMean("mae", lambda y, f: np.abs(y - f), higher_is_better=False), min_improvement=0.5
    ),
    absolute=(MetricBound("mae", "MAE", False, MAE_BOUND),),
    no_regression=(NoRegression("no_regression", "mae", "MAE", False, 0.0),),
    bootstrap_samples=300,
    min_holdout_rows=500,
)
WINDOW = HoldoutWindow("feat-snap-1", ("sale-9",), "2026-03-01T00:00:00+00:00", ROWS, "abc123")


@pytest.fixture(scope="module")
def revenue() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(8)
    targets = rng.gamma(2.0, 50.0, ROWS)
    return {
        "targets": targets,
        "good": targets + rng.normal(scale=5.0, size=ROWS),  # MAE ~4
        "rough": targets + rng.normal(scale=20.0, size=ROWS),  # MAE ~16, inside the bound
        "bad": targets + rng.normal(scale=50.0, size=ROWS),  # MAE ~40, outside it
    }


def forecaster(revenue: dict[str, np.ndarray], which: str) -> ModelEvaluation:
    return ModelEvaluation(
        model=f"flashsale-revenue/{which}",
        holdout=WINDOW,
        fitted_on=frozenset({"sale-7", "sale-8"}),
        labels=revenue["targets"],
        scores=revenue[which],
        segments=np.full(ROWS, "all"),
    )


def failed(decision: Decision) -> list[str]:
    return [g.name for g in decision.gates if not g.passed]


def test_better_forecaster_replaces_a_worse_champion(revenue: dict[str, np.ndarray]) -> None:
    decision = decide_promotion(
        forecaster(revenue, "good"), forecaster(revenue, "rough"), REVENUE_GATES, seed=1
    )
    assert decision.promote, decision.reasons
    assert failed(decision) == []
    assert {g.name for g in decision.gates} == {
        "holdout", "data", "behaviour", "absolute", "primary", "no_regression"
    }  # fmt: skip
    assert any(r.startswith("primary: better: mae gain +") for r in decision.reasons)
    # The bootstrap compared the kind's own statistic, oriented so that positive is better.
    gain = (
        mae(revenue["targets"], revenue["rough"])["mae"]
        - mae(revenue["targets"], revenue["good"])["mae"]
    )
    assert decision.bootstrap is not None and decision.bootstrap.metric == "mae"
    assert decision.bootstrap.difference == pytest.approx(gain)
    assert decision.bootstrap.low > 0
    assert decision.metrics["challenger_mae"] < decision.metrics["champion_mae"]


def test_worse_forecaster_is_rejected_as_worse(revenue: dict[str, np.ndarray]) -> None:
    decision = decide_promotion(
        forecaster(revenue, "rough"), forecaster(revenue, "good"), REVENUE_GATES, seed=1
    )
    assert not decision.promote
    assert failed(decision) == ["primary", "no_regression"]  # its MAE is within the bound
    assert any(r.startswith("primary: worse: mae gain -") for r in decision.reasons), (
        decision.reasons
    )
    assert decision.bootstrap is not None and decision.bootstrap.high < 0


def test_first_forecaster_needs_the_absolute_bound(revenue: dict[str, np.ndarray]) -> None:
    rejected = decide_promotion(forecaster(revenue, "bad"), None, REVENUE_GATES, seed=1)
    assert not rejected.promote
    assert failed(rejected) == ["absolute"]
    assert (
        rejected.reasons[0].startswith("absolute: MAE ")
        and f"(max {MAE_BOUND})" in (rejected.reasons[0])
    )
    accepted = decide_promotion(forecaster(revenue, "rough"), None, REVENUE_GATES, seed=1)
    assert accepted.promote, accepted.reasons
    assert accepted.reasons[0] == "first model of this kind: absolute gates passed"


# -- 6. AliasScorer resolves at most once per refresh interval ----------------------------

KIND_TAGS = {"flashsale.model_kind": "propensity", "flashsale.model_flavor": "lgbm"}


class FakeRegistry:
    """Stands in for ``alias_target`` and ``predictor_for``; counts what the scorer asks."""

    def __init__(self) -> None:
        self.target: tuple[str, dict[str, str]] | None = ("3", dict(KIND_TAGS))
        self.resolutions = 0
        self.loads: list[tuple[str, dict[str, str]]] = []

    def alias_target(self, settings: Settings, name: str, alias: str):
        assert (name, alias) == ("flashsale-propensity", "champion")
        self.resolutions += 1
        return self.target

    def predictor_for(self, model_uri: str, tags: dict[str, str]):
        self.loads.append((model_uri, tags))
        version = float(model_uri.rsplit("/", 1)[1])
        return lambda frame: np.full(len(frame), version)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def registry_settings(home: Path) -> Settings:
    """Settings whose registered model names are ``flashsale-<kind>`` whatever the env says."""
    return Settings(home=home, registered_model_prefix="flashsale")


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> FakeRegistry:
    fake = FakeRegistry()
    monkeypatch.setattr(scoring, "alias_target", fake.alias_target)
    monkeypatch.setattr(scoring, "predictor_for", fake.predictor_for)
    return fake


def test_alias_is_resolved_once_per_interval(registry: FakeRegistry, tmp_path: Path) -> None:
    clock = FakeClock()
    scorer = scoring.AliasScorer(
        "propensity", registry_settings(tmp_path), refresh_interval_s=30.0, clock=clock
    )
    frame = pd.DataFrame({"x": [1, 2, 3]})
    for _ in range(100):
        result = scorer.score(frame)
        clock.now += 0.25  # 100 calls span 25 s, inside the 30 s interval
    assert registry.resolutions == 1 and scorer.resolutions == 1
    assert registry.loads == [("models:/flashsale-propensity/3", KIND_TAGS)]
    assert (result.version, result.model_name, result.alias) == (
        "3",
        "flashsale-propensity",
        "champion",
    )
    np.testing.assert_array_equal(result.scores, [3.0, 3.0, 3.0])

    clock.now += 5.1  # past the interval: resolve again; same version, no reload
    assert scorer.score(frame).version == "3"
    assert registry.resolutions == 2
    assert len(registry.loads) == 1

    registry.target = ("4", dict(KIND_TAGS))  # a promotion moves the alias
    clock.now += 10.0  # still inside the interval started by the second resolution
    assert scorer.score(frame).version == "3"
    assert registry.resolutions == 2
    clock.now += 25.0
    moved = scorer.score(frame)
    assert registry.resolutions == 3
    assert (moved.version, registry.loads[-1][0]) == ("4", "models:/flashsale-propensity/4")
    assert len(registry.loads) == 2
    np.testing.assert_array_equal(moved.scores, [4.0, 4.0, 4.0])


def test_zero_interval_resolves_every_call(registry: FakeRegistry, tmp_path: Path) -> None:
    scorer = scoring.AliasScorer(
        "propensity", registry_settings(tmp_path), refresh_interval_s=0, clock=FakeClock()
    )
    for _ in range(5):
        scorer.score(pd.DataFrame({"x": [1]}))
    assert registry.resolutions == 5
    assert len(registry.loads) == 1  # the unchanged version is not loaded again


def test_unset_alias_raises_registry_error(registry: FakeRegistry, tmp_path: Path) -> None:
    registry.target = None
    scorer = scoring.AliasScorer(
        "flashsale-propensity",
        registry_settings(tmp_path),
        refresh_interval_s=30.0,
        clock=FakeClock(),
    )
    with pytest.raises(RegistryError, match="no 'champion' alias"):
        scorer.score(pd.DataFrame({"x": [1]}))
    assert registry.loads == []


# -- 7. one wiring for the DAG and the CLI ------------------------------------------------


def test_training_branches_are_well_formed() -> None:
    branches = training_branches()
    assert branches
    task_ids = [b.task_id for b in branches]
    assert len(task_ids) == len(set(task_ids)), task_ids
    for branch in branches:
        kind = get_kind(branch.kind)
        assert branch.flavor in kind.flavors, (branch.task_id, branch.flavor, list(kind.flavors))
    assert any(b.promote for b in branches)


def test_dag_builds_its_branches_from_training_branches() -> None:
    """The DAG file iterates ``training_branches()`` (no hand-written branch list)."""
    tree = ast.parse((REPO_ROOT / "dags" / "flashsale_training_pipeline.py").read_text())
    loops = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.For)
        and isinstance(node.iter, ast.Call)
        and isinstance(node.iter.func, ast.Name)
        and node.iter.func.id == "training_branches"
    ]
    assert loops, "the training DAG does not loop over training_branches()"


class FakeSteps:
    """Records the pipeline's step calls in order; ``fail_on`` makes one branch raise."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.fail_on = fail_on

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for module, name in [
            (data_steps, "generate_data"),
            (data_steps, "validate_data"),
            (data_steps, "build_features"),
            (training_steps, "train_branch"),
            (training_steps, "register_model"),
            (training_steps, "promote_model"),
            (training_steps, "start_pipeline"),
            (training_steps, "finish_pipeline"),
        ]:
            monkeypatch.setattr(module, name, getattr(self, name))

    def start_pipeline(self, name, tags=None, settings=None):
        self.calls.append(("start_pipeline", name))
        return "parent-1"

    def generate_data(self, parent, settings, users=None, days=None):
        self.calls.append(("generate_data", parent, users, days))
        return "raw-uri"

    def validate_data(self, raw, parent, settings):
        self.calls.append(("validate_data", raw, parent))
        return {"passed": True}

    def build_features(self, raw, parent, settings):
        self.calls.append(("build_features", raw, parent))
        return "features-uri"

    def train_branch(self, task_id, features, parent, settings=None, **options):
        self.calls.append(("train_branch", task_id, features, parent, options))
        if task_id == self.fail_on:
            raise RuntimeError(f"{task_id} blew up")
        return {"run_id": f"run-{task_id}"}

    def register_model(self, run_id, kind, settings=None):
        self.calls.append(("register_model", run_id, kind))
        return {"version": f"v-{run_id}"}

    def promote_model(self, version, kind, parent, settings=None):
        self.calls.append(("promote_model", version, kind, parent))
        return {"promote": True}

    def finish_pipeline(self, parent, status="FINISHED", settings=None):
        self.calls.append(("finish_pipeline", parent, status))

    def named(self, step: str) -> list[tuple[Any, ...]]:
        return [c[1:] for c in self.calls if c[0] == step]


def test_run_pipeline_trains_every_branch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    steps = FakeSteps()
    steps.install(monkeypatch)
    branches = training_branches()
    options = {branches[-1].task_id: {"epochs": 2}}
    summary = training_steps.run_pipeline(
        "nightly", users=50, days=9, branch_options=options, settings=Settings(home=tmp_path)
    )
    assert [c[0] for c in steps.calls[:4]] == [
        "start_pipeline", "generate_data", "validate_data", "build_features"
    ]  # fmt: skip
    assert steps.named("generate_data") == [("parent-1", 50, 9)]
    assert [t[0] for t in steps.named("train_branch")] == [b.task_id for b in branches]
    for task_id, features, parent, given in steps.named("train_branch"):
        assert (features, parent) == ("features-uri", "parent-1")
        assert given == options.get(task_id, {})
    promoting = [b for b in branches if b.promote]
    assert steps.named("register_model") == [(f"run-{b.task_id}", b.kind) for b in promoting]
    assert steps.named("promote_model") == [
        (f"v-run-{b.task_id}", b.kind, "parent-1") for b in promoting
    ]
    assert steps.calls[-1] == ("finish_pipeline", "parent-1", "FINISHED")
    assert len(steps.named("finish_pipeline")) == 1
    for branch in branches:
        assert ("registered" in summary[branch.task_id]) is branch.promote
    assert summary["features_uri"] == "features-uri"


@pytest.mark.parametrize("which", ["first", "last"])
def test_a_failing_branch_fails_the_pipeline(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, which: str
) -> None:
    branches = training_branches()
    failing = branches[0 if which == "first" else -1].task_id
    steps = FakeSteps(fail_on=failing)
    steps.install(monkeypatch)
    with pytest.raises(RuntimeError, match=f"{failing} blew up"):
        training_steps.run_pipeline("nightly", settings=Settings(home=tmp_path))
    assert steps.named("finish_pipeline") == [("parent-1", "FAILED")]
    trained = [t[0] for t in steps.named("train_branch")]
    assert trained == [b.task_id for b in branches[: trained.index(failing) + 1]]
