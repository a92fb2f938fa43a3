import json

import pytest

from routing.decide.policy import load_policy
from routing.decide.router import (
    FIRST_MATCH_GOVERNS,
    Constraints,
    DeploymentInfo,
    JobFacts,
    PlanStep,
    route,
    validate_against_catalog,
)

POLICY = load_policy(
    """\
rules:
  - id: cheap-extraction
    when: {task_type: [classification, extraction, ranking], input_tokens: {lte: 8000}}
    cascade: [nano, mini, flagship]
    escalate_below: {nano: 0.80, mini: 0.70}
    confidence: logprob
    limits: {max_output_tokens: 1024, timeout_s: 30}
    shadow: {rate: 0.05, tier: flagship}
  - id: eu-personal-data
    when: {labels.region: eu}
    deployments: {region: eu}
    cascade: [mini, flagship]
    escalate_below: {mini: 0.6}
  - id: judged
    when: {task_type: planning, labels.judge: true}
    cascade: [mini, flagship]
    confidence: {method: verifier, tier: flagship}
  - id: default
    cascade: [mini, flagship]
    escalate_below: {mini: 0.75}
budgets:
  on_hard_limit: downgrade
  downgrade_cascade: [nano]
"""
)

LOGPROBS_TOOLS = frozenset({"logprobs", "tools"})
CATALOG = (
    DeploymentInfo("nano-us", "nano", "us", LOGPROBS_TOOLS, True, 300.0, 0.1, 0.4),
    DeploymentInfo("nano-old", "nano", "us", frozenset(), True, 200.0, 0.05, 0.2),
    DeploymentInfo("mini-us", "mini", "us", LOGPROBS_TOOLS, True, 800.0, 0.4, 1.6),
    DeploymentInfo("mini-eu", "mini", "eu", LOGPROBS_TOOLS, True, 900.0, 0.4, 1.6),
    DeploymentInfo("mini-off", "mini", "us", LOGPROBS_TOOLS, False, 500.0, 0.4, 1.6),
    DeploymentInfo("flagship-us", "flagship", "us", LOGPROBS_TOOLS, True, 1800.0, 2.0, 8.0),
    DeploymentInfo("flagship-eu", "flagship", "eu", LOGPROBS_TOOLS, True, 2500.0, 2.5, 10.0),
)


def record(result):
    data = result.to_record()
    json.dumps(data, allow_nan=False)
    return data


def test_it_picks_the_first_matching_rule_and_builds_the_cascade():
    result = route(JobFacts("extraction", input_tokens=500), POLICY, CATALOG)
    plan = result.plan
    assert result.ok and result.error is None
    assert plan.rule_id == "cheap-extraction"
    assert plan.policy_sha256 == POLICY.sha256
    assert [step.tier for step in plan.steps] == ["nano", "mini", "flagship"]
    assert [step.escalate_below for step in plan.steps] == [0.8, 0.7, None]
    assert plan.steps[0].deployments == ("nano-us",)  # nano-old lacks logprobs and the rule has no fallback
    assert plan.steps[1].deployments == ("mini-us", "mini-eu")  # catalog order
    assert (plan.limits.max_output_tokens, plan.limits.timeout_s) == (1024, 30)
    assert (plan.shadow.rate, plan.shadow.tier, plan.shadow.deployments) == (
        0.05,
        "flagship",
        ("flagship-us", "flagship-eu"),
    )


def test_the_explanation_says_why_earlier_rules_did_not_match():
    result = route(JobFacts("planning", input_tokens=500), POLICY, CATALOG)
    assert result.plan.rule_id == "default"
    explanation = record(result)["explanation"]
    assert explanation["matched_rule"] == "default"
    assert explanation["rules_checked"] == [
        {
            "rule": "cheap-extraction",
            "matched": False,
            "reason": "task_type is 'planning', not in [classification, extraction, ranking]",
        },
        {"rule": "eu-personal-data", "matched": False, "reason": "labels.region is missing"},
        {"rule": "judged", "matched": False, "reason": "labels.judge is missing"},
        {"rule": "default", "matched": True, "reason": "no conditions"},
    ]
    assert explanation["first_match_governs"] == FIRST_MATCH_GOVERNS
    assert explanation["policy_sha256"] == POLICY.sha256


def test_no_rule_matched_is_an_error_result():
    policy = load_policy("rules:\n  - {id: only-coding, when: {task_type: coding}, cascade: [mini]}\n")
    result = route(JobFacts("planning"), policy, CATALOG)
    assert result.plan is None and not result.ok
    assert result.error == "no rule matched (1 rule checked)"
    assert record(result)["explanation"]["rules_checked"] == [
        {"rule": "only-coding", "matched": False, "reason": "task_type is 'planning', not 'coding'"}
    ]


def test_the_rules_deployment_constraints_bind():
    result = route(JobFacts("planning", labels={"region": "eu"}), POLICY, CATALOG)
    assert result.plan.rule_id == "eu-personal-data"
    assert [step.deployments for step in result.plan.steps] == [("mini-eu",), ("flagship-eu",)]
    skipped = {
        entry["deployment"]: entry["reasons"]
        for entry in record(result)["explanation"]["deployments_skipped"]
    }
    assert skipped["mini-us"] == ["region 'us' not in [eu]"]
    assert skipped["mini-off"] == ["disabled", "region 'us' not in [eu]"]


def test_deployments_over_the_latency_budget_are_skipped():
    facts = JobFacts("planning", constraints=Constraints(latency_budget_ms=1000))
    result = route(facts, POLICY, CATALOG)
    assert [step.tier for step in result.plan.steps] == ["mini"]
    explanation = record(result)["explanation"]
    skipped = {entry["deployment"]: entry["reasons"] for entry in explanation["deployments_skipped"]}
    assert skipped["flagship-us"] == ["p95 latency 1,800 ms over the job's latency budget 1,000 ms"]
    assert {"tier": "flagship", "reason": "no usable deployment"} in explanation["tiers_removed"]
    assert (
        "mini is the last usable tier: its answer is final, so its threshold 0.75 does not apply"
        in explanation["notes"]
    )
    assert result.plan.steps[-1].escalate_below is None


def test_deployments_over_the_cost_cap_are_skipped():
    facts = JobFacts("extraction", input_tokens=5000, constraints=Constraints(cost_cap_usd=0.005))
    result = route(facts, POLICY, CATALOG)
    assert [step.tier for step in result.plan.steps] == ["nano", "mini"]
    skipped = {e["deployment"]: e["reasons"] for e in record(result)["explanation"]["deployments_skipped"]}
    assert skipped["flagship-us"] == [
        "estimated cost $0.018192 (5,000 input tokens, up to 1,024 output) over the job's cost cap $0.005"
    ]


def test_tools_need_the_tools_capability():
    policy = load_policy("rules:\n  - {id: r, cascade: [nano], confidence: self_report}\n")
    result = route(JobFacts("general", tools=("search",)), policy, CATALOG)
    assert result.plan.steps[0].deployments == ("nano-us",)
    skipped = record(result)["explanation"]["deployments_skipped"]
    assert skipped == [
        {
            "deployment": "nano-old",
            "tier": "nano",
            "reasons": ["lacks capability tools (the job offers tools)"],
        }
    ]


def test_min_and_max_tier_remove_tiers():
    facts = JobFacts("extraction", constraints=Constraints(min_tier="mini", max_tier="mini"))
    result = route(facts, POLICY, CATALOG)
    assert [step.tier for step in result.plan.steps] == ["mini"]
    assert record(result)["explanation"]["tiers_removed"] == [
        {"tier": "nano", "reason": "below the job's min_tier mini"},
        {"tier": "flagship", "reason": "above the job's max_tier mini"},
    ]


def test_an_unknown_tier_constraint_is_ignored_with_a_note():
    result = route(JobFacts("planning", constraints=Constraints(min_tier="huge")), POLICY, CATALOG)
    assert [step.tier for step in result.plan.steps] == ["mini", "flagship"]
    assert "constraint min_tier 'huge' is not a known tier and was ignored" in result.explanation.notes


def test_a_matching_rule_that_cannot_be_served_is_an_error_and_does_not_fall_through():
    catalog = [d for d in CATALOG if d.region != "eu"]
    result = route(JobFacts("planning", labels={"region": "eu"}), POLICY, catalog)
    assert result.plan is None
    assert result.error == (
        "rule 'eu-personal-data' matched, but no deployment can serve any tier of its cascade "
        "[mini, flagship]; "
        "the first matching rule governs; later rules are not tried"
    )
    explanation = record(result)["explanation"]
    assert explanation["matched_rule"] == "eu-personal-data"
    assert [entry["tier"] for entry in explanation["tiers_removed"]] == ["mini", "flagship"]


def test_tier_constraints_that_leave_nothing_are_an_error():
    facts = JobFacts("planning", constraints=Constraints(min_tier="flagship", max_tier="mini"))
    result = route(facts, POLICY, CATALOG)
    assert result.plan is None
    assert result.error.startswith("rule 'default' matched, but no tier of its cascade [mini, flagship]")


def test_a_fallback_method_serves_deployments_without_logprobs():
    policy = load_policy(
        "rules:\n  - id: r\n    cascade: [nano, mini]\n"
        "    confidence: {method: logprob, fallback: self_report}\n"
    )
    catalog = [d for d in CATALOG if d.name != "nano-us"]
    result = route(JobFacts("general"), policy, catalog)
    nano, mini = result.plan.steps
    assert nano == PlanStep(
        "nano",
        ("nano-old",),
        0.7,
        "self_report",
        None,
        "no usable nano deployment returns logprobs, which logprob needs",
    )
    assert (mini.confidence_method, mini.confidence_fallback, mini.confidence_fallback_reason) == (
        "logprob",
        "self_report",
        None,
    )
    # With both kinds in a tier, the method stays and the fallback covers answers without logprobs.
    assert route(JobFacts("general"), policy, CATALOG).plan.steps[0].deployments == ("nano-us", "nano-old")


def test_the_rule_may_name_its_deployments_in_order_of_preference():
    policy = load_policy("rules:\n  - {id: r, cascade: [mini], deployments: {names: [mini-eu, mini-us]}}\n")
    result = route(JobFacts("general"), policy, CATALOG)
    assert result.plan.steps[0].deployments == ("mini-eu", "mini-us")
    skipped = record(result)["explanation"]["deployments_skipped"]
    assert skipped == [
        {
            "deployment": "mini-off",
            "tier": "mini",
            "reasons": ["disabled", "not in the rule's deployments [mini-eu, mini-us]"],
        }
    ]


def test_a_verifier_rule_plans_its_judge():
    result = route(JobFacts("planning", labels={"judge": True}), POLICY, CATALOG)
    assert result.plan.rule_id == "judged"
    assert result.plan.verifier.tier == "flagship"
    assert result.plan.verifier.deployments == ("flagship-us", "flagship-eu")
    catalog = [d for d in CATALOG if d.tier != "flagship"]
    result = route(JobFacts("planning", labels={"judge": True}), POLICY, catalog)
    assert result.error == "rule 'judged' uses the verifier method but no judge deployment is usable"


def test_the_budget_hard_limit_downgrades_or_rejects():
    result = route(JobFacts("planning", budget_hard_limit_reached=True), POLICY, CATALOG)
    assert result.plan.downgraded
    assert [step.tier for step in result.plan.steps] == ["nano"]
    assert result.plan.steps[0].escalate_below is None
    rejecting = load_policy("rules:\n  - {id: r, cascade: [mini]}\nbudgets: {on_hard_limit: reject}\n")
    result = route(JobFacts("planning", budget_hard_limit_reached=True), rejecting, CATALOG)
    assert result.error == "the application's budget hard limit is reached and the policy rejects new work"


def test_thresholds_escalate_strictly_below():
    step = PlanStep("nano", ("a",), 0.8, "logprob")
    assert step.accepts(0.8)
    assert not step.accepts(0.7999999999)
    assert PlanStep("flagship", ("b",), None, "logprob").accepts(0.0)


def test_routing_is_deterministic_and_recordable():
    facts = JobFacts("extraction", input_tokens=500, labels={"x": 1}, tools=("search",))
    first, second = route(facts, POLICY, CATALOG), route(facts, POLICY, CATALOG)
    assert first == second
    assert record(first) == record(second)
    assert record(first)["plan"]["steps"][0] == {
        "tier": "nano",
        "deployments": ["nano-us"],
        "escalate_below": 0.8,
        "confidence_method": "logprob",
        "confidence_fallback": None,
        "confidence_fallback_reason": None,
    }


@pytest.mark.parametrize(
    "facts",
    [
        JobFacts(None, input_tokens="many", complexity="hard"),  # type: ignore[arg-type]
        JobFacts("general", input_tokens=-5, labels=None, metadata=None, tools=None),  # type: ignore[arg-type]
        JobFacts("general", constraints=None),  # type: ignore[arg-type]
        JobFacts("general", constraints=Constraints(latency_budget_ms="fast", cost_cap_usd=float("nan"))),  # type: ignore[arg-type]
        JobFacts("general", input_tokens=10**400, complexity=float("inf")),
    ],
)
def test_odd_facts_never_raise(facts):
    result = route(facts, POLICY, CATALOG)
    record(result)


# ---------------------------------------------------------------- against the catalog


def test_validate_against_catalog_finds_logprob_deployments_missing():
    policy = load_policy("rules:\n  - id: r\n    cascade: [nano, mini]\n    confidence: logprob\n")
    errors = validate_against_catalog(policy, CATALOG)
    assert [(e.path, e.line) for e in errors] == [("rules[0].confidence", 4)]
    assert errors[0].message.startswith("deployment 'nano-old' (nano) does not return logprobs")
    declared = load_policy(
        "rules:\n  - id: r\n    cascade: [nano, mini]\n"
        "    confidence: {method: logprob, fallback: self_report}\n"
    )
    assert validate_against_catalog(declared, CATALOG) == []


def test_validate_against_catalog_finds_tiers_without_deployments():
    policy = load_policy(
        "rules:\n  - id: r\n    cascade: [nano, mini]\n    deployments: {region: eu}\n"
        "    confidence: self_report\n    shadow: {rate: 0.1, tier: nano}\n"
        "budgets: {downgrade_cascade: [nano]}\n"
    )
    errors = validate_against_catalog(policy, [d for d in CATALOG if d.tier != "nano"])
    assert [(e.path, e.message) for e in errors] == [
        (
            "rules[0].cascade[0]",
            "no enabled nano deployment meets the rule's deployment constraints (region eu)",
        ),
        ("rules[0].shadow.tier", "no enabled nano deployment for shadow calls"),
        ("budgets.downgrade_cascade[0]", "no enabled nano deployment"),
    ]
    assert errors[0].line == 3


def test_validate_against_catalog_checks_the_judge():
    errors = validate_against_catalog(POLICY, [d for d in CATALOG if d.tier != "flagship"])
    assert ("rules[2].confidence", "no enabled flagship deployment can act as the verifier") in [
        (e.path, e.message) for e in errors
    ]
