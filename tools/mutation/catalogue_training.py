# ruff: noqa: E501  (source fragments must match exactly)
"""Model-quality bugs (issue 23): a leaking, a crippled, an unsynchronised and an uncalibrated
model. Each must fail a quality test that bars the model against a reference (the simulator's
oracle, LightGBM on the same split, the observed rate of the validation sale)."""

from tools.mutation.run import Mutation

LGBM = "flashsale_ml/models/propensity/lgbm.py"
DEEP = "flashsale_ml/models/propensity/dcn/worker.py"
ORACLE = ("tests/test_training_quality.py::test_lgbm_auc_is_near_the_oracle_and_never_above_it",)

MUTATIONS = [
    Mutation(
        "a_label_among_the_features",
        LGBM,
        "FEATURES: tuple[str, ...] = (*USER_FEATURES, *CATEGORY_VOCAB, *SALE_FEATURES)",
        "FEATURES: tuple[str, ...] = (*USER_FEATURES, *CATEGORY_VOCAB, *SALE_FEATURES, LABEL)",
        ORACLE,
        "the label reaches the model: test AUC 1.000 against the oracle's 0.815",
    ),
    Mutation(
        "b_crippled_model",
        LGBM,
        "    num_leaves: int = Field(default=31, ge=2)\n    learning_rate: float = Field(default=0.05, gt=0)\n    max_rounds: int = Field(default=1000, ge=1)",
        "    num_leaves: int = Field(default=4, ge=2)\n    learning_rate: float = Field(default=0.05, gt=0)\n    max_rounds: int = Field(default=20, ge=1)",
        ORACLE,
        "20 rounds of 4 leaves by default: mean oracle gap 0.0225 against 0.0157, test ECE 0.04",
    ),
    Mutation(
        "c_no_ddp_gradient_sync",
        DEEP,
        "    ddp = DistributedDataParallel(model, device_ids=[local_rank] if use_cuda else None)",
        "    ddp = model  # each rank trains on its own shard, nothing all-reduced",
        ("tests/test_deep_training.py::test_ddp_two_processes_on_cpu_logs_to_mlflow",),
        "the ranks train separate models on their shards (test AUC 0.768 against 0.785)",
    ),
    Mutation(
        "d_no_intercept_recalibration",
        LGBM,
        "    recalibrate = config.recalibrate_intercept and out_of_time",
        "    recalibrate = False",
        (
            "tests/test_lgbm_calibration.py::test_the_mean_prediction_on_the_validation_sale_is_its_observed_rate",
        ),
        "the intercept correction silently off: the next sale over-predicted by a quarter",
    ),
]
