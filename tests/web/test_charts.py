"""The SVG chart module: accessible, readable without colour, safe with any label."""

from __future__ import annotations

import re

from web import charts


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


def test_the_cost_quality_chart_labels_every_point_and_tells_series_apart_by_shape():
    svg = charts.cost_quality(
        [("flagship only", 1.0, 0.86), ("nano alone", 0.05, 0.5), ("<oracle>", 0.35, 0.93)],
        policy=("this policy", 0.63, 0.84),
        curve=[charts.XYPoint(0.3, 0.7, title="nano 0.5"), charts.XYPoint(0.6, 0.82, title="nano 0.8")],
    )
    assert ">this policy</text>" in svg and ">nano alone</text>" in svg and "&lt;oracle&gt;" in svg
    assert "<circle" in svg and "<rect" in svg and "<polygon" in svg  # policy, baselines, curve: three shapes
    assert 'class="xy-line s2"' in svg and "<title>nano 0.8</title>" in svg
    assert ">cost relative to the flagship alone</text>" in svg and ">accuracy</text>" in svg
    assert "this policy: 0.63×, 84%" in svg  # noqa: RUF001 - every point says where it is
    assert "style=" not in svg


def test_the_reliability_diagram_has_the_diagonal_bins_sized_by_count_and_the_ece_in_words():
    bins = [
        {"lower": 0.5, "upper": 0.6, "count": 10, "mean_confidence": 0.55, "accuracy": 0.3},
        {"lower": 0.9, "upper": 1.0, "count": 40, "mean_confidence": 0.95, "accuracy": 0.9},
    ]
    svg = charts.reliability_diagram(bins, title="nano", ece=0.0871, answers=50)
    assert 'class="diagonal"' in svg and "accuracy equals confidence" in svg
    assert "ECE 0.087 over 50 answers" in svg
    assert "confidence 0.5–0.6: 10 answers, mean confidence 0.55, right 30%" in svg  # noqa: RUF001
    radii = [float(r) for r in re.findall(r'<circle cx="[\d.]+" cy="[\d.]+" r="([\d.]+)"', svg)]
    assert radii[0] < radii[1]  # the bin with more answers is the bigger point
    assert "style=" not in svg


def test_an_xy_chart_with_nothing_to_plot_says_so():
    assert "Nothing to plot" in charts.reliability_diagram([], title="mini", ece=None, answers=0)
