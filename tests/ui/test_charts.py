"""The SVG chart module: accessible, readable without colour, safe with any label."""

from __future__ import annotations

from controlplane import charts


def test_bars_carry_a_title_a_description_patterns_a_legend_and_totals():
    svg = charts.stacked_bars(["Mon", "Tue"], [charts.Series("nano", [1, 2]), charts.Series("mini", [0, 3])],
                              title="Spend")
    assert svg.startswith('<svg xmlns="http://www.w3.org/2000/svg" class="chart"')
    assert 'role="img"' in svg and ">Spend</title>" in svg and "Spend: Mon 1; Tue 5" in svg
    assert 'patternUnits="userSpaceOnUse"' in svg and svg.count("<pattern") == 2
    assert ">nano</text>" in svg and ">mini</text>" in svg and ">5</text>" in svg
    assert "style=" not in svg


def test_labels_are_escaped():
    svg = charts.horizontal_bars([("<script>", 0.5, "50%")], title="<b>x</b>")
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "&lt;b&gt;" in svg


def test_the_histogram_hatches_what_falls_below_the_threshold_and_labels_the_line():
    counts = [0] * 20
    counts[5], counts[18] = 4, 7
    svg = charts.histogram(counts, title="nano", threshold=0.8)
    assert "threshold 0.80" in svg and 'class="threshold"' in svg
    assert "11 scores · 4 below threshold" in svg
    assert "0.25\u20130.30: 4 (below threshold)" in svg and "0.90\u20130.95: 7</title>" in svg


def test_empty_charts_say_so():
    assert "No data in this window" in charts.line_chart([], [], title="Jobs")
    assert "No scores in this window" in charts.histogram([0] * 20, title="mini", threshold=0.7)


def test_axis_maxima_and_gridlines_are_round():
    assert [charts._nice_max(v) for v in (0.3, 3, 7, 12, 99, 101)] == [0.5, 5, 10, 20, 100, 200]
    assert charts._divisions(25) == 5 and charts._divisions(20) == 4


def test_the_confidence_meter_says_met_or_below_in_words():
    under = charts.confidence_meter(0.62, 0.8)
    assert "0.62 &lt; 0.80" in under and "below threshold" in under
    assert "0.90 ≥ 0.80" in charts.confidence_meter(0.9, 0.8)
    assert "no score" in charts.confidence_meter(None, 0.8)


def test_budget_bullets_mark_the_limits_and_say_over_in_words():
    svg = charts.budget_bullets([charts.Budget("Acme", 120, 50, 100), charts.Budget("Beta", 10, None, None)],
                                title="Budgets")
    assert "$120 — over" in svg and "$50.00 soft / $100 hard" in svg and "no limit" in svg
    assert 'class="limit soft"' in svg and 'class="limit hard"' in svg
