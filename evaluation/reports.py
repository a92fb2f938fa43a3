"""What an evaluation page shows, read from the stored report: tables as rows, charts as SVG.

Reports are kept as their commands wrote them, and their shape has grown over time (`curve`,
`reliability`, `labels`, full re-execution figures): everything here reads with `.get` and leaves out
what an older row does not have, rather than failing on it.
"""

from __future__ import annotations

from typing import Any

from django.utils.safestring import SafeString

from routing.decide.tiers import tier_rank
from routing.models import Evaluation, EvaluationKind
from web import charts

FULL_RUN_FIGURES = ("cost_cap_usd", "spent_usd", "executed", "not_run_cost_cap", "stopped_at_cap", "input_erased")


def headline(evaluation: Evaluation) -> list[tuple[str, str]]:
    """The two or three figures a list shows for a record, as (label, text), from its `summary` (see
    evaluation.selectors.evaluation_summaries) when it has one, else from its report."""
    summary = getattr(evaluation, "summary", None)
    report = (summary if summary is not None else evaluation.report) or {}
    if evaluation.kind == EvaluationKind.EVAL:
        return [
            ("accuracy", _share(report.get("accuracy"))),
            ("relative cost", _times(report.get("relative_cost"))),
            ("items", str(report.get("items", "—"))),
        ]
    if evaluation.kind == EvaluationKind.CALIBRATION:
        thresholds = report.get("thresholds")
        held = report.get("holdout") or {}
        return [
            ("thresholds", _thresholds_text(thresholds) or "none"),
            ("certified", "yes" if report.get("certified") else "no"),
            ("held out", f"{_share(held.get('accuracy'))} at {_times(held.get('relative_cost'))}" if held else "—"),
        ]
    return [
        ("jobs", str(report.get("jobs", "—"))),
        ("changed", str(report.get("final_tier_changed", "—"))),
        ("cost delta", signed_usd((report.get("cost_usd") or {}).get("delta"))),
    ]


def signed_usd(delta: float | None) -> str:
    return "—" if delta is None else f"{'+' if delta >= 0 else '−'}{charts.usd(abs(delta))}"  # noqa: RUF001


def _share(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _times(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"  # noqa: RUF001


def figures(evaluation: Evaluation) -> dict[str, Any]:
    report = evaluation.report or {}
    if evaluation.kind == EvaluationKind.EVAL:
        return eval_figures(report)
    if evaluation.kind == EvaluationKind.CALIBRATION:
        return calibration_figures(report)
    return history_figures(report)


# ---------------------------------------------------------------- policy evaluation


def _comparison(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The policy beside its baselines, each a row with accuracy and cost."""
    rows = [{"name": "this policy", "policy": True, **_figures_of(report)}]
    flagship = report.get("flagship_only")
    if flagship:
        rows.append({"name": f"flagship only ({flagship.get('tier', 'top tier')})", **_figures_of(flagship)})
    for tier, figures_ in _by_tier(report.get("tier_only") or {}):
        if flagship and tier == flagship.get("tier"):
            continue
        rows.append({"name": f"{tier} alone", **_figures_of(figures_)})
    if report.get("oracle"):
        shares = report["oracle"].get("tier_share") or {}
        rows.append(
            {
                "name": "oracle (cheapest right tier per item)",
                "note": _shares_text(shares),
                **_figures_of(report["oracle"]),
            }
        )
    if report.get("random_mix"):
        mix = report["random_mix"]
        rows.append(
            {
                "name": "random mix (the policy's final-tier shares)",
                "note": _shares_text(mix.get("shares") or {}),
                **_figures_of(mix),
            }
        )
    return rows


def _figures_of(figures_: dict[str, Any]) -> dict[str, Any]:
    return {key: figures_.get(key) for key in ("accuracy", "relative_cost", "cost_usd", "mean_cost_usd")}


def _shares_text(shares: dict[str, float]) -> str:
    return ", ".join(f"{tier} {share * 100:.0f}%" for tier, share in sorted(shares.items(), key=lambda kv: -kv[1]))


def _curve(curve: list[dict[str, Any]] | None) -> dict[str, list[charts.XYPoint]]:
    """The curve as the chart draws it: the frontier as the line, the settings it dominates as points
    (a curve whose points do not say whether they are on the frontier is all line)."""
    entries = [entry for entry in curve or [] if isinstance(entry, dict)]
    marked = any("frontier" in entry for entry in entries)
    line = [entry for entry in entries if entry.get("frontier") or not marked]
    rest = [entry for entry in entries if marked and not entry.get("frontier")]
    return {"curve": _curve_points(line), "settings": _curve_points(rest, size=1.6)}


def _frontier(curve: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The curve's frontier settings, cheapest first, as table rows."""
    entries = [entry for entry in curve or [] if isinstance(entry, dict)]
    marked = any("frontier" in entry for entry in entries)
    return sorted(
        (
            {**entry, "thresholds": _by_tier(entry.get("thresholds") or {})}
            for entry in entries
            if entry.get("frontier") or not marked
        ),
        key=lambda entry: (entry.get("relative_cost") or 0, -(entry.get("accuracy") or 0)),
    )


def _curve_points(curve: list[dict[str, Any]], size: float = 2.5) -> list[charts.XYPoint]:
    points = []
    for entry in curve:
        if entry.get("relative_cost") is None or entry.get("accuracy") is None:
            continue
        thresholds = ", ".join(f"{tier} {value:g}" for tier, value in _by_tier(entry.get("thresholds") or {}))
        points.append(
            charts.XYPoint(
                entry["relative_cost"],
                entry["accuracy"],
                title=f"thresholds {thresholds or '—'}: accuracy {_share(entry['accuracy'])}, "
                f"cost {_times(entry['relative_cost'])}",
                size=2.5,
            )
        )
    return points


def _cost_quality_chart(report: dict[str, Any], rows: list[dict[str, Any]]) -> SafeString | None:
    plotted = [row for row in rows if row["accuracy"] is not None and row["relative_cost"] is not None]
    if not plotted and not report.get("curve"):
        return None
    policy = next((row for row in plotted if row.get("policy")), None)
    baselines = [(_short(row["name"]), row["relative_cost"], row["accuracy"]) for row in plotted if row is not policy]
    return charts.cost_quality(
        baselines,
        policy=(_short(policy["name"]), policy["relative_cost"], policy["accuracy"]) if policy else None,
        **_curve(report.get("curve")),
        width=1100,
        height=420,
    )


def _short(name: str) -> str:
    return name.split(" (")[0]


def _reliability(per_tier: dict[str, Any] | None) -> list[dict[str, Any]]:
    diagrams = []
    for tier, entry in _by_tier(per_tier or {}):
        entry = entry or {}
        diagrams.append(
            {
                "tier": tier,
                "ece": entry.get("ece"),
                "answers": entry.get("answers") or 0,
                "unbinned": entry.get("unbinned"),
                "note": entry.get("note"),
                "chart": charts.reliability_diagram(
                    entry.get("bins") or [],
                    title=f"{tier}: confidence against observed accuracy",
                    ece=entry.get("ece"),
                    answers=entry.get("answers") or 0,
                ),
            }
        )
    return diagrams


def _profile(profile: dict[str, Any] | None, tiers: list[str]) -> list[dict[str, Any]]:
    rows = []
    for task_type, entry in (profile or {}).items():
        per_tier = entry.get("tiers") or {}
        policy = entry.get("policy") or {}
        rows.append(
            {
                "task_type": task_type,
                "items": entry.get("items"),
                "tiers": [
                    (tier, (per_tier.get(tier) or {}).get("suffices"), (per_tier.get(tier) or {}).get("mean_cost_usd"))
                    for tier in tiers
                ],
                "cheapest": _shares_text(entry.get("cheapest_sufficient") or {}),
                "policy": policy
                and {
                    "accuracy": policy.get("accuracy"),
                    "mean_cost_usd": policy.get("mean_cost_usd"),
                    "finals": _shares_text(policy.get("final_tier_share") or {}),
                    "rules": ", ".join(sorted(policy.get("rules") or {})),
                },
            }
        )
    return rows


def eval_figures(report: dict[str, Any]) -> dict[str, Any]:
    rows = _comparison(report) if "accuracy" in report else []
    tiers = [tier for tier, _ in _by_tier(report.get("tier_only") or report.get("escalation_rate") or {})]
    calls = report.get("tier_calls") or {}
    escalation = report.get("escalation_rate") or {}
    finals = report.get("final_tier_share") or {}
    return {
        "comparison": rows,
        "chart": _cost_quality_chart(report, rows),
        "tiers": [
            {"tier": tier, "calls": calls.get(tier), "escalation": escalation.get(tier), "final": finals.get(tier)}
            for tier in tiers
        ],
        "reliability": _reliability(report.get("calibration")),
        "profile_tiers": tiers,
        "profile": _profile(report.get("profile"), tiers),
        "approvals": report.get("approvals_triggered") or {},
        "rules": sorted((report.get("rules") or {}).items(), key=lambda kv: -kv[1]),
        "frontier": _frontier(report.get("curve")),
    }


# ---------------------------------------------------------------- calibration


CHECKS = (
    ("accuracy", "accuracy", "share"),
    ("reference_accuracy", "reference tier's accuracy", "share"),
    ("relative_cost", "cost relative to the reference", "times"),
    ("saving", "saving", "share"),
    ("risk", "risk: wrong where the reference is right", "share"),
    ("risk_upper_bound", "risk, upper confidence bound", "share"),
    ("margin", "guarantee margin: accuracy vouched for above the target, share of items", "share"),
    ("items", "items", "count"),
)


def calibration_figures(report: dict[str, Any]) -> dict[str, Any]:
    """Three shapes: offline on recorded outcomes (thresholds per tier, expected and held-out figures),
    per rule (thresholds per rule, one offline calibration each, some rules skipped) and from live history
    (thresholds per rule, a certificate per rule and tier, the labels it learned from)."""
    expected, held = report.get("expected") or {}, report.get("holdout") or {}
    rules = report.get("rules")
    per_rule = rules if isinstance(rules, dict) else {}
    return {
        "thresholds": threshold_rows(report.get("thresholds")),
        "rules_calibrated": list(rules or []),
        "checks": _checks(expected, held),
        "expected_met": expected.get("target_met"),
        "holdout_met": held.get("target_met"),
        "calibration_parameters": report.get("parameters") or {},
        "chart": _calibration_chart(report),
        "per_rule": [
            {"rule": rule, "certified": entry.get("certified"), "reason": entry.get("reason"),
             "guarantee": entry.get("guarantee"), "thresholds": threshold_rows(entry.get("thresholds")),
             "checks": _checks(entry.get("expected") or {}, entry.get("holdout") or {})}
            for rule, entry in per_rule.items()
            if isinstance(entry, dict)
        ],
        "skipped": sorted((report.get("skipped") or {}).items()),
        "certificates": [entry for entry in report.get("certificates") or [] if isinstance(entry, dict)],
        "labels": label_rows(report.get("labels")),
        "reliability": _reliability(report.get("reliability")),
    }


def threshold_rows(thresholds: dict[str, Any] | None) -> list[dict[str, Any]]:
    """{tier: value} or {rule: {tier: value}} as rows of (rule, tier, value), cheapest tier first."""
    rows = []
    for key, value in (thresholds or {}).items():
        if isinstance(value, dict):
            rows += [{"rule": key, "tier": tier, "value": inner} for tier, inner in _by_tier(value)]
        else:
            rows.append({"rule": None, "tier": key, "value": value})
    return sorted(rows, key=lambda row: (row["rule"] or "", _tier_order(row["tier"])))


def _thresholds_text(thresholds: dict[str, Any] | None) -> str:
    """"nano 0.7, mini 0.75", or per rule "default: mini 0.7; cheap-first: nano 0.8, mini 0.7"."""
    groups: dict[str | None, list[str]] = {}
    for row in threshold_rows(thresholds):
        if isinstance(row["value"], (int, float)):
            groups.setdefault(row["rule"], []).append(f"{row['tier']} {row['value']:g}")
    return "; ".join((f"{rule}: " if rule else "") + ", ".join(values) for rule, values in groups.items())


def _checks(expected: dict[str, Any], held: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"label": label, "format": fmt, "expected": expected.get(key), "holdout": held.get(key)}
        for key, label, fmt in CHECKS
        if key in expected or key in held
    ]


LABEL_FACTS = (
    ("total", "labelled answers"),
    ("by_source", "by source"),
    ("by_outcome", "by verdict"),
    ("by_tier", "by tier"),
    ("unlabelled_reviews", "reviews that give no label"),
    ("shadow_superseded_by_review", "shadow labels a review overrode"),
)


def label_rows(labels: Any) -> list[tuple[str, str]]:
    """What a report says about the live labels it used, as (label, text); unknown keys as they are."""
    if not isinstance(labels, dict):
        return [] if labels in (None, "", [], {}) else [("labels", str(labels))]
    names = dict(LABEL_FACTS)
    ordered = [key for key, _ in LABEL_FACTS if key in labels] + sorted(set(labels) - set(names))
    return [(names.get(key, key.replace("_", " ")), _fact_text(labels[key])) for key in ordered]


def _fact_text(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{key.replace('_', ' ')} {item}" for key, item in value.items()) or "none"
    return str(value)


def _calibration_chart(report: dict[str, Any]) -> SafeString | None:
    """The certified point; the hindsight frontier of the calibration items (every grid setting, no
    guarantee) as the line; the target (target x the reference's accuracy) across the chart; and at the
    certified cost, the guarantee's margin: from the target up to the accuracy the test vouches for."""
    expected, held = report.get("expected") or {}, report.get("holdout") or {}
    policy = None
    if expected.get("accuracy") is not None and expected.get("relative_cost") is not None:
        policy = ("certified", expected["relative_cost"], expected["accuracy"])
    points = []
    if held.get("accuracy") is not None and held.get("relative_cost") is not None:
        points.append(("held out", held["relative_cost"], held["accuracy"]))
    reference = held or expected
    if reference.get("reference_accuracy") is not None:
        points.append(("reference alone", 1.0, reference["reference_accuracy"]))
    if policy is None and not points and not report.get("curve"):
        return None
    return charts.cost_quality(
        points,
        policy=policy,
        **_curve(report.get("curve")),
        guides=_guarantee_guides(report),
        width=560,
        height=320,
    )


def _guarantee_guides(report: dict[str, Any]) -> list[charts.XYSeries]:
    expected = report.get("expected") or {}
    target = (report.get("parameters") or {}).get("target_relative")
    reference = expected.get("reference_accuracy")
    if not isinstance(target, (int, float)) or not isinstance(reference, (int, float)):
        return []
    floor = target * reference
    curve = [entry for entry in report.get("curve") or [] if isinstance(entry, dict)]
    right = max([1.0, *(entry.get("relative_cost") or 0 for entry in curve)])
    guides = [
        charts.XYSeries(
            "target",
            [
                charts.XYPoint(0.0, floor, title=f"target: {target:g} x the reference's {_share(reference)}"),
                charts.XYPoint(right, floor, f"target {_share(floor)}"),
            ],
            line=True,
            labelled=True,
            style=4,
        )
    ]
    margin, cost = expected.get("margin"), expected.get("relative_cost")
    if isinstance(margin, (int, float)) and isinstance(cost, (int, float)) and report.get("certified"):
        vouched = floor + margin
        guides.append(
            charts.XYSeries(
                "margin",
                [
                    charts.XYPoint(cost, floor, title=f"target {_share(floor)}"),
                    charts.XYPoint(
                        cost, vouched, f"margin {margin * 100:.1f} pts",
                        title=f"vouched for at the confidence asked: accuracy >= {_share(vouched)}",
                    ),
                ],
                line=True,
                labelled=True,
                style=5,
            )
        )
    return guides


# ---------------------------------------------------------------- history replay


def history_figures(report: dict[str, Any]) -> dict[str, Any]:
    rates = report.get("escalation_rate") or {}
    original, draft = rates.get("original") or {}, rates.get("draft") or {}
    approvals = report.get("approvals") or {}
    held_original, held_draft = approvals.get("original_by_rule") or {}, approvals.get("draft_by_rule") or {}
    transitions = []
    for key, count in (report.get("final_tier_transitions") or {}).items():
        before, _, after = key.partition("->")
        transitions.append({"original": before, "draft": after, "count": count})
    curve = _curve(report.get("curve"))
    escalation = [
        {"tier": tier, "original": original.get(tier), "draft": draft.get(tier)}
        for tier in sorted(set(original) | set(draft), key=_tier_order)
    ]
    bars = [
        (f"{row['tier']} · {side}", row[key], _share(row[key]))
        for row in escalation
        for key, side in (("original", "original"), ("draft", "this version"))
        if row[key] is not None
    ]
    return {
        "transitions": transitions,
        "escalation": escalation,
        "escalation_chart": charts.horizontal_bars(
            bars, title="Escalation rate per tier, original and under this version", maximum=1.0
        ) if bars else None,
        "cost": report.get("cost_usd") or {},
        "cost_delta": signed_usd((report.get("cost_usd") or {}).get("delta")),
        "approvals": approvals,
        "holds_by_rule": [
            {"rule": rule, "original": held_original.get(rule, 0), "draft": held_draft.get(rule, 0)}
            for rule in sorted(set(held_original) | set(held_draft))
        ],
        "changes": report.get("changes") or [],
        "changes_cut": max(0, (report.get("final_tier_changed") or 0) - len(report.get("changes") or [])),
        "unknown_reasons": sorted((report.get("unknown_reasons") or {}).items(), key=lambda kv: -kv[1]),
        "full_run": {key: report[key] for key in FULL_RUN_FIGURES if key in report},
        "reliability": _reliability(report.get("reliability")),
        "labels": label_rows(report.get("labels")),
        "chart": charts.cost_quality(
            [], **curve, x_label="cost relative to what the jobs paid", width=1100, height=420
        ) if curve["curve"] else None,
    }


def _by_tier(per_tier: dict[str, Any]) -> list[tuple[str, Any]]:
    """A report's per-tier entries from the cheapest tier up (reports keep the order of --tiers)."""
    return sorted(per_tier.items(), key=lambda item: _tier_order(item[0]))


def _tier_order(tier: str) -> tuple[int, str]:
    rank = tier_rank(tier)
    return (99 if rank is None else rank), tier
