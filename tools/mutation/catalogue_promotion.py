"""Promotion-gate bugs (issue 23): each lets a challenger through that a gate must stop, or
breaks the evidence a gate relies on. Pure-decision bugs point at the fast unit tests; the
registry's stale-decision check at the real-server race test."""

from tools.mutation.run import Mutation

P = "flashsale_ml/promotion/decision.py"
BOOT = "flashsale_ml/evaluation/bootstrap.py"
GATES = "flashsale_ml/models/propensity/gates.py"
UNIT = "tests/test_promotion.py"
SLOW_VALIDATION = f"{UNIT}::test_promotion_counts_only_a_passing_validation_of_every_table"
E2E = "tests/e2e/test_registry_promotion.py"

MUTATIONS = [
    Mutation(
        "a_interval_not_required",
        P,
        "better = interval.difference >= primary.min_improvement and interval.excludes_zero()",
        "better = interval.difference >= primary.min_improvement",
        (f"{UNIT}::test_the_interval_alone_rejects_a_gain_above_the_margin",),
        "a +0.0044 AUC gain with a 95 % CI of -0.0041..+0.0128 is promoted on the margin alone",
    ),
    Mutation(
        "b_champion_resampled_independently",
        BOOT,
        "            return better(w) - worse(w)",
        "            return better(w) - worse("
        "np.bincount(rng.integers(0, n, n), minlength=n).astype(float))",
        (
            f"{UNIT}::test_identical_models_have_an_interval_of_exactly_zero",
            f"{UNIT}::test_the_bootstrap_resamples_both_models_on_the_same_rows",
            f"{UNIT}::test_a_paired_interval_is_much_narrower_for_correlated_models",
        ),
        "an unpaired bootstrap: the interval carries each model's own sampling noise",
    ),
    Mutation(
        "c_absolute_ignores_max_ece",
        GATES,
        '                MetricBound("ece", "ECE", False, self.max_ece),\n',
        "",
        (f"{UNIT}::test_the_absolute_gate_enforces_max_ece_on_its_own",),
        "a well-ranking but badly miscalibrated first model becomes champion",
    ),
    Mutation(
        "d_absolute_ignores_min_auc",
        GATES,
        '                MetricBound("auc", "AUC", True, self.min_auc),\n',
        "",
        (f"{UNIT}::test_the_absolute_gate_enforces_min_auc_on_its_own",),
        "a first model that cannot rank becomes champion",
    ),
    Mutation(
        "e_holdout_ignores_leaking_champion",
        P,
        "    for evaluation in (challenger, champion):",
        "    for evaluation in (challenger,):",
        (f"{UNIT}::test_a_champion_fitted_on_the_holdout_blocks_the_comparison",),
        "a champion fitted on the holdout campaign is compared on rows it has seen",
    ),
    Mutation(
        "f_min_holdout_rows_ignored",
        P,
        "    if holdout.rows < spec.min_holdout_rows:",
        "    if False:",
        (f"{UNIT}::test_a_holdout_below_min_holdout_rows_is_refused",),
        "a decision on a handful of rows",
    ),
    Mutation(
        "g_min_holdout_rows_off_by_one",
        P,
        "    if holdout.rows < spec.min_holdout_rows:",
        "    if holdout.rows <= spec.min_holdout_rows:",
        (f"{UNIT}::test_a_holdout_below_min_holdout_rows_is_refused",),
        "a holdout of exactly min_holdout_rows is refused",
    ),
    Mutation(
        "h_validated_data_ignored",
        P,
        "            bool(challenger.data_validated),",
        "            True,",
        (f"{UNIT}::test_a_challenger_without_validated_data_is_refused",),
        "a model trained on data that failed validation is promoted",
    ),
    Mutation(
        "i_unknown_validation_counts_as_validated",
        P,
        "            bool(challenger.data_validated),",
        "            challenger.data_validated is not False,",
        (f"{UNIT}::test_a_challenger_without_validated_data_is_refused",),
        "a model whose data was never validated is promoted",
    ),
    Mutation(
        "j_calibration_in_the_large_ignored",
        P,
        "        results.append(result)\n",
        "        results.append(CheckResult(result.name, True, result.detail))\n",
        (f"{UNIT}::test_calibration_in_the_large_decides_for_a_first_model",),
        "a model forecasting 35 % more buyers than there are is promoted",
    ),
    Mutation(
        "n_monotone_tolerance_unused",
        "flashsale_ml/models/propensity/kind.py",
        "            monotone_tolerance=gates.monotone_tolerance,\n",
        "",
        (
            "tests/test_model_kinds.py::test_configured_monotone_tolerance_lets_a_small_fall_pass",
            "tests/test_model_kinds.py::test_monotone_tolerance_is_the_threshold",
        ),
        "the configured monotone_tolerance never reaches the behavioural check (issue 15)",
    ),
    Mutation(
        "o_alias_resolved_on_every_call",
        "flashsale_ml/scoring.py",
        "        if fresh and self._version is not None:",
        "        if False:",
        ("tests/test_model_kinds.py::test_alias_is_resolved_once_per_interval",),
        "a scorer asks the registry on every score() call (issue 15)",
    ),
    Mutation(
        "k_partial_validation_counts",
        "flashsale_ml/validation/report.py",
        '        if payload.get("complete", True):',
        "        if True:",
        (SLOW_VALIDATION,),
        "a validation of one table vouches for the whole training snapshot",
    ),
    Mutation(
        "l_failed_validation_counts",
        "flashsale_ml/promotion/flow.py",
        '    return bool(report and report.get("success"))',
        "    return bool(report)",
        (SLOW_VALIDATION,),
        "any full validation report, failed or not, passes the data gate",
    ),
    Mutation(
        "m_stale_decision_applied",
        "flashsale_ml/registry.py",
        "        if state.champion != expected_champion:",
        "        if False:",
        (f"{E2E}::test_a_promotion_race_supersedes_one_attempt_which_re_decides",),
        "two racing promotions both win against the same champion; no attempt is superseded",
    ),
]
