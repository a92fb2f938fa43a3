import hashlib
import json

from routing.decide.approval_rules import ResultFacts, ToolCall, evaluate_approvals
from routing.decide.policy import load_policy
from routing.decide.router import JobFacts

POLICY = load_policy(
    """\
rules:
  - {id: default, cascade: [mini, flagship]}
approvals:
  - id: refunds-over-100
    when: {tool: issue_refund, args.amount: {gt: 100}}
    approvers: 2
    group: policy_admin
    expires_after: 4h
    on_expiry: reject
  - id: unsure-after-flagship
    when: {final_confidence: {lt: 0.5}, final_tier: flagship}
  - id: eu-pii
    when: {labels.pii: true}
    expires_after: 30m
    on_expiry: approve
  - id: expensive
    when: {cost_usd: {gte: 1}}
blocked_tools: [delete_database]
"""
)

JOB = JobFacts("general", tools=("issue_refund", "search", "delete_database"))


def decide(**result):
    return evaluate_approvals(POLICY, ResultFacts(job=result.pop("job", JOB), **result))


def test_a_clean_result_passes():
    decision = decide(
        tool_calls=(ToolCall("search", {"q": "x"}),), final_confidence=0.9, final_tier="mini", cost_usd=0.01
    )
    assert decision.outcome == "pass"
    assert decision.to_record() == {
        "outcome": "pass",
        "policy_sha256": POLICY.sha256,
        "blocked": [],
        "holds": [],
    }


def test_a_tool_call_condition_matches_one_call_with_both_name_and_arguments():
    decision = decide(tool_calls=(ToolCall("issue_refund", {"amount": 50}), ToolCall("search", {"amount": 500})))
    assert decision.holds == ()
    decision = decide(tool_calls=(ToolCall("issue_refund", {"amount": 50}), ToolCall("issue_refund", {"amount": 250})))
    (hold,) = decision.holds
    assert (hold.rule_id, hold.approvers, hold.group, hold.expires_after_s, hold.on_expiry) == (
        "refunds-over-100",
        2,
        "policy_admin",
        14400,
        "reject",
    )
    assert hold.tool_call_index == 1
    assert hold.reason == "tool call #1 'issue_refund': args.amount is 250, > 100; tool is 'issue_refund'"
    assert decision.outcome == "hold"


def test_tool_call_arguments_may_arrive_as_json_text():
    decision = decide(tool_calls=(("issue_refund", '{"amount": 101}'),))
    assert [hold.rule_id for hold in decision.holds] == ["refunds-over-100"]
    (hold,) = decide(tool_calls=(("issue_refund", "not json"),)).holds
    assert hold.rule_id == "refunds-over-100"
    assert hold.reason == (
        "tool call #0 'issue_refund': the tool call's arguments are not valid JSON: held because it cannot be evaluated"
    )


def test_a_rule_on_tool_calls_does_not_match_a_result_without_them():
    assert decide(tool_calls=()).holds == ()


def test_result_and_label_rules_hold():
    job = JobFacts("general", labels={"pii": True})
    decision = decide(job=job, final_confidence=0.4, final_tier="flagship", cost_usd=2.5)
    assert [(hold.rule_id, hold.reason) for hold in decision.holds] == [
        ("unsure-after-flagship", "final_confidence is 0.4, < 0.5; final_tier is 'flagship'"),
        ("eu-pii", "labels.pii is true"),
        ("expensive", "cost_usd is 2.5, >= 1"),
    ]
    assert decision.holds[1].expires_after_s == 1800 and decision.holds[1].on_expiry == "approve"


def test_a_missing_result_fact_never_holds():
    assert decide(final_confidence=None, final_tier="flagship").holds == ()


def test_tool_calls_outside_the_offered_tools_are_blocked():
    decision = decide(
        job=JobFacts("general", tools=("search",)), tool_calls=(ToolCall("search"), ToolCall("wire_money"))
    )
    assert decision.outcome == "blocked"
    # The name the model made up is never quoted: it may be a card number (see `to_record`).
    digest = hashlib.sha256(b"wire_money").hexdigest()
    assert [(b.tool_call_index, b.tool, b.reason) for b in decision.blocked] == [
        (
            1,
            "wire_money",
            f"tool call #1 <not offered> (sha256 {digest[:16]}) is not among the job's allowed tools ([search])",
        )
    ]
    assert decision.to_record()["blocked"] == [
        {"tool_call_index": 1, "tool": "<not offered>", "tool_sha256": digest, "reason": decision.blocked[0].reason}
    ]


def test_explicitly_allowed_tools_replace_the_offered_ones():
    decision = decide(
        job=JobFacts("general", tools=("search",)), tool_calls=(ToolCall("search"),), allowed_tools=("fetch",)
    )
    assert [b.tool for b in decision.blocked] == ["search"]


def test_a_job_without_tools_blocks_every_tool_call():
    decision = decide(job=JobFacts("general"), tool_calls=(ToolCall("search"),))
    assert decision.blocked[0].reason == (
        f"tool call #0 <not offered> (sha256 {hashlib.sha256(b'search').hexdigest()[:16]}) "
        "is not among the job's allowed tools (none)"
    )


def test_policy_blocked_tools_are_blocked_even_when_offered():
    decision = decide(tool_calls=(ToolCall("delete_database"),))
    assert [(b.tool, b.reason) for b in decision.blocked] == [
        ("delete_database", "tool 'delete_database' is blocked by the policy")
    ]
    # A name the policy lists is the policy author's, not the model's: recorded as it is.
    assert decision.to_record()["blocked"][0]["tool"] == "delete_database"


def test_the_decision_is_json_serialisable():
    decision = decide(
        job=JobFacts("general", tools=("issue_refund",), labels={"pii": True}),
        tool_calls=(ToolCall("issue_refund", {"amount": 1000}), ToolCall("rm")),
        final_confidence=0.2,
        final_tier="flagship",
    )
    record = decision.to_record()
    assert json.loads(json.dumps(record)) == record
    assert record["outcome"] == "blocked"
    assert [hold["rule"] for hold in record["holds"]] == [
        "refunds-over-100",
        "unsure-after-flagship",
        "eu-pii",
    ]


def test_rules_fail_closed_on_arguments_that_cannot_be_evaluated():
    cases = {
        '{"amount": "5000"}': "args.amount is a string ('5000'); the condition compares with a number",
        '{"amount": {"value": 5000}}': "args.amount is an object; the condition compares with a number",
        '{"amount": [5000]}': "args.amount is a list; the condition compares with a number",
        "{}": "args.amount is missing from the tool call",
        "[5000]": "the tool call's arguments are a list, not a JSON object",
        "null": "the tool call's arguments are null, not a JSON object",
        "5000": "the tool call's arguments are a number, not a JSON object",
        '"amount=5000"': "the tool call's arguments are a string, not a JSON object",
    }
    for arguments, why in cases.items():
        decision = decide(tool_calls=(("issue_refund", arguments),))
        assert decision.outcome == "hold", arguments
        (hold,) = decision.holds
        assert (hold.rule_id, hold.approvers, hold.group) == ("refunds-over-100", 2, "policy_admin")
        assert hold.reason == f"tool call #0 'issue_refund': {why}: held because it cannot be evaluated"


def test_a_call_that_matches_outright_is_the_reason_given_over_an_unknown_one():
    decision = decide(tool_calls=(("issue_refund", '{"amount": "x"}'), ("issue_refund", '{"amount": 500}')))
    (hold,) = decision.holds
    assert hold.tool_call_index == 1
    assert hold.reason == "tool call #1 'issue_refund': args.amount is 500, > 100; tool is 'issue_refund'"


def test_unknown_arguments_of_another_tool_hold_nothing():
    assert decide(tool_calls=(("search", "not json"), ("search", '{"amount": "5000"}'))).outcome == "pass"


def test_tool_calls_that_break_their_schema_are_held_for_one_reviewer():
    problem = "tool call #0 'search': the arguments do not match the tool's schema at q (type: \"string\")"
    decision = decide(tool_calls=(ToolCall("search", {"q": 5}),), invalid_calls=(problem,))
    (hold,) = decision.holds
    assert (hold.rule_id, hold.approvers, hold.group, hold.on_expiry) == (
        "invalid-tool-arguments",
        1,
        "reviewer",
        "reject",
    )
    assert hold.reason == f"the answer's tool calls do not match their tools' schemas: {problem}"


def test_a_hold_that_could_not_be_evaluated_never_approves_itself_on_expiry():
    # eu-pii approves on expiry when its condition held; a label of the wrong type is not that case.
    judged = decide(job=JobFacts("general", labels={"pii": True}))
    unjudged = decide(job=JobFacts("general", labels={"pii": "yes"}))
    assert [(hold.rule_id, hold.on_expiry) for hold in judged.holds] == [("eu-pii", "approve")]
    assert [(hold.rule_id, hold.on_expiry) for hold in unjudged.holds] == [("eu-pii", "reject")]
    assert unjudged.holds[0].reason.endswith("held because it cannot be evaluated")
