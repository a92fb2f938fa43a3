"""Run limits and run facts, pure: which limits a call would go past, what a downgrade leaves of a cascade,
and rules on `run.*` in routing and approvals."""

from __future__ import annotations

from routing.decide.approval_rules import ResultFacts, evaluate_approvals
from routing.decide.policy.document import load_policy
from routing.decide.router import DeploymentInfo, JobFacts, route
from routing.decide.runs import RunFacts, downgraded_cascade, limits_reached

POLICY = """
rules:
  - id: planner
    when: {run.role: planner}
    cascade: [flagship]
  - id: default
    cascade: [nano, mini, flagship]
approvals:
  - id: pricey-run
    when: {run.cost_usd: {gt: 1}}
  - id: runs-only
    when: {not: {run.role: {exists: true}}}
runs:
  max_calls: {limit: 10, on_limit: refuse}
  max_flagship_calls: {limit: 3, on_limit: downgrade}
  max_cost_usd: {limit: 0.5}
"""
SHARE = """
rules:
  - id: default
    cascade: [mini, flagship]
runs:
  max_flagship_share: {limit: 0.25, on_limit: downgrade}
"""
CATALOG = [DeploymentInfo("n", "nano"), DeploymentInfo("m", "mini"), DeploymentInfo("f", "flagship")]


def reached(run: RunFacts, *, wants_flagship: bool = True) -> list[tuple[str, str]]:
    runs = load_policy(POLICY).runs
    return [(limit.limit, limit.action) for limit in limits_reached(runs, run, wants_flagship=wants_flagship)]


def test_it_reaches_a_limit_when_the_run_already_has_that_many():
    assert reached(RunFacts(calls=9, flagship_calls=2, cost_usd=0.49)) == []
    assert reached(RunFacts(calls=10)) == [("max_calls", "refuse")]
    assert reached(RunFacts(flagship_calls=3)) == [("max_flagship_calls", "downgrade")]
    assert reached(RunFacts(cost_usd=0.5)) == [("max_cost_usd", "hold")]  # hold is the default action


def test_a_flagship_share_counts_the_calls_so_far_and_never_limits_a_runs_first_call():
    runs = load_policy(SHARE).runs

    def share(calls: int, flagship_calls: int) -> list[float]:
        facts = RunFacts(calls=calls, flagship_calls=flagship_calls)
        return [limit.observed for limit in limits_reached(runs, facts, wants_flagship=True)]

    assert share(0, 0) == []  # the planner's first call
    assert share(1, 1) == [1.0]
    assert share(4, 1) == [0.25]  # reached at the limit, like every limit
    assert share(5, 1) == []
    assert limits_reached(runs, RunFacts(calls=1, flagship_calls=1), wants_flagship=False) == ()


def test_the_flagship_limit_applies_only_to_a_call_that_could_reach_the_flagship():
    assert reached(RunFacts(flagship_calls=3), wants_flagship=False) == []


def test_a_downgrade_drops_the_flagship_and_leaves_mini_when_nothing_else_remains():
    assert downgraded_cascade(("nano", "mini", "flagship")) == ("nano", "mini")
    assert downgraded_cascade(("flagship",)) == ("mini",)


def test_route_rules_read_the_run_role_and_a_downgrade_is_explained():
    document = load_policy(POLICY)
    planner = route(JobFacts("general", run=RunFacts(role="planner")), document, CATALOG)
    assert planner.plan.rule_id == "planner" and [step.tier for step in planner.plan.steps] == ["flagship"]
    capped = route(JobFacts("general", run=RunFacts(role="planner"), run_downgrade=True), document, CATALOG)
    assert [step.tier for step in capped.plan.steps] == ["mini"] and capped.plan.downgraded
    assert any("run limit" in note for note in capped.to_record()["explanation"]["notes"])
    outside = route(JobFacts("general"), document, CATALOG)
    assert outside.plan.rule_id == "default"


def test_approval_rules_read_run_facts_and_a_call_outside_runs_has_none():
    document = load_policy(POLICY)

    def holds(run: RunFacts | None) -> list[str]:
        result = ResultFacts(job=JobFacts("general", run=run), tool_calls=(), final_confidence=0.9, final_tier="mini")
        return [hold["rule"] for hold in evaluate_approvals(document, result).to_record()["holds"]]

    assert holds(RunFacts(role="subagent", cost_usd=0.4)) == []
    assert holds(RunFacts(role="subagent", cost_usd=2)) == ["pricey-run"]
    assert holds(None) == ["runs-only"]
