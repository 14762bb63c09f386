"""What a person sees of a LightGBM training run: the learning curves and importance figures
logged to MLflow, and LightGBM's messages in the task log (as log records, not stderr)."""

from __future__ import annotations

import io
import logging
import struct

import numpy as np
import pandas as pd
import pytest

from flashsale_ml.models.propensity.lgbm import (
    CATEGORY_VOCAB,
    FEATURES,
    LgbmConfig,
    TimeSplit,
    evaluation_sample,
    train_propensity_lgbm,
)
from flashsale_ml.training import plots


def campaign(rng: np.random.Generator, n: int) -> pd.DataFrame:
    frame = pd.DataFrame({c: rng.normal(size=n) for c in FEATURES if c not in CATEGORY_VOCAB})
    for column, vocab in CATEGORY_VOCAB.items():
        frame[column] = rng.choice(vocab, n)
    logit = frame["events_7d"] + 0.5 * frame["views_7d"] - 3 + 0.5 * (frame["arm"] != "control")
    frame["label_purchase"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return frame


@pytest.fixture(scope="module")
def split() -> TimeSplit:
    rng = np.random.default_rng(8)
    return TimeSplit(campaign(rng, 4_000), campaign(rng, 2_000), campaign(rng, 2_000), {})


@pytest.fixture(scope="module")
def model(split: TimeSplit):
    config = LgbmConfig(learning_rate=0.3, early_stopping_rounds=8, max_rounds=400)
    return train_propensity_lgbm(split, config, seed=1)


def png_size(fig) -> tuple[int, int]:
    """Pixel width and height of the PNG as mlflow.log_figure writes it (savefig, defaults)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return struct.unpack(">II", buffer.getvalue()[16:24])


def test_learning_curves_cover_the_same_rounds_and_mark_the_best_iteration(model, split) -> None:
    best = model.best_iteration
    assert best == model.booster.best_iteration
    curves = model.history
    trained = len(curves["curve_valid_binary_logloss"])
    assert trained == best + 8  # early stopping gave up 8 rounds after the best one
    # every curve covers every round trained, the ones after the best round included
    assert {len(values) for values in curves.values()} == {trained}
    # ...but the model keeps only the rounds up to the best one
    assert model.booster.current_iteration() == best
    # the best round is where the validation log loss is lowest
    assert int(np.argmin(curves["curve_valid_binary_logloss"])) + 1 == best
    # the sampled curves at the best round are the metrics of the model kept (the validation
    # campaign is smaller than the curve sample, so the sample is the whole campaign)
    y_valid = split.valid["label_purchase"].to_numpy()
    rows = evaluation_sample(len(y_valid), 20_000, seed=2)
    assert len(rows) == len(y_valid)
    assert curves["curve_valid_sample_auc"][best - 1] == pytest.approx(
        model.metrics["valid"]["auc"], abs=1e-9
    )

    fig = plots.lgbm_learning_curves_figure(curves, best)
    (ax,) = fig.axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    train, valid = lines.pop("train (sample)"), lines.pop("validation")
    ((marker_label, marker),) = lines.items()
    rounds = np.arange(1, trained + 1)
    np.testing.assert_array_equal(train.get_xdata(), rounds)
    np.testing.assert_array_equal(valid.get_xdata(), rounds)
    np.testing.assert_array_equal(valid.get_ydata(), curves["curve_valid_binary_logloss"])
    np.testing.assert_array_equal(marker.get_xdata(), [best, best])
    assert marker_label == f"best iteration (early stopping): {best}"
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert legend == ["train (sample)", "validation", marker_label]
    assert ax.get_xlabel() == "boosting round" and ax.get_ylabel() == "log loss"
    plots.close(fig)


def test_curves_figure_without_a_best_round_draws_only_the_curves() -> None:
    fig = plots.curves_figure({"train": [3, 2, 1]}, "loss", "log loss", xlabel="epoch")
    (ax,) = fig.axes
    assert [line.get_label() for line in ax.get_lines()] == ["train"]
    assert ax.get_xlabel() == "epoch"


@pytest.mark.parametrize("features", [5, 20, 36, 200])
def test_importance_figure_fits_the_preview_with_the_top_features_sorted(features: int) -> None:
    rng = np.random.default_rng(features)
    names = [f"feature_{i:03d}" for i in range(features)]
    gains = rng.gamma(0.5, 1_000, features)
    gains[3] = 0.0  # unused features are allowed
    fig = plots.importance_figure(names, gains)
    (ax,) = fig.axes

    width_in, height_in = fig.get_size_inches()
    assert height_in <= plots.MAX_FIGURE_HEIGHT_IN and width_in > height_in
    width_px, height_px = png_size(fig)
    assert height_px <= plots.MAX_FIGURE_HEIGHT_IN * fig.dpi
    assert width_px > height_px

    shown = min(features, plots.MAX_IMPORTANCE_BARS)
    top = np.argsort(gains)[::-1][:shown]
    # bars bottom to top: ascending gain, so the largest is on top
    widths = [bar.get_width() for bar in ax.patches]
    np.testing.assert_allclose(widths, gains[top][::-1])
    labels = [label.get_text() for label in ax.get_yticklabels()]
    assert labels == [names[i] for i in top[::-1]]
    assert min(label.get_fontsize() for label in ax.get_yticklabels()) >= 8
    assert ("top 20 of" in ax.get_title()) == (features > 20)
    plots.close(fig)


def test_lightgbm_messages_arrive_as_log_records(caplog, capfd) -> None:
    """Native messages (``[LightGBM] [Warning] ...``) and the Python package's own warnings
    reach the ``lightgbm`` logger at their level, and nothing is printed."""
    import lightgbm as lgb

    from flashsale_ml.models.propensity.lgbm import lightgbm_logging

    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 3))
    y = (x[:, 0] > 0).astype(float)
    caplog.set_level(logging.INFO, logger="lightgbm")
    params = {
        "objective": "binary",
        "verbosity": lightgbm_logging(),
        "no_such_parameter": 1,  # a native warning
        # a warning of the Python package: two aliases of num_iterations disagree
        "num_iterations": 3,
        "num_rounds": 4,
    }
    lgb.train(params, lgb.Dataset(x, y), num_boost_round=5)
    records = [(r.name, r.levelname, r.getMessage()) for r in caplog.records]
    assert ("lightgbm", "WARNING", "Unknown parameter: no_such_parameter") in records
    assert any(
        level == "WARNING" and "conflicting values for num_iterations" in message
        for _, level, message in records
    )
    positives = int(y.sum())
    counts = f"Number of positive: {positives}, number of negative: {len(y) - positives}"
    assert ("lightgbm", "INFO", counts) in records
    assert "[LightGBM]" not in "".join(capfd.readouterr())

    # A logger at WARNING: LightGBM leaves out its informational messages altogether.
    caplog.clear()
    caplog.set_level(logging.WARNING, logger="lightgbm")
    assert lightgbm_logging() == 0
    lgb.train({**params, "verbosity": lightgbm_logging()}, lgb.Dataset(x, y))
    assert {r.levelname for r in caplog.records} == {"WARNING"}
    assert "[LightGBM]" not in "".join(capfd.readouterr())


def test_native_message_levels() -> None:
    from flashsale_ml.models.propensity.lgbm import _LightGBMMessages

    class Recorder(logging.Logger):
        def __init__(self) -> None:
            super().__init__("recorder")
            self.seen: list[tuple[int, str]] = []

        def log(self, level, msg, *args, **kwargs) -> None:  # type: ignore[override]
            self.seen.append((level, msg))

    recorder = Recorder()
    messages = _LightGBMMessages(recorder)
    messages.info("[LightGBM] [Fatal] Check failed")
    messages.info("[LightGBM] [Warning] No further splits with positive gain")
    messages.info("[LightGBM] [Info] Total Bins 8433")
    messages.info("[LightGBM] [Debug] Trained a tree")
    # the -1 code of unknown categories is this module's encoding, not news
    messages.info("[LightGBM] [Warning] Met negative value in categorical features, will ...")
    messages.info("[100]\tvalid's binary_logloss: 0.25")  # log_evaluation, from Python
    assert recorder.seen == [
        (logging.ERROR, "Check failed"),
        (logging.WARNING, "No further splits with positive gain"),
        (logging.INFO, "Total Bins 8433"),
        (logging.DEBUG, "Trained a tree"),
        (logging.DEBUG, "Met negative value in categorical features, will ..."),
        (logging.INFO, "[100]\tvalid's binary_logloss: 0.25"),
    ]


def test_a_training_run_logs_through_the_lightgbm_logger(split, caplog, capfd) -> None:
    caplog.set_level(logging.INFO)
    train_propensity_lgbm(split, LgbmConfig(learning_rate=0.3, max_rounds=30), seed=2)
    lightgbm = [r for r in caplog.records if r.name == "lightgbm"]
    assert any(
        r.getMessage().startswith("Number of data points in the train set") for r in lightgbm
    )
    assert "[LightGBM]" not in "".join(capfd.readouterr())
