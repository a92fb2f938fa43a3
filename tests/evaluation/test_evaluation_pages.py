"""Evaluations in the UI: the list with each kind's headline figures, and a report per record — the policy
against its baselines with the cost/quality chart and reliability diagrams, a calibration's guarantee and
held-out check, a history replay's changes — from real reports, and from older rows that lack the newer
figures."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils.html import escape

from evaluation.history_runs import history_run
from evaluation.offline_runs import calibration_run, evaluation_inputs, evaluation_run
from modelserver.generate import generate_items
from routing.models import Evaluation, EvaluationKind
from tests.support.builders import catalog, replayable_history
from tests.support.evaluations import HAND_POLICY, SIM_TIERS, write_jsonl


@pytest.fixture
def inputs(db, tmp_path: Path):
    catalog()
    outcomes = write_jsonl(tmp_path / "outcomes.jsonl", list(generate_items(items=240, seed=11,
                                                                            tiers=("nano", "mini", "flagship"))))
    policy = tmp_path / "policy.yaml"
    policy.write_text(HAND_POLICY)
    return evaluation_inputs(outcomes=outcomes, tiers=SIM_TIERS, policy=str(policy))


@pytest.fixture
def evaluated(inputs) -> Evaluation:
    return evaluation_run(inputs=inputs, in_memory=True)[1]


@pytest.fixture
def calibrated(inputs, people) -> Evaluation:
    return calibration_run(inputs=inputs, target_relative=0.9, policy_name="calibrated-ui", author=people["admin"],
                           in_memory=True, holdout=0.3)[1]


@pytest.fixture
def replayed(db):
    draft, application, jobs = replayable_history()
    return history_run(version=draft, application=application.slug)[1], jobs


def text(response) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


def share(value: float) -> str:
    return f"{value * 100:.1f}%"


def test_the_list_shows_each_kind_with_its_headline_figures(as_user, evaluated, calibrated, replayed):
    history, _ = replayed
    page = text(as_user("auditor").get(reverse("evaluations")))
    report = evaluated.report
    assert f'href="/evaluations/{evaluated.pk}/"' in page
    assert f"accuracy</span> <strong>{share(report['accuracy'])}</strong>" in page
    assert f"relative cost</span> <strong>{report['relative_cost']:.2f}×</strong>" in page  # noqa: RUF001
    values = calibrated.report["thresholds"]
    thresholds = ", ".join(f"{tier} {values[tier]:g}" for tier in ("nano", "mini") if tier in values)
    assert f"thresholds</span> <strong>{thresholds}</strong>" in page
    assert "jobs</span> <strong>4</strong>" in page and "changed</span> <strong>1</strong>" in page
    version = history.policy_version
    assert f'<a href="/policies/{version.policy.name}/v{version.number}/">{version.policy.name} v2</a>' in page


def test_the_list_filters_by_kind_and_says_when_a_filter_is_wrong(as_user, evaluated, replayed):
    history, _ = replayed
    only_history = text(as_user("reviewer").get(reverse("evaluations"), {"kind": "history"}))
    assert f'href="/evaluations/{history.pk}/"' in only_history
    assert f'href="/evaluations/{evaluated.pk}/"' not in only_history
    wrong = text(as_user("reviewer").get(reverse("evaluations"), {"kind": "astrology"}))
    assert "Select a valid choice. astrology is not one of the available choices." in wrong


def test_the_list_pages_older_records_with_a_cursor(as_user, settings, db):
    settings.ARBITER_UI_PAGE_SIZE = 5
    records = [Evaluation.objects.create(kind=EvaluationKind.HISTORY, report={"jobs": n}) for n in range(7)]
    first = text(as_user("admin").get(reverse("evaluations")))
    shown = re.findall(r'href="/evaluations/(\d+)/"', first)
    assert shown == [str(record.pk) for record in reversed(records[2:])]
    more = re.search(r'hx-get="(/evaluations/\?after=[^"]+)"', first).group(1)
    rest = as_user("admin").get(more, HTTP_HX_REQUEST="true")
    assert "<html" not in rest.content.decode()
    assert re.findall(r'href="/evaluations/(\d+)/"', text(rest)) == [str(records[1].pk), str(records[0].pk)]


def test_an_eval_report_shows_the_policy_against_its_baselines(as_user, evaluated):
    page = text(as_user("auditor").get(reverse("evaluation", args=[evaluated.pk])))
    report = evaluated.report
    rows = re.findall(r'<th scope="row">([^<]+)</th> <td class="num">([^<]+)</td> <td class="num">([^<]+)</td>', page)
    table = {name: (accuracy, cost) for name, accuracy, cost in rows}
    assert table["this policy"] == (share(report["accuracy"]), f"{report['relative_cost']:.2f}×")  # noqa: RUF001
    assert table["flagship only (flagship)"] == (share(report["flagship_only"]["accuracy"]), "1.00×")  # noqa: RUF001
    for tier in ("nano", "mini"):
        assert table[f"{tier} alone"][0] == share(report["tier_only"][tier]["accuracy"])
    assert table["oracle (cheapest right tier per item)"][0] == share(report["oracle"]["accuracy"])
    assert table["random mix (the policy&#x27;s final-tier shares)"][0] == share(report["random_mix"]["accuracy"])
    for tier, rate in report["escalation_rate"].items():
        assert re.search(rf'tier-{tier}">{tier}</span></td><td class="num">\d+</td><td class="num">{share(rate)}', page)


def test_an_eval_report_draws_cost_against_quality_and_a_reliability_diagram_per_tier(as_user, evaluated):
    page = text(as_user("auditor").get(reverse("evaluation", args=[evaluated.pk])))
    chart = re.search(r"<svg[^>]*>(?:(?!</svg>).)*Accuracy against relative cost.*?</svg>", page).group(0)
    for label in ("this policy", "flagship only", "nano alone", "mini alone", "oracle", "random mix"):
        assert f">{label}</text>" in chart
    assert "style=" not in page
    for tier, reliability in evaluated.report["calibration"].items():
        assert f"{tier}: confidence against observed accuracy" in page
        assert f"ECE {reliability['ece']:.3f} over {reliability['answers']} answers" in page
    assert page.count('class="diagonal"') == 3
    assert page.count("accuracy equals confidence") == 3


def test_an_eval_report_shows_the_workload_profile(as_user, evaluated):
    page = text(as_user("reviewer").get(reverse("evaluation", args=[evaluated.pk])))
    profile = evaluated.report["profile"]
    assert "Workload profile" in page
    for task_type, entry in profile.items():
        suffices = entry["tiers"]["nano"]["suffices"]
        assert re.search(rf'<th scope="row">{task_type}</th> <td class="num">{entry["items"]}</td> '
                         rf'<td class="num">{suffices * 100:.0f}%</td>', page), task_type


def test_the_curve_is_drawn_as_its_frontier_line_over_the_other_settings_and_listed(as_user, evaluated):
    curve = evaluated.report["curve"]
    frontier = [point for point in curve if point["frontier"]]
    assert frontier and len(frontier) < len(curve)
    page = text(as_user("admin").get(reverse("evaluation", args=[evaluated.pk])))
    assert ">threshold curve</text>" in page and ">other threshold settings</text>" in page
    assert page.count('class="point s3 faint"') == len(curve) - len(frontier)
    assert f"The {len(frontier)} threshold settings on the line" in page
    cheapest = min(frontier, key=lambda point: point["relative_cost"])
    thresholds = " · ".join(
        f'<span class="tier tier-{tier}">{tier}</span> {cheapest["thresholds"][tier]}'
        for tier in ("nano", "mini") if tier in cheapest["thresholds"]
    )
    assert f"<tr><td>{thresholds}</td><td class=\"num\">{share(cheapest['accuracy'])}</td>" in page


def test_a_report_from_before_the_curve_has_no_curve(as_user, evaluated):
    older = Evaluation.objects.create(
        kind=EvaluationKind.EVAL, parameters=evaluated.parameters,
        report={key: value for key, value in evaluated.report.items() if key != "curve"},
    )
    page = text(as_user("admin").get(reverse("evaluation", args=[older.pk])))
    assert "Accuracy against relative cost" in page and ">threshold curve</text>" not in page


def test_a_curve_without_frontier_marks_is_all_line(as_user, evaluated):
    curve = [{"thresholds": {"nano": t, "mini": 0.7}, "relative_cost": 0.2 + t / 2, "accuracy": 0.6 + t / 4}
             for t in (0.1, 0.5, 0.9)]
    other = Evaluation.objects.create(kind=EvaluationKind.EVAL, report={**evaluated.report, "curve": curve})
    page = text(as_user("admin").get(reverse("evaluation", args=[other.pk])))
    assert ">threshold curve</text>" in page and "faint" not in page
    assert "thresholds nano 0.5, mini 0.7: accuracy 72.5%, cost 0.45×" in page  # noqa: RUF001


@pytest.mark.parametrize(
    ("kind", "report"),
    [
        (EvaluationKind.EVAL, {}),
        (EvaluationKind.EVAL, {"items": 0, "unroutable": 4, "errors": ["no rule matches"]}),
        (EvaluationKind.EVAL, {"items": 10, "accuracy": 0.8, "relative_cost": 0.5, "cost_usd": 0.01}),
        (EvaluationKind.CALIBRATION, {"certified": False, "thresholds": None, "reason": "too few items"}),
        (EvaluationKind.HISTORY, {"jobs": 3}),
        (EvaluationKind.HISTORY, {}),
    ],
)
def test_an_older_or_thinner_report_still_reads(as_user, db, kind, report):
    evaluation = Evaluation.objects.create(kind=kind, report=report)
    response = as_user("auditor").get(reverse("evaluation", args=[evaluation.pk]))
    assert response.status_code == 200
    assert f"Evaluation #{evaluation.pk}" in text(response)


def test_a_report_that_routed_nothing_says_so(as_user, db):
    evaluation = Evaluation.objects.create(kind=EvaluationKind.EVAL,
                                           report={"items": 0, "unroutable": 4, "errors": ["no rule matches"]})
    page = text(as_user("auditor").get(reverse("evaluation", args=[evaluation.pk])))
    assert "The policy routed none of the 4 items: no rule matches." in page


def test_a_calibration_shows_its_thresholds_guarantee_held_out_check_and_draft(as_user, calibrated):
    page = text(as_user("auditor").get(reverse("evaluation", args=[calibrated.pk])))
    report = calibrated.report
    assert report["certified"] and "Thresholds certified" in page
    for tier, value in report["thresholds"].items():
        assert f'tier-{tier}">{tier}</span></td><td class="num">{value}</td>' in page
    assert report["guarantee"].replace(">", "&gt;").replace("<", "&lt;") in page
    assert "Learn then Test" in page
    accuracy = report["holdout"]["accuracy"]
    assert re.search(rf'<th scope="row">accuracy</th> <td class="num">{share(report["expected"]["accuracy"])}</td>'
                     rf'<td class="num">{share(accuracy)}</td>', page)
    draft = calibrated.policy_version
    assert f'<a href="/policies/{draft.policy.name}/v{draft.number}/">{draft.policy.name} v{draft.number}</a>' in page


def test_the_calibration_chart_shows_the_certified_point_the_hindsight_frontier_and_the_margin(as_user, calibrated):
    report = calibrated.report
    expected, target = report["expected"], report["parameters"]["target_relative"]
    assert report["certified"] and expected["margin"] > 0
    frontier = [point for point in report["curve"] if point["frontier"]]
    assert frontier and any(point["certified"] for point in report["curve"])
    # The hindsight frontier is at least as good as the certified point at its cost: it had no test to pass.
    at_cost = [p["accuracy"] for p in frontier if p["relative_cost"] <= expected["relative_cost"] + 1e-9]
    assert max(at_cost) >= expected["accuracy"]
    page = as_user("auditor").get(reverse("evaluation", args=[calibrated.pk])).content.decode()
    chart = page[page.index('id="h-cq"'):]
    chart = chart[: chart.index("</section>")]
    floor = target * expected["reference_accuracy"]
    for name in ("certified", "threshold curve", "target", "margin"):
        assert f">{name}</text>" in chart, name
    assert f"margin {expected['margin'] * 100:.1f} pts" in chart
    assert f"accuracy &gt;= {floor + expected['margin']:.1%}" in chart
    assert chart.count("<polyline") >= 3  # the frontier, the target, the margin


def test_a_per_rule_calibration_shows_each_rules_thresholds_and_check(as_user, inputs, people):
    evaluation = calibration_run(inputs=inputs, target_relative=0.9, policy_name="per-rule-ui", author=people["admin"],
                                 in_memory=True, per_rule=True)[1]
    report = evaluation.report
    page = text(as_user("auditor").get(reverse("evaluation", args=[evaluation.pk])))
    assert "Per rule" in page
    for rule, entry in report["rules"].items():
        verdict = "certified" if entry["certified"] else "not certified"
        assert f'<h3><span class="tag">{rule}</span> {verdict}</h3>' in page
        for tier, value in (entry["thresholds"] or {}).items():
            assert f'<td><span class="tag">{rule}</span></td><td><span class="tier tier-{tier}">{tier}</span></td>' \
                   f'<td class="num">{value}</td>' in page
    for rule, why in report["skipped"].items():
        assert f'<li><span class="tag">{rule}</span> {why}</li>' in page
    listing = text(as_user("auditor").get(reverse("evaluations"), {"kind": "calibration"}))
    first_rule = sorted(rule for rule, values in report["thresholds"].items() if values)[0]
    assert f"<strong>{first_rule}: " in listing


def test_a_calibration_from_live_history_shows_its_certificates_and_labels(as_user, people, replayed):
    from evaluation.history_runs import live_calibration_run

    history, _ = replayed
    version = history.policy_version.parent
    _, evaluation, _ = live_calibration_run(version=version, target_relative=0.9, application=None,
                                            label_source="all", policy_name="live-ui", author=people["admin"])
    report = evaluation.report
    page = text(as_user("auditor").get(reverse("evaluation", args=[evaluation.pk])))
    assert "No threshold setting certified" in page and escape(report["reason"]) in page
    assert "Certificates per rule and tier" in page and report["certificates"]
    for certificate in report["certificates"]:
        rule, tier = certificate["rule"], certificate["tier"]
        assert f'<td><span class="tag">{rule}</span></td><td><span class="tier tier-{tier}">' in page
        assert escape(certificate["reason"]) in page
    assert "Labels from live history" in page and "<dt>labelled answers</dt><dd>2</dd>" in page


def test_a_history_replay_shows_what_would_change_with_links_to_the_jobs(as_user, replayed):
    history, jobs = replayed
    cheaper = jobs["cheaper"]
    page = text(as_user("reviewer").get(reverse("evaluation", args=[history.pk])))
    assert f'<a class="mono" href="/jobs/{cheaper.pk}/">{str(cheaper.pk)[:8]}</a>' in page
    assert re.search(r'tier-mini">mini</span></td><td><span class="tier tier-nano">nano</span></td>'
                     r'<td class="num">1</td>', page)
    assert "flagship was never called in the original" in page
    assert "Escalation rate per tier, original and under this version" in page
    cost = history.report["cost_usd"]
    assert f"−${abs(cost['delta']):.3f}" in page  # noqa: RUF001


def test_a_policy_admin_sees_the_changed_jobs_but_no_link_to_pages_they_cannot_open(as_user, replayed):
    history, jobs = replayed
    page = text(as_user("admin").get(reverse("evaluation", args=[history.pk])))
    assert f'href="/jobs/{jobs["cheaper"].pk}/"' not in page
    assert f'title="{jobs["cheaper"].pk}">{str(jobs["cheaper"].pk)[:8]}</span>' in page


def test_a_history_report_shows_its_live_labels_and_each_tiers_reliability_against_them(as_user, replayed):
    history, _ = replayed
    report = history.report
    assert report["labels"]["total"] == 2 and report["labels"]["by_source"] == {"review": 1, "shadow": 1}
    page = text(as_user("auditor").get(reverse("evaluation", args=[history.pk])))
    assert "Labels from live history" in page
    assert "<dt>labelled answers</dt><dd>2</dd>" in page and "<dt>by source</dt><dd>review 1, shadow 1</dd>" in page
    assert "<dt>by verdict</dt><dd>review right 1, shadow wrong 1</dd>" in page
    assert set(report["reliability"]) == {"nano", "flagship"}
    for tier, entry in report["reliability"].items():
        assert f"{tier}: confidence against observed accuracy" in page
        assert f"ECE {entry['ece']:.3f} over 1 answer" in page
    assert "<dt>Held originally</dt><dd>1</dd>" in page and "<dt>Held under this version</dt><dd>1</dd>" in page


def test_a_history_report_from_before_labels_reads_without_them(as_user, replayed):
    history, _ = replayed
    older = {key: value for key, value in history.report.items() if key not in ("labels", "reliability", "curve")}
    evaluation = Evaluation.objects.create(kind=EvaluationKind.HISTORY, report=older)
    page = text(as_user("auditor").get(reverse("evaluation", args=[evaluation.pk])))
    assert "Jobs that would change" in page and "Labels from live history" not in page
    assert 'class="diagonal"' not in page


def test_a_missing_record_is_a_404(as_user, db):
    assert as_user("auditor").get(reverse("evaluation", args=[987654321])).status_code == 404


def test_the_version_page_lists_the_evaluations_about_it(as_user, replayed):
    history, _ = replayed
    version = history.policy_version
    page = text(as_user("reviewer").get(reverse("policy-version", args=[version.policy.name, version.number])))
    assert f'<a href="/evaluations/{history.pk}/">#{history.pk}</a>' in page
    assert "jobs</span> <strong>4</strong>" in page and "changed</span> <strong>1</strong>" in page
    assert f'href="/evaluations/?version={version.pk}"' in page
    filtered = text(as_user("reviewer").get(reverse("evaluations"), {"version": version.pk}))
    assert re.findall(r'href="/evaluations/(\d+)/"', filtered) == [str(history.pk)]


def test_the_nav_links_to_evaluations_for_every_role_that_reads_policies(as_user, db):
    for persona in ("reviewer", "admin", "auditor"):
        assert 'href="/evaluations/"' in text(as_user(persona).get(reverse("dashboard")))
    assert as_user("outsider").get(reverse("dashboard")).status_code == 403


def test_the_list_costs_the_same_queries_for_more_rows(as_user, replayed, django_assert_max_num_queries):
    history, _ = replayed
    client = as_user("auditor")
    client.get(reverse("evaluations"))  # the session and the roles, read once
    with django_assert_max_num_queries(6) as few:
        client.get(reverse("evaluations"))
    for _ in range(8):
        Evaluation.objects.create(kind=EvaluationKind.HISTORY, report=history.report,
                                  policy_version=history.policy_version)
    with django_assert_max_num_queries(len(few.captured_queries)):
        client.get(reverse("evaluations"))
