"""The post-campaign report: its headline says what the numbers say (and never claims an effect
whose interval contains zero), its figures exist and are drawn, and its HTML page is one
self-contained, escaped file that opens with the headline."""

from __future__ import annotations

import base64
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from flashsale_ml.evaluation import report
from flashsale_ml.evaluation.effects import CupedResult, Interval
from flashsale_ml.evaluation.results import (
    ALL_USERS,
    ArmTotals,
    Calibration,
    CampaignEvaluation,
    CumulativeEffect,
    MetricEffect,
)

CONTROL = "control"
ARMS = ("pct_discount", "free_shipping", "bundle")
SEGMENTS = ("high", "mid", "low")
METRICS = ("conversion", "orders", "revenue", "margin")
USERS = {CONTROL: 18_020, "pct_discount": 18_000, "free_shipping": 18_050, "bundle": 17_950}

# Overall conversion: control 8.1 %; pct_discount clearly up, free_shipping straddles zero,
# bundle clearly down.
CONVERSION = {
    "pct_discount": (0.104, 0.023, 0.016, 0.030, 1e-9),
    "free_shipping": (0.085, 0.004, -0.003, 0.011, 0.26),
    "bundle": (0.075, -0.006, -0.011, -0.001, 0.02),
}
RELATIVE = {
    "pct_discount": (0.28, 0.19, 0.37),
    "free_shipping": (0.05, -0.04, 0.14),
    "bundle": (-0.074, -0.136, -0.012),
}
# Per segment (difference, low, high, p, adjusted p) of conversion.
SEGMENT_CONVERSION = {
    ("pct_discount", "high"): (0.041, 0.022, 0.060, 0.0004, 0.0012),
    ("pct_discount", "mid"): (0.021, 0.008, 0.034, 0.012, 0.024),
    ("pct_discount", "low"): (0.012, -0.002, 0.026, 0.09, 0.09),
    ("free_shipping", "high"): (0.009, -0.010, 0.028, 0.35, 1.0),
    ("free_shipping", "mid"): (0.003, -0.008, 0.014, 0.59, 1.0),
    ("free_shipping", "low"): (0.002, -0.007, 0.011, 0.66, 1.0),
    ("bundle", "high"): (-0.011, -0.030, 0.008, 0.25, 0.75),
    ("bundle", "mid"): (-0.006, -0.017, 0.005, 0.28, 0.75),
    ("bundle", "low"): (-0.004, -0.013, 0.005, 0.38, 0.75),
}
TOTALS = {
    # orders, revenue, margin: (estimate, low, high); incentive cost; ROI
    "pct_discount": ((412, 290, 534), (12_400, 8_100, 16_700), (5_230, 3_100, 7_360), 3_900),
    "free_shipping": ((40, -70, 150), (900, -2_600, 4_400), (300, -1_500, 2_100), 1_200),
    "bundle": ((-95, -170, -20), (-2_900, -5_000, -800), (-1_100, -2_200, 0), 600),
}


def iv(estimate, low, high, p=None, confidence=0.95) -> Interval:
    return Interval(estimate, low, high, confidence, p_value=p, std_error=(high - low) / 3.92)


def effect(metric, arm, segment, mean_c, diff, low, high, p, adjusted=None, rel=None, cuped=None):
    n_t = USERS[arm] // (1 if segment == ALL_USERS else 3)
    n_c = USERS[CONTROL] // (1 if segment == ALL_USERS else 3)
    return MetricEffect(
        metric=metric,
        arm=arm,
        segment=segment,
        n_treated=n_t,
        n_control=n_c,
        mean_treated=mean_c + diff,
        mean_control=mean_c,
        difference=iv(diff, low, high, p),
        bootstrap=iv(diff, low * 1.02, high * 1.02),
        relative_lift=None if rel is None else iv(*rel),
        cuped=cuped,
        adjusted_p_value=adjusted,
    )


def cuped_for(diff, low, high, p, reduction):
    shrink = np.sqrt(1 - reduction)
    half = (high - low) / 2 * shrink
    return CupedResult(
        theta=0.8,
        interval=iv(diff * 0.97, diff * 0.97 - half, diff * 0.97 + half, p / 10),
        unadjusted=iv(diff, low, high, p),
        variance_reduction=reduction,
    )


def build_evaluation(**changes) -> CampaignEvaluation:
    effects: list[MetricEffect] = []
    for arm in ARMS:
        _, diff, low, high, p = CONVERSION[arm]
        effects.append(
            effect("conversion", arm, ALL_USERS, 0.081, diff, low, high, p, rel=RELATIVE[arm])
        )
        for segment in SEGMENTS:
            d, lo, hi, p_s, adj = SEGMENT_CONVERSION[(arm, segment)]
            effects.append(effect("conversion", arm, segment, 0.081, d, lo, hi, p_s, adj))
        scale = {"orders": 0.0229, "revenue": 0.689, "margin": 0.29}
        for metric, per_user in scale.items():
            d = TOTALS[arm][["orders", "revenue", "margin"].index(metric)]
            est, lo, hi = (v / USERS[arm] for v in d)
            p_m = 0.001 if lo * hi > 0 else 0.4
            cuped = cuped_for(est, lo, hi, p_m, 0.38) if metric != "orders" else None
            effects.append(effect(metric, arm, ALL_USERS, per_user, est, lo, hi, p_m, cuped=cuped))
            for segment in SEGMENTS:
                wide = (est - 2 * (est - lo), est + 2 * (hi - est))
                effects.append(effect(metric, arm, segment, per_user, est, *wide, 0.3, 0.6))
    totals = tuple(
        ArmTotals(
            arm=arm,
            users=USERS[arm],
            incremental={
                "orders": iv(*TOTALS[arm][0]),
                "revenue": iv(*TOTALS[arm][1]),
                "margin": iv(*TOTALS[arm][2]),
            },
            incentive_cost=float(TOTALS[arm][3]),
            roi=iv(*(v / TOTALS[arm][3] for v in TOTALS[arm][2])),
        )
        for arm in ARMS
    )
    hours = tuple(float(h) for h in np.linspace(4, 72, 18))
    cumulative = tuple(
        CumulativeEffect(
            arm=arm,
            hours=hours,
            estimate=tuple(CONVERSION[arm][1] * (1 - np.exp(-h / 12)) for h in hours),
            low=tuple(
                CONVERSION[arm][1] * (1 - np.exp(-h / 12)) - 0.012 / np.sqrt(h / 4) for h in hours
            ),
            high=tuple(
                CONVERSION[arm][1] * (1 - np.exp(-h / 12)) + 0.012 / np.sqrt(h / 4) for h in hours
            ),
        )
        for arm in ARMS
    )
    calibration = (
        Calibration(
            model="flashsale-propensity/3",
            target="conversion",
            mean_prediction=0.089,
            observed_rate=0.086,
            bins_mean_prediction=(0.012, 0.031, 0.058, 0.094, 0.21),
            bins_observed_rate=(0.010, 0.035, 0.052, 0.101, 0.185),
            bins_rows=(14_800,) * 5,
            rows=74_000,
        ),
    )
    evaluation = CampaignEvaluation(
        campaign_id="bf-2025-11",
        data_uri="s3://lake/flashsale/snapshots/2025-12-03",
        data_snapshot_id="snap-7f3a9c",
        start="2025-11-28T00:00:00+00:00",
        end="2025-11-29T00:00:00+00:00",
        outcome_end="2025-12-01T00:00:00+00:00",
        control=CONTROL,
        arms=ARMS,
        arm_users=dict(USERS),
        expected_shares={
            CONTROL: 0.25,
            "pct_discount": 0.25,
            "free_shipping": 0.25,
            "bundle": 0.25,
        },
        srm_p_value=0.62,
        metrics=METRICS,
        effects=tuple(effects),
        correction="holm",
        totals=totals,
        cumulative=cumulative,
        calibration=calibration,
        notes=(
            "Outcomes are completed order lines up to 48 h after the sale.",
            "Incentive cost: discounts redeemed beyond control's.",
        ),
        lineage={
            "code_version": "git:3f9e2c1",
            "config_hash": "sha256:ab12cd34",
            "mlflow_run_id": "4c0ffee0d15ea5e",
            "labels_snapshot": "s3://lake/flashsale/labels/bf-2025-11/snap-01",
        },
    )
    return replace(evaluation, **changes)


@pytest.fixture(scope="module")
def evaluation() -> CampaignEvaluation:
    return build_evaluation()


@pytest.fixture(scope="module")
def sentences(evaluation) -> list[str]:
    return report.headline(evaluation)


def arm_sentence(sentences: list[str], arm: str) -> str:
    (sentence,) = [s for s in sentences if s.startswith(f"The {arm} arm ")]
    return sentence


# ------------------------------------------------------------------------------- headline


def test_headline_has_one_sentence_per_arm_in_order_then_srm_then_segments(sentences) -> None:
    assert [s.split()[1] for s in sentences[: len(ARMS)]] == list(ARMS)
    assert sentences[len(ARMS)].startswith("The sample-ratio check passed (p = 0.62)")
    assert "Holm" in sentences[len(ARMS) + 1]
    assert len(sentences) == len(ARMS) + 2


def test_headline_numbers_match_the_evaluation(sentences) -> None:
    up = arm_sentence(sentences, "pct_discount")
    assert up.startswith(
        "The pct_discount arm raised conversion from 8.1 % to 10.4 % "
        "(+2.3 points, 95 % CI +1.6 to +3.0; +28 % relative)"
    )
    assert "about 412 extra orders (95 % CI 290 to 534)" in up
    assert "incremental revenue +12,400 (95 % CI +8,100 to +16,700)" in up
    assert "incremental margin +5,230 (95 % CI +3,100 to +7,360)" in up
    # ROI is signed like every other interval (no "−6.47 to 0.58" next to "+619")
    assert ", at an incentive cost of 3,900 (ROI +1.34, 95 % CI +0.79 to +1.89)" in up
    down = arm_sentence(sentences, "bundle")
    assert down.startswith(
        "The bundle arm lowered conversion from 8.1 % to 7.5 % "
        "(\u22120.6 points, 95 % CI \u22121.1 to \u22120.1; \u22127 % relative)"
    )
    assert "about 95 fewer orders (95 % CI \u2212170 to \u221220)" in down
    # no currency symbol anywhere
    assert not re.search(r"[£$€]", " ".join(sentences))


def test_no_detectable_effect_exactly_when_the_interval_contains_zero(sentences) -> None:
    flat = arm_sentence(sentences, "free_shipping")
    assert flat.startswith(
        "The free_shipping arm had no detectable effect on conversion: 8.5 % against 8.1 % in "
        "control (+0.4 points, 95 % CI \u22120.3 to +1.1"
    )
    assert "raised" not in flat and "lowered" not in flat
    # its totals straddle zero too: no "extra orders" claimed
    assert "extra" not in flat and "fewer" not in flat
    assert (
        "no detectable change in orders (+40, 95 % CI \u221270 to +150), revenue (+900, "
        "95 % CI \u22122,600 to +4,400) or margin (+300, 95 % CI \u22121,500 to +2,100), at an "
        "incentive cost of 1,200 (ROI +0.25, 95 % CI \u22121.25 to +1.75)"
    ) in flat
    for arm in ("pct_discount", "bundle"):
        assert "no detectable effect" not in arm_sentence(sentences, arm)
    # a total whose interval reaches zero is not claimed either
    assert (
        "\u2212800) and no detectable change in margin (\u22121,100, 95 % CI \u22122,200 to 0)"
        in arm_sentence(sentences, "bundle")
    )


@pytest.mark.parametrize(
    ("low", "high"),
    [(-0.01, 0.02), (0.0, 0.02), (-0.02, 0.0), (0.001, 0.02), (-0.02, -0.001), (-1e-6, 1e-6)],
)
def test_the_claim_follows_the_interval_for_any_interval(low, high) -> None:
    base = build_evaluation()
    estimate = (low + high) / 2
    effects = tuple(
        replace(e, difference=iv(estimate, low, high, 0.5), mean_treated=0.081 + estimate)
        if (e.metric, e.arm, e.segment) == ("conversion", "pct_discount", ALL_USERS)
        else e
        for e in base.effects
    )
    sentence = arm_sentence(report.headline(replace(base, effects=effects)), "pct_discount")
    contains_zero = low <= 0 <= high
    assert ("no detectable effect" in sentence) == contains_zero
    assert (" raised " in sentence or " lowered " in sentence) == (not contains_zero)


def test_the_effects_own_confidence_level_is_quoted() -> None:
    base = build_evaluation()
    effects = tuple(
        replace(e, difference=replace(e.difference, confidence=0.9)) for e in base.effects
    )
    sentence = arm_sentence(report.headline(replace(base, effects=effects)), "pct_discount")
    assert "(+2.3 points, 90 % CI +1.6 to +3.0" in sentence
    assert "95 % CI 290 to 534" in sentence  # the totals keep their own level


def test_segments_below_the_adjusted_threshold_are_named(sentences) -> None:
    segments = sentences[-1]
    assert "Holm's step-down correction" in segments
    # grouped by arm, the adjusted p-values are in the table
    assert (
        "significant on conversion after adjustment (adjusted p < 0.05): "
        "pct_discount in high (+4.1 points) and mid (+2.1 points)."
    ) in segments
    # adjusted p 0.09 / 0.6 / 0.75 / 1.0 are not named
    assert "low" not in segments.split("):", 1)[1]
    assert "free_shipping in" not in segments and "bundle in" not in segments


def test_without_significant_segments_the_headline_says_so() -> None:
    base = build_evaluation(correction="bh")
    effects = tuple(
        replace(e, adjusted_p_value=0.5) if e.adjusted_p_value is not None else e
        for e in base.effects
    )
    last = report.headline(replace(base, effects=effects))[-1]
    assert "Benjamini-Hochberg" in last
    assert "no segment effect is significant after adjustment" in last


def test_a_headline_metric_that_is_not_a_rate_is_not_in_percent() -> None:
    base = build_evaluation(metrics=("revenue", "conversion", "orders", "margin"))
    sentence = arm_sentence(report.headline(base), "pct_discount")
    est, low, high = (v / USERS["pct_discount"] for v in TOTALS["pct_discount"][1])
    assert sentence.startswith(
        f"The pct_discount arm raised revenue from 0.69 to {0.689 + est:.2f} "
        f"(+{est:.2f}, 95 % CI +{low:.2f} to +{high:.2f})"
    )
    assert "points" not in sentence.split(";")[0]


# -------------------------------------------------------------------------------- figures


def test_figures_have_the_expected_names_and_are_drawn(evaluation) -> None:
    figs = report.figures(evaluation)
    try:
        assert set(figs) == {
            "lift_by_arm_and_segment.png",
            "cuped_before_after.png",
            "cumulative_effect.png",
            "calibration.png",
            "totals.png",
        }
        (forest,) = figs["lift_by_arm_and_segment.png"].axes[:1]
        labels = [t.get_text() for t in forest.get_yticklabels()]
        assert len(labels) == len(ARMS) * (1 + len(SEGMENTS))
        assert labels[0] == "pct_discount · all users" and labels[1] == "pct_discount · high"
        # one interval per row, in points
        assert len(forest.lines) >= len(labels)
        cuped_panels = [a for a in figs["cuped_before_after.png"].axes if a.get_visible()]
        assert [a.get_title() for a in cuped_panels] == ["revenue", "margin"]  # not conversion
        assert "variance reduced 38 %" in cuped_panels[0].get_yticklabels()[0].get_text()
        # one panel per arm, each with its own curve and band
        panels = [a for a in figs["cumulative_effect.png"].axes if a.get_visible()]
        assert [a.get_title() for a in panels] == list(ARMS)
        for panel, arm in zip(panels, ARMS, strict=True):
            assert arm in {line.get_label() for line in panel.lines}
            assert len(panel.collections) == 1
        (calibration,) = figs["calibration.png"].axes
        assert len(calibration.lines) == 2  # the diagonal and one model
    finally:
        for fig in figs.values():
            report.close(fig)


def test_figures_without_data_are_left_out() -> None:
    bare = build_evaluation(cumulative=(), calibration=(), totals=())
    bare = replace(bare, effects=tuple(replace(e, cuped=None) for e in bare.effects))
    figs = report.figures(bare)
    assert set(figs) == {"lift_by_arm_and_segment.png"}
    report.close(figs["lift_by_arm_and_segment.png"])


# ----------------------------------------------------------------------------------- HTML


@pytest.fixture(scope="module")
def rendered(evaluation, tmp_path_factory) -> tuple[report.ReportFiles, str]:
    files = report.render_report(evaluation, tmp_path_factory.mktemp("report") / "out")
    return files, files.html.read_text(encoding="utf-8")


def test_the_page_is_self_contained_and_embeds_every_figure(rendered) -> None:
    files, page = rendered
    assert files.html.name == "report.html" and files.html.is_file()
    assert not re.search(r"https?://", page, flags=re.IGNORECASE)
    assert not re.search(r"<(script|link|iframe)\b", page, flags=re.IGNORECASE)
    sources = re.findall(r'<img[^>]*\bsrc="([^"]*)"', page)
    assert len(sources) == len(files.figures) == 5
    for source in sources:
        assert source.startswith("data:image/png;base64,")
    embedded = {base64.b64decode(s.split(",", 1)[1]) for s in sources}
    for name, path in files.figures.items():
        assert path.parent == files.html.parent and path.name == name
        png = path.read_bytes()
        assert png.startswith(b"\x89PNG") and png in embedded


def test_the_page_opens_with_the_headline(rendered, sentences) -> None:
    _, page = rendered
    body = page[page.index("<body>") :]
    first = body.index(report.html.escape(sentences[0]))
    assert first < body.index("<table") and first < body.index("<img")
    assert body.index('<section class="headline">') < body.index("<h2>")
    for sentence in sentences:
        assert report.html.escape(sentence) in page
    for section in ("Effects", "Figures", "Totals", "Model calibration", "Notes"):
        assert f"<h2>{section}</h2>" in page
    assert page.index("<footer>") > page.index("<h2>Notes</h2>")


def test_the_table_has_a_row_per_effect_and_lineage_is_in_the_footer(rendered, evaluation):
    _, page = rendered
    rows = re.findall(r"<tr class=\"[^\"]*\">", page.split("<h2>Totals</h2>")[0])
    assert len(rows) == len(evaluation.effects)
    assert page.count('<tr class="overall sig">') == 0  # overall effects have no adjusted p
    assert "+2.3 [+1.6, +3.0] pts" in page
    footer = page[page.index("<footer>") :]
    for value in ("snap-7f3a9c", "git:3f9e2c1", "sha256:ab12cd34", "4c0ffee0d15ea5e"):
        assert value in footer
    assert "labels snapshot" in footer and "s3://lake/flashsale/labels/bf-2025-11" in footer


def test_every_string_is_escaped(tmp_path: Path) -> None:
    hostile = build_evaluation(
        campaign_id="<script>alert('x')</script>",
        notes=("margin < cost & <b>bold</b>",),
        lineage={"code_version": '"><img src=x onerror=alert(1)>'},
    )
    page = report.render_report(hostile, tmp_path).html.read_text(encoding="utf-8")
    assert "<script>" not in page and "<b>bold" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "margin &lt; cost &amp; &lt;b&gt;bold&lt;/b&gt;" in page
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in page


def test_render_closes_every_figure_it_saved(evaluation, tmp_path, monkeypatch) -> None:
    closed = []
    monkeypatch.setattr(report, "close", lambda fig: closed.append(fig))
    files = report.render_report(evaluation, tmp_path / "nested" / "dir")
    assert len(closed) == len(files.figures) == 5


# ------------------------------------------------------------- review fixes (one test each)


def with_effects(base: CampaignEvaluation, change) -> CampaignEvaluation:
    """``base`` with ``change(effect)`` applied to every effect (it returns the new one)."""
    return replace(base, effects=tuple(change(e) for e in base.effects))


def test_segment_sentence_names_only_the_headline_metrics_segments_grouped_by_arm() -> None:
    # Hillstrom-like: most segments of every metric significant
    def significant(e: MetricEffect) -> MetricEffect:
        if e.segment == ALL_USERS or (e.arm, e.segment) == ("free_shipping", "mid"):
            return e
        return replace(e, adjusted_p_value=0.001)

    last = report.headline(with_effects(build_evaluation(), significant))[-1]
    assert "|" not in last
    assert (
        "significant on conversion after adjustment (adjusted p < 0.05): "
        "pct_discount in high (+4.1 points), mid (+2.1 points) and low (+1.2 points); "
        "free_shipping in high (+0.9 points) and low (+0.2 points); "
        "bundle in high (\u22121.1 points), mid (\u22120.6 points) and low (\u22120.4 points); "
        "orders, revenue and margin have significant segment effects too "
        "(see the table for the other metrics)."
    ) in last
    # the other metrics' segments are not spelled out
    assert "orders:" not in last and "revenue in" not in last
    assert last.count(" in high") == 3


def test_segment_sentence_points_to_the_table_when_only_other_metrics_have_segments() -> None:
    def others(e: MetricEffect) -> MetricEffect:
        if e.adjusted_p_value is None:
            return e
        return replace(e, adjusted_p_value=0.5 if e.metric == "conversion" else 0.01)

    last = report.headline(with_effects(build_evaluation(), others))[-1]
    assert "no segment effect on conversion is significant after adjustment" in last
    assert "orders, revenue and margin have significant segment effects too" in last
    assert "see the table for the other metrics" in last and "|" not in last
    # with only the headline metric significant, there is no pointer to the other metrics
    assert "other metrics" not in report.headline(build_evaluation())[-1]


@pytest.mark.parametrize(
    ("reduction", "text"),
    [
        (0.38, "38 %"),
        (0.0123, "1 %"),
        (0.006, "0.6 %"),
        (0.0004, "0.04 %"),
        (0.000996, "0.1 %"),
        (0.00004, "<0.01 %"),
        (0.0, "0 %"),
        (-0.0004, "\u22120.04 %"),
        (float("nan"), "n/a"),
    ],
)
def test_variance_reduction_below_one_percent_keeps_a_significant_digit(reduction, text):
    assert report._reduction_text(reduction) == text


def test_a_small_variance_reduction_is_not_printed_as_zero(tmp_path: Path) -> None:
    def tiny(e: MetricEffect) -> MetricEffect:
        if e.cuped is None:
            return e
        return replace(e, cuped=replace(e.cuped, variance_reduction=0.0004))

    evaluation = with_effects(build_evaluation(), tiny)
    page = report.render_html(evaluation, {})
    assert "<td>0.04 %</td>" in page and "<td>0 %</td>" not in page
    figs = report.figures(evaluation)
    try:
        panel = figs["cuped_before_after.png"].axes[0]
        assert "variance reduced 0.04 %" in panel.get_yticklabels()[0].get_text()
    finally:
        for fig in figs.values():
            report.close(fig)


def period_line(evaluation: CampaignEvaluation) -> str:
    page = report.render_html(evaluation, {})
    return re.search(r'<p class="period">(.*?)</p>', page).group(1)


def test_the_period_is_the_campaigns_and_omits_times_that_were_not_recorded() -> None:
    line = period_line(build_evaluation())
    assert line.startswith(
        "Campaign 2025-11-28 00:00 UTC to 2025-11-29 00:00 UTC; "
        "outcomes up to 2025-12-01 00:00 UTC; control arm: control"
    )
    assert "Sale" not in line
    # an external experiment without assignment times: everything at the epoch
    epoch = "1970-01-01T00:00:00+00:00"
    line = period_line(build_evaluation(start=epoch, end=epoch, outcome_end=epoch))
    assert line.startswith("Campaign times not recorded; control arm: control;")
    assert "1970" not in line and " to " not in line


def footer(evaluation: CampaignEvaluation) -> str:
    page = report.render_html(evaluation, {})
    return page[page.index("<footer>") :]


def test_the_lineage_shows_each_fact_once() -> None:
    base = build_evaluation()
    lineage = {"data_snapshot": "snap-7f3a9c", **base.lineage}
    text = footer(replace(base, lineage=lineage))
    assert text.count("<dt>data snapshot</dt>") == 1 and text.count("snap-7f3a9c") == 1
    assert text.count("<dt>") == 2 + len(base.lineage)
    # a lineage entry that says something else under the same name is still shown
    text = footer(replace(base, lineage={"data_snapshot": "snap-other"}))
    assert "snap-7f3a9c" in text and "snap-other" in text


def effect_cells(page: str, metric: str, arm: str, segment: str) -> list[str]:
    for row in re.findall(r'<tr class="[^"]*">(.*?)</tr>', page):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
        if cells[:3] == [metric, arm, segment]:
            return cells
    raise AssertionError(f"no row for {metric}, {arm}, {segment}")


def test_the_table_shows_the_bootstrap_interval_next_to_the_welch_one() -> None:
    base = build_evaluation()
    header = re.findall(r"<th[^>]*>(.*?)</th>", report.render_html(base, {}))
    column = header.index("bootstrap CI")
    assert header[column - 1] == "difference [CI]"

    def no_bootstrap(e: MetricEffect) -> MetricEffect:
        return replace(e, bootstrap=None) if e.metric == "orders" else e

    page = report.render_html(with_effects(base, no_bootstrap), {})
    cells = effect_cells(page, "conversion", "pct_discount", ALL_USERS)
    assert len(cells) == len(report.EFFECT_COLUMNS)
    assert cells[column - 1] == "+2.3 [+1.6, +3.0] pts"
    assert cells[column] == "[+1.6, +3.1] pts"  # bounds only, at the difference's decimals
    revenue = effect_cells(page, "revenue", "pct_discount", ALL_USERS)
    assert re.fullmatch(r"\[\+0\.\d\d, \+0\.\d\d\]", revenue[column])
    assert effect_cells(page, "orders", "pct_discount", ALL_USERS)[column] == ""
    assert "bootstrap CI: the same difference's bucket (Poisson) bootstrap interval" in page


def test_a_missing_roi_is_a_dash_and_a_zero_cost_never_gets_one() -> None:
    base = build_evaluation()
    totals = (
        replace(base.totals[0], roi=None),  # cost not distinguishable from control
        replace(base.totals[1], incentive_cost=0.0),  # a ROI over a zero cost: not shown
        base.totals[2],
    )
    evaluation = replace(base, totals=totals)
    page = report.render_html(evaluation, {})
    table = page[page.index("<h2>Totals</h2>") : page.index("<h2>Model calibration</h2>")]
    rows = [re.findall(r"<td[^>]*>(.*?)</td>", r) for r in re.findall(r"<tr>(.*?)</tr>", table)]
    rows = [row for row in rows if row]  # not the header
    assert [row[-1] for row in rows] == ["\u2014", "\u2014", "\u22121.83 [\u22123.67, 0.00]"]
    assert [row[-2] for row in rows] == ["3,900", "0", "600"]
    assert "per-user difference × users in the arm (Welch interval)" in table
    sentences = report.headline(evaluation)
    assert "at an incentive cost of 3,900 (no ROI given: see the notes)" in arm_sentence(
        sentences, "pct_discount"
    )
    flat = arm_sentence(sentences, "free_shipping")
    assert "ROI" not in flat and "incentive cost" not in flat


def test_the_lift_footnote_explains_why_it_can_disagree_with_the_difference(rendered) -> None:
    _, page = rendered
    note = re.search(r'<p class="muted note-lift">(.*?)</p>', page).group(1)
    assert "delta-method interval for the ratio of the means" in report.html.unescape(note)
    assert page.index("note-lift") < page.index("<h2>Figures</h2>")


def test_the_incentive_cost_legend_is_below_the_panels(evaluation) -> None:
    fig = report.totals_figure(evaluation)
    try:
        assert all(ax.get_legend() is None for ax in fig.axes)
        (legend,) = fig.legends
        assert [t.get_text() for t in legend.get_texts()] == ["incentive cost (margin panel)"]
    finally:
        report.close(fig)
