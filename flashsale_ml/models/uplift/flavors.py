"""The uplift kind's flavors: one per meta-learner (``xl``, ``dr``, ``x``, ``t``, and the ``s``
baseline), each with LightGBM base learners (see :mod:`.learners`)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from flashsale_ml.features.columns import LABEL, PROPENSITY_TABLE
from flashsale_ml.models.base import FitRequest, FittedModel, Predictor

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

log = logging.getLogger(__name__)

PIP_REQUIREMENTS = ("lightgbm", "pandas", "numpy", "pyarrow", "pydantic")
LEARNER_NAMES = {
    "xl": "X-learner (log-odds)",
    "dr": "DR-learner",
    "x": "X-learner",
    "t": "T-learner",
    "s": "S-learner",
}


def expand_by_arm(rows: pd.DataFrame, arms: tuple[str, ...], control: str) -> pd.DataFrame:
    """For each promotion arm: its treated rows and the control rows they are compared with,
    with ``scored_arm`` naming the arm and ``treated`` 0/1 — the rows a per-arm Qini ranks.

    In a randomized campaign that is every control row. In a targeted one (its rows carry a
    ``plan_arm``) the plan gave each promotion to the users it suited, so a promotion's treated
    users are compared only with the control users the plan meant for the same promotion;
    exploration users (no plan arm) have no such control group and are left out. Comparing
    them with the whole control group would measure who the plan picked, not what the
    promotion did.
    """
    import pandas as pd

    plan_arm = rows["plan_arm"] if "plan_arm" in rows.columns else pd.Series(None, rows.index)
    # A campaign is targeted when any of its rows has a plan arm (explorers have none).
    targeted = plan_arm.notna().groupby(rows["campaign_id"]).transform("any")
    parts = []
    for arm in arms:
        compared = rows["arm"].isin([arm, control]) & (~targeted | (plan_arm == arm))
        part = rows[compared].assign(scored_arm=arm)
        part["treated"] = (part["arm"] == arm).astype(int)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def design_propensities(rows: pd.DataFrame, arm: np.ndarray, n_codes: int) -> np.ndarray:
    """``P(arm | stratum)`` per row, ``(n, n_codes)``: each arm's share of its stratum.

    The stratum is the campaign, and in a targeted campaign also the plan arm: there the
    holdout draw alone split the users the plan meant for one promotion into that promotion
    and control, and the explorers drew among the promotions, so within a stratum the arms
    are randomized with these shares (an arm the stratum never gets has 0). A randomized
    campaign has no plan arms and is one stratum.

    Args:
        rows: ``campaign_id`` and, where recorded, ``plan_arm`` of each row.
        arm: each row's arm code, ``0`` for control.
        n_codes: the number of arm codes (control and the promotions).
    """
    import pandas as pd

    strata = rows["campaign_id"].astype(str)
    if "plan_arm" in rows.columns:
        strata = strata + "\x1f" + rows["plan_arm"].fillna("").astype(str)
    key = strata.to_numpy()
    shares = (
        pd.DataFrame({"stratum": key, "code": arm})
        .groupby("stratum")["code"]
        .value_counts(normalize=True)
        .unstack(fill_value=0.0)
        .reindex(columns=range(n_codes), fill_value=0.0)
    )
    return shares.loc[key].to_numpy(dtype=float)


def realized_labels(
    lake_uri: str, raw_snapshot_id: str | None, campaigns: tuple[str, ...]
) -> tuple[pd.DataFrame | None, dict[str, str]]:
    """What evaluation measured for each campaign (``flashsale evaluate`` writes a
    ``campaign_labels`` snapshot per evaluation): the newest labels of each of ``campaigns``
    evaluated on the same raw data as the features. Returns the labels of the campaigns found
    (``campaign_id, user_id, margin``) and campaign -> labels snapshot URI."""
    import pandas as pd

    from flashsale_ml.datasets import Snapshot, list_snapshots
    from flashsale_ml.evaluation.results import LABELS_DATASET
    from flashsale_ml.storage import open_store

    found: dict[str, str] = {}
    for uri in reversed(list_snapshots(open_store(lake_uri), LABELS_DATASET)):
        with Snapshot(uri) as snapshot:
            meta = snapshot.manifest.metadata
        campaign = meta.get("campaign_id")
        if (
            campaign in campaigns
            and campaign not in found
            and (raw_snapshot_id is None or meta.get("input_snapshot_id") == raw_snapshot_id)
        ):
            found[campaign] = uri
    parts = []
    for uri in found.values():
        with Snapshot(uri) as snapshot:
            if "margin" in snapshot.manifest.tables["labels"].schema:
                parts.append(
                    snapshot.read_pandas("labels", columns=["campaign_id", "user_id", "margin"])
                )
    if not parts:
        return None, found
    return pd.concat(parts, ignore_index=True), found


def incremental_at_k(value, treated, scores, k: float = 0.3) -> float:
    """Treated minus control mean of a continuous outcome (margin) among the top ``k`` share
    of rows by predicted uplift: what targeting the top k would have gained per user."""
    import numpy as np

    order = np.argsort(-np.asarray(scores, dtype=float), kind="stable")
    top = order[: max(int(k * len(order)), 1)]
    t = np.asarray(treated)[top] == 1
    v = np.asarray(value, dtype=float)[top]
    if not t.any() or t.all():
        return float("nan")
    return float(v[t].mean() - v[~t].mean())


class UpliftFlavor:
    """A meta-learner fitted on the training campaigns' randomized assignments; evaluated by
    Qini, AUUC, uplift@30 % and decile calibration on the test campaign.

    Options: ``config`` (an :class:`~flashsale_ml.models.uplift.learners.UpliftConfig`),
    ``arm_costs`` (arm -> cost per treated user, for the budgeted-allocation curve).
    """

    library = "pyfunc"
    invariance_tolerance = 1e-9

    def __init__(self, learner: str) -> None:
        self.name = learner
        self.step_name = f"train_uplift_{learner}"

    def fit(self, request: FitRequest) -> FittedModel:
        import numpy as np

        from flashsale_ml.contract import CONTROL_ARM
        from flashsale_ml.datasets import Snapshot
        from flashsale_ml.evaluation.uplift import cost_aware_multi_arm_qini
        from flashsale_ml.models.uplift.gates import arm_qinis, uplift_metrics
        from flashsale_ml.models.uplift.learners import UpliftConfig, make_learner
        from flashsale_ml.models.uplift.plots import (
            cost_value_figure,
            qini_figure,
            uplift_calibration_figure,
        )
        from flashsale_ml.models.uplift.scorer import FEATURES, UpliftScorer, feature_matrix

        settings = request.settings
        config = request.options.get("config") or UpliftConfig(
            seed=settings.seed, num_threads=settings.compute_threads
        )
        columns = ["campaign_id", "user_id", "arm", *FEATURES, LABEL]
        with Snapshot(request.features_uri) as snapshot:
            # Feature snapshots built before targeted campaigns recorded a plan arm lack it.
            if "plan_arm" in snapshot.manifest.tables[PROPENSITY_TABLE].schema:
                columns.append("plan_arm")
            frame = snapshot.read_pandas(PROPENSITY_TABLE, columns=columns)
        fit_rows = frame[frame["campaign_id"].isin(request.split.fitted_campaigns)]
        test_rows = frame[frame["campaign_id"].isin(request.split.test)]
        arms = tuple(sorted(set(fit_rows["arm"].dropna()) - {CONTROL_ARM}))
        codes = {CONTROL_ARM: 0, **{arm: i + 1 for i, arm in enumerate(arms)}}
        fit_rows = fit_rows[fit_rows["arm"].isin(codes)]
        arm = fit_rows["arm"].map(codes).to_numpy(dtype=np.int64)
        propensity = design_propensities(fit_rows, arm, len(codes))
        learner = make_learner(self.name, config).fit(
            feature_matrix(fit_rows), arm, fit_rows[LABEL].to_numpy(dtype=float), propensity
        )
        scorer = UpliftScorer(learner, arms)
        margin_params, margin_metrics = self._fit_margin(
            request, config, scorer, fit_rows, arm, propensity, test_rows, codes
        )

        holdout = expand_by_arm(test_rows[test_rows["arm"].isin(codes)], arms, CONTROL_ARM)
        scores = scorer.uplift_of(holdout)
        y = holdout[LABEL].to_numpy(dtype=float)
        treated = holdout["treated"].to_numpy(dtype=float)
        targets = treated * 2.0 + y
        test = uplift_metrics(targets, scores)
        per_arm = arm_qinis(targets, scores, holdout["scored_arm"].to_numpy(), 1)
        test |= {f"qini_{arm}": value for arm, value in per_arm.items()}
        test["rows"] = float(len(test_rows))
        test |= margin_metrics
        # Budgeted allocation across arms: each test user gets the arm with the best predicted
        # uplift per unit of cost (costs per treated user from the `arm_costs` option; equal
        # by default, which makes it a multi-arm Qini by number of promotions sent).
        costs = {arm: float(request.options.get("arm_costs", {}).get(arm, 1.0)) for arm in arms}
        in_design = test_rows[test_rows["arm"].isin(codes)]
        allocation = cost_aware_multi_arm_qini(
            in_design[LABEL].to_numpy(dtype=float),
            in_design["arm"].map(codes).to_numpy(dtype=np.int64),
            scorer.predict(in_design),
            np.array([costs[arm] for arm in arms]),
        )
        if len(allocation.spend) > 1 and allocation.spend[-1] > 0:
            test["allocation_value_at_full_spend"] = float(allocation.value[-1])
        name = LEARNER_NAMES[self.name]
        return FittedModel(
            model=scorer,
            metrics={"test": test},
            params={
                "uplift": config.model_dump(mode="json"),
                "learner": self.name,
                "arms": list(arms),
                "split": request.split.as_dict(),
                "rows": {"fit": len(fit_rows), "test": len(test_rows)},
                "margin_model": margin_params,
            },
            figures={
                "qini_curves.png": qini_figure(holdout, scores, LABEL, name),
                "uplift_calibration.png": uplift_calibration_figure(holdout, scores, LABEL, name),
                "cost_value_curve.png": cost_value_figure(allocation, name, costs),
            },
            summary={
                "input_example": test_rows[list(FEATURES)].head(5).reset_index(drop=True),
                "arms": list(arms),
            },
        )

    def _fit_margin(self, request, config, scorer, fit_rows, arm, propensity, test_rows, codes):
        """The incremental margin per arm, learned from what evaluation measured: the
        ``campaign_labels`` of the fitted campaigns (margin = revenue − cost of goods over the
        outcome window). Skipped, and said so in the params, unless every fitted campaign
        was evaluated on this data."""
        import numpy as np

        from flashsale_ml.contract import CONTROL_ARM
        from flashsale_ml.datasets import Snapshot
        from flashsale_ml.models.uplift.learners import make_learner
        from flashsale_ml.models.uplift.scorer import feature_matrix

        with Snapshot(request.features_uri) as snapshot:
            raw_id = snapshot.manifest.metadata.get("input_snapshot_id")
        fitted = request.split.fitted_campaigns
        labels, found = realized_labels(
            request.settings.lake_uri, raw_id, (*fitted, *request.split.test)
        )
        missing = [c for c in fitted if c not in found]
        if labels is None or missing:
            return {
                "trained": False,
                "why": f"no campaign_labels for {missing or list(fitted)}: run flashsale "
                "evaluate on them to learn the incremental margin",
            }, {}
        keys = ["campaign_id", "user_id"]
        joined = fit_rows[keys].reset_index(drop=True).merge(labels, on=keys, how="left")
        known = joined["margin"].notna().to_numpy()
        margin_learner = make_learner(
            self.name, config.model_copy(update={"outcome": "continuous"})
        ).fit(
            feature_matrix(fit_rows.iloc[np.flatnonzero(known)]),
            arm[known],
            joined.loc[known, "margin"].to_numpy(dtype=float),
            propensity[known],
        )
        scorer.margin_learner = margin_learner
        params = {"trained": True, "labels_snapshots": dict(sorted(found.items()))}
        metrics = {}
        test_labels = test_rows[keys].merge(labels, on=keys, how="inner")
        if not test_labels.empty:
            # The same comparisons as the purchase metrics (expand_by_arm: on a targeted
            # campaign, each promotion against the control users of its plan arm).
            rows = expand_by_arm(test_rows.merge(test_labels, on=keys), scorer.arms, CONTROL_ARM)
            margin_uplift = scorer.predict_margin(rows)
            for i, name in enumerate(scorer.arms):
                in_arm = (rows["scored_arm"] == name).to_numpy()
                treated = rows.loc[in_arm, "treated"]
                if not 0 < treated.sum() < len(treated):
                    continue
                value = incremental_at_k(
                    rows.loc[in_arm, "margin"], treated, margin_uplift[in_arm, i]
                )
                metrics[f"margin_at_30_{name}"] = value
        return params, metrics

    def log_model(self, fitted: FittedModel, run_id: str) -> str:
        from importlib.metadata import version

        from flashsale_ml.models.uplift.scorer import OUTPUTS
        from flashsale_ml.tracking import log_model

        example = fitted.summary.pop("input_example")
        return log_model(
            self.library,
            fitted.model,
            input_example=example,
            output_example=fitted.model.predict(example),
            pip_requirements=[f"{p}=={version(p)}" for p in PIP_REQUIREMENTS],
            metadata={
                "arms": list(fitted.model.arms),
                "output": "purchase uplift per arm vs control; with params "
                '{"output": "margin"}: incremental margin per arm (where margin_model)',
                "margin_model": fitted.model.margin_learner is not None,
            },
            params_example={"output": OUTPUTS[0]},
        )

    def predictor(self, model_uri: str) -> Predictor:
        from flashsale_ml.models.uplift.scorer import FEATURES, select_arm
        from flashsale_ml.tracking import load_pyfunc

        model = load_pyfunc(model_uri)
        arms = tuple((model.metadata.metadata or {}).get("arms", ()))

        def predict(frame: pd.DataFrame) -> np.ndarray:
            uplift = model.predict(frame[list(FEATURES)])
            return select_arm(uplift, arms, frame)

        return predict
