"""The approval page's *Stock and discount* section (``steps.demand.render_stock_markdown``):
what a campaign manager reads before approving, as Markdown."""

from __future__ import annotations

import math

import pandas as pd

from flashsale_ml.steps.demand import render_stock_markdown


def section(**overrides) -> dict:
    values = {
        "available": True,
        "model": "flashsale-demand/3",
        "skus": 12,
        "plan_depth": 0.2,
        "expected_units_p50": 1234.4,
        "service_level": 0.9,
        "stock_to_hold": 2500,
        "shortfall_units": 40,
        "skus_recommending_other_depth": 1,
    }
    return values | overrides


def table(rows: int, on_hand: bool = True) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "item_id": range(1000, 1000 + rows),
            "p10": [float(i) for i in range(rows)],
            "p50": [10.0 * i + 0.4 for i in range(rows)],
            "p90": [30.0 * i + 5 for i in range(rows)],
            "quantity": [30 * i + 5 for i in range(rows)],
            "recommended_depth": [0.2] * rows,
            "expected_margin": [1500.6] * rows,
        }
    )
    if on_hand:
        frame["on_hand"] = [float(5 * i) for i in range(rows)]
        frame["on_hand"] = frame["on_hand"].astype(float)
        frame.loc[0, "on_hand"] = math.nan  # not known for one SKU
        frame["shortfall"] = (frame["quantity"] - frame["on_hand"]).clip(lower=0)
    return frame


def table_rows(markdown: str) -> list[list[str]]:
    lines = [line for line in markdown.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def test_the_totals_the_biggest_skus_first_and_blank_cells_where_unknown() -> None:
    text = render_stock_markdown(section(), table(12), top=10)
    assert "## Stock and discount" in text
    assert "`flashsale-demand/3` for 12 SKUs at the plan's depth 20%: 1,234 units" in text
    assert "**2,500 units**; 40 to bring in where a SKU has less on hand." in text
    assert "1 SKU would earn more margin at another depth" in text
    assert "Top 10 of 12 SKUs by P50:" in text
    header, *body = table_rows(text)
    assert header == [
        "SKU", "P10", "P50", "P90", "stock to hold", "on hand", "to bring in", "best depth",
        "margin at best depth",
    ]  # fmt: skip
    assert len(body) == 10
    assert [row[0] for row in body] == [str(1000 + i) for i in range(11, 1, -1)]
    assert body[0] == ["1011", "11", "110", "335", "335", "55", "280", "20%", "1,501"]
    # numbers are right-aligned in the rendered table
    assert "|---|--:|--:|--:|--:|--:|--:|--:|--:|" in text


def test_an_unknown_stock_on_hand_is_a_blank_cell_not_nan() -> None:
    text = render_stock_markdown(section(), table(3), top=10)
    last = table_rows(text)[-1]
    assert last[0] == "1000" and last[5] == "" and last[6] == ""
    assert "nan" not in text.lower()
    assert "Top" not in text  # every SKU shown: no cut to announce


def test_plural_and_the_all_at_plan_depth_wording() -> None:
    assert "3 SKUs would earn more" in render_stock_markdown(
        section(skus_recommending_other_depth=3), table(2), top=10
    )
    none_other = render_stock_markdown(
        section(skus_recommending_other_depth=0, shortfall_units=0), table(2), top=10
    )
    assert "Every SKU earns its highest expected margin at the plan's depth." in none_other
    assert "to bring in where" not in none_other
    assert "**2,500 units**." in none_other


def test_without_a_forecast_the_section_says_why() -> None:
    text = render_stock_markdown({"available": False, "why": "no demand champion"}, None)
    assert "Not planned: no demand champion." in text
