from enum import StrEnum
from types import SimpleNamespace

import pytest

from routing.decide.policy.compiler import ConditionError, compile_when
from routing.decide.policy.fields import SCOPE_APPROVAL, SCOPE_ROUTE
from routing.decide.policy.matcher import RuleMatcher
from routing.decide.policy.values import Unreadable
from routing.decide.router import Constraints, JobFacts

JOB = JobFacts(
    task_type="planning",
    input_tokens=12_000,
    complexity=0.42,
    application="acme-support",
    labels={"pii": True, "region": "eu", "score": 3, "nothing": None},
    constraints=Constraints(latency_budget_ms=1_000, min_tier="mini"),
    metadata={"team": {"name": "core", "members": ["ana", "bo"]}, "priority": 2},
    tools=("search", "issue_refund"),
)


def compiled(when, scope=SCOPE_ROUTE):
    condition, errors = compile_when(when, scope=scope, path=("when",))
    assert errors == [], errors
    return condition


def explain(when, facts=JOB, scope=SCOPE_ROUTE):
    return compiled(when, scope).explain(facts)


def compile_errors(when, scope=SCOPE_ROUTE):
    return compile_when(when, scope=scope, path=("when",))[1]


@pytest.mark.parametrize(
    ("when", "held", "reason"),
    [
        ({"task_type": "planning"}, True, "task_type is 'planning'"),
        ({"task_type": "coding"}, False, "task_type is 'planning', not 'coding'"),
        ({"task_type": {"eq": "coding"}}, False, "task_type is 'planning', not 'coding'"),
        (
            {"task_type": ["classification", "extraction", "ranking"]},
            False,
            "task_type is 'planning', not in [classification, extraction, ranking]",
        ),
        (
            {"task_type": {"in": ["planning", "coding"]}},
            True,
            "task_type is 'planning', in [planning, coding]",
        ),
        ({"task_type": {"ne": "coding"}}, True, "task_type is 'planning', not 'coding'"),
        ({"task_type": {"ne": "planning"}}, False, "task_type is 'planning', which the condition excludes"),
        ({"task_type": {"not_in": ["coding"]}}, True, "task_type is 'planning', not in [coding]"),
        (
            {"task_type": {"not_in": ["planning", "coding"]}},
            False,
            "task_type is 'planning', in [planning, coding]",
        ),
        ({"input_tokens": {"lte": 8000}}, False, "input_tokens is 12,000, not <= 8,000"),
        ({"input_tokens": {"lte": 12000}}, True, "input_tokens is 12,000, <= 12,000"),
        ({"input_tokens": {"lt": 12000}}, False, "input_tokens is 12,000, not < 12,000"),
        ({"input_tokens": {"gt": 12000}}, False, "input_tokens is 12,000, not > 12,000"),
        ({"input_tokens": {"gte": 12000}}, True, "input_tokens is 12,000, >= 12,000"),
        ({"complexity": {"gt": 0.4}}, True, "complexity is 0.42, > 0.4"),
        ({"input_tokens": 12000.0}, True, "input_tokens is 12,000"),
        ({"application": {"matches": "acme-*"}}, True, "application is 'acme-support', matches 'acme-*'"),
        (
            {"application": {"matches": "ACME-*"}},
            False,
            "application is 'acme-support', does not match 'ACME-*'",
        ),
        ({"labels.pii": {"exists": True}}, True, "labels.pii is present (true)"),
        ({"labels.pii": {"exists": False}}, False, "labels.pii is present (true) but must be absent"),
        ({"labels.absent": {"exists": False}}, True, "labels.absent is absent"),
        ({"labels.absent": {"exists": True}}, False, "labels.absent is missing"),
        ({"labels.pii": True}, True, "labels.pii is true"),
        ({"labels.region": "eu"}, True, "labels.region is 'eu'"),
        ({"metadata.team.name": "core"}, True, "metadata.team.name is 'core'"),
        ({"metadata.team.members.1": "bo"}, True, "metadata.team.members.1 is 'bo'"),
        ({"metadata.team.members.7": "bo"}, False, "metadata.team.members.7 is missing"),
        (
            {"constraints.latency_budget_ms": {"lt": 2000}},
            True,
            "constraints.latency_budget_ms is 1,000, < 2,000",
        ),
        ({"constraints.min_tier": {"gte": "mini"}}, True, "constraints.min_tier is 'mini', >= 'mini'"),
        ({"constraints.min_tier": {"gt": "mini"}}, False, "constraints.min_tier is 'mini', not > 'mini'"),
        ({"constraints.min_tier": {"lt": "flagship"}}, True, "constraints.min_tier is 'mini', < 'flagship'"),
        ({"constraints.max_tier": {"lt": "flagship"}}, False, "constraints.max_tier is missing"),
    ],
)
def test_each_operator_decides_and_says_why(when, held, reason):
    assert explain(when) == (held, reason)


@pytest.mark.parametrize("op", ["eq", "ne", "in", "not_in", "lt", "lte", "gt", "gte", "matches"])
def test_a_missing_field_never_matches(op):
    operand = {"in": [1], "not_in": [1], "matches": "*"}.get(op, 1)
    held, reason = explain({"labels.absent": {op: operand}})
    assert (held, reason) == (False, "labels.absent is missing")
    held, _ = explain({"labels.nothing": {op: operand}})  # a None value counts as missing
    assert held is False


@pytest.mark.parametrize(
    ("when", "reason"),
    [
        (
            {"labels.region": {"gt": 3}},
            "type mismatch: labels.region is 'eu' (a string), the condition compares with a number",
        ),
        (
            {"labels.score": "3"},
            "type mismatch: labels.score is 3 (a number), the condition compares with a string",
        ),
        (
            {"labels.score": {"ne": "3"}},
            "type mismatch: labels.score is 3 (a number), the condition compares with a string",
        ),
        (
            {"labels.pii": 1},
            "type mismatch: labels.pii is true (a boolean), the condition compares with a number",
        ),
        (
            {"labels.score": {"matches": "3*"}},
            "type mismatch: labels.score is 3 (a number), the condition compares with a string pattern",
        ),
        (
            {"metadata.team": "core"},
            "type mismatch: metadata.team is <dict> (a dict), the condition compares with a string",
        ),
    ],
)
def test_a_type_mismatch_does_not_match_and_says_so(when, reason):
    assert explain(when) == (False, reason)


def test_booleans_are_not_numbers():
    facts = JobFacts("general", labels={"flag": True, "one": 1})
    assert explain({"labels.flag": True}, facts)[0] is True
    assert explain({"labels.flag": 1}, facts)[0] is False
    assert explain({"labels.one": True}, facts)[0] is False
    assert explain({"labels.one": 1.0}, facts)[0] is True


def test_a_value_of_an_unknown_type_is_present_but_equal_to_nothing():
    facts = JobFacts("general", labels={"odd": [1, 2]})
    assert explain({"labels.odd": {"exists": True}}, facts)[0] is True
    for when in ({"labels.odd": 1}, {"labels.odd": {"ne": 1}}, {"labels.odd": {"lt": 5}}):
        assert explain(when, facts)[0] is False


def test_nan_compares_with_nothing():
    facts = JobFacts("general", complexity=float("nan"))
    assert explain({"complexity": {"lt": 0.5}}, facts) == (
        False,
        "complexity is nan, not comparable with 0.5",
    )
    assert explain({"complexity": {"gte": 0.5}}, facts)[0] is False


def test_an_unknown_tier_in_the_facts_is_not_ordered():
    facts = JobFacts("general", constraints=Constraints(min_tier="huge"))
    assert explain({"constraints.min_tier": {"gte": "nano"}}, facts) == (
        False,
        "constraints.min_tier is 'huge', not a known tier (nano, mini, flagship)",
    )


def test_subclasses_of_str_and_int_are_read_as_their_values():
    class Task(StrEnum):
        PLANNING = "planning"

    facts = JobFacts(Task.PLANNING, labels={"n": True})
    assert explain({"task_type": "planning"}, facts)[0] is True


def test_constraints_may_be_a_mapping():
    facts = JobFacts("general", constraints={"max_tier": "mini"})  # type: ignore[arg-type]
    assert explain({"constraints.max_tier": {"lte": "mini"}}, facts)[0] is True


@pytest.mark.parametrize(
    ("when", "held", "reason"),
    [
        ({"tools": "search"}, True, "a tool in [search] is offered (tools: [search, issue_refund])"),
        (
            {"tools": ["browse", "fetch"]},
            False,
            "no tool in [browse, fetch] is offered (tools: [search, issue_refund])",
        ),
        (
            {"tools": {"not_in": ["delete"]}},
            True,
            "no tool in [delete] is offered (tools: [search, issue_refund])",
        ),
        ({"tools": {"ne": "search"}}, False, "a tool in [search] is offered (tools: [search, issue_refund])"),
        (
            {"tools": {"matches": "issue_*"}},
            True,
            "an offered tool matches 'issue_*' (tools: [search, issue_refund])",
        ),
        ({"tools": {"exists": True}}, True, "tools offered: [search, issue_refund]"),
    ],
)
def test_tools_conditions_read_the_offered_tools(when, held, reason):
    assert explain(when) == (held, reason)


def test_no_tools_offered():
    facts = JobFacts("general")
    assert explain({"tools": {"exists": False}}, facts) == (True, "tools offered: none")
    assert explain({"tools": "search"}, facts)[0] is False


def test_all_conditions_must_hold_and_the_first_failure_is_reported_in_field_order():
    when = {"task_type": "coding", "input_tokens": {"lte": 8000}}
    # input_tokens sorts before task_type, whatever the order in the document.
    assert explain(when) == (False, "input_tokens is 12,000, not <= 8,000")
    assert explain(dict(reversed(when.items()))) == (False, "input_tokens is 12,000, not <= 8,000")
    assert explain({"task_type": "planning", "labels.pii": True}) == (
        True,
        "labels.pii is true; task_type is 'planning'",
    )


def test_an_empty_when_always_holds():
    assert explain({}) == (True, "no conditions")


def test_combinators():
    assert explain({"any": [{"task_type": "coding"}, {"labels.region": "eu"}]}) == (
        True,
        "any: labels.region is 'eu'",
    )
    assert explain({"any": [{"task_type": "coding"}, {"labels.region": "us"}]}) == (
        False,
        "none of any held: task_type is 'planning', not 'coding' | labels.region is 'eu', not 'us'",
    )
    assert explain({"all": [{"task_type": "planning"}, {"labels.region": "us"}]}) == (
        False,
        "all: labels.region is 'eu', not 'us'",
    )
    assert explain({"not": {"task_type": "coding"}}) == (True, "not (task_type is 'planning', not 'coding')")
    assert explain({"not": {"task_type": "planning"}}) == (False, "not (task_type is 'planning')")


def test_approval_fields_read_one_tool_call():
    condition = compiled({"tool": "issue_refund", "args.amount": {"gt": 100}, "args.lines.0.sku": "A1"}, SCOPE_APPROVAL)
    assert condition.per_call
    call = SimpleNamespace(name="issue_refund", args={"amount": 150, "lines": [{"sku": "A1"}]})
    context = SimpleNamespace(job=JOB, call=call, final_confidence=0.9, final_tier="mini", cost_usd=0.01)
    assert condition.holds(context)
    context.call = SimpleNamespace(name="issue_refund", args={"amount": 50})
    assert condition.explain(context) == (False, "args.amount is 50, not > 100")
    context.call = None
    assert condition.explain(context) == (False, "args.amount is missing")


def test_approval_result_fields():
    condition = compiled(
        {"final_confidence": {"lt": 0.5}, "final_tier": "flagship", "labels.pii": True}, SCOPE_APPROVAL
    )
    assert not condition.per_call
    context = SimpleNamespace(job=JOB, call=None, final_confidence=0.3, final_tier="flagship", cost_usd=None)
    assert condition.explain(context) == (
        True,
        "final_confidence is 0.3, < 0.5; final_tier is 'flagship'; labels.pii is true",
    )


@pytest.mark.parametrize(
    ("when", "path", "message"),
    [
        ({"colour": "red"}, ("when", "colour"), "unknown field 'colour' (known: task_type, input_tokens"),
        ({"tool": "x"}, ("when", "tool"), "field 'tool' is only available in approval rules"),
        (
            {"args.amount": 1},
            ("when", "args.amount"),
            "field 'args.amount' is only available in approval rules",
        ),
        (
            {"constraints.speed": 1},
            ("when", "constraints.speed"),
            "unknown constraint 'speed' (known: latency_budget_ms",
        ),
        ({"labels.": 1}, ("when", "labels."), "unknown field 'labels.'"),
        (
            {"task_type": {"like": "x"}},
            ("when", "task_type", "like"),
            "unknown operator 'like' for 'task_type'",
        ),
        ({"task_type": {}}, ("when", "task_type"), "no operator given for 'task_type'"),
        ({"task_type": "plannig"}, ("when", "task_type"), "unknown task type 'plannig'"),
        ({"task_type": {"lt": "coding"}}, ("when", "task_type", "lt"), "'lt' does not apply to 'task_type'"),
        (
            {"input_tokens": {"matches": "1*"}},
            ("when", "input_tokens", "matches"),
            "'matches' does not apply",
        ),
        ({"input_tokens": "many"}, ("when", "input_tokens"), "input_tokens is a number; 'many' is a string"),
        ({"input_tokens": {"gt": True}}, ("when", "input_tokens", "gt"), "'gt' takes a number, not true"),
        ({"labels.x": {"in": []}}, ("when", "labels.x", "in"), "'in' takes a non-empty list of values"),
        ({"labels.x": {"eq": None}}, ("when", "labels.x", "eq"), "null is not a value here"),
        ({"labels.x": {"eq": {"a": 1}}}, ("when", "labels.x", "eq"), "a dict is not allowed here"),
        ({"labels.x": {"lt": float("inf")}}, ("when", "labels.x", "lt"), "'lt' takes a number"),
        ({"labels.x": {"exists": "yes"}}, ("when", "labels.x", "exists"), "'exists' takes true or false"),
        ({"constraints.min_tier": "huge"}, ("when", "constraints.min_tier"), "unknown tier 'huge'"),
        (
            {"constraints.min_tier": {"gt": "huge"}},
            ("when", "constraints.min_tier", "gt"),
            "'gt' on 'constraints.min_tier' takes a tier",
        ),
        ({"any": []}, ("when", "any"), "'any' takes a non-empty list of condition mappings"),
        ({"not": [1]}, ("when", "not"), "'not' takes a non-empty mapping of conditions"),
        ({"any": [{"colour": 1}]}, ("when", "any", 0, "colour"), "unknown field 'colour'"),
    ],
)
def test_compile_errors_name_the_path(when, path, message):
    errors = compile_errors(when)
    assert len(errors) == 1, errors
    assert errors[0].path == path
    assert errors[0].message.startswith(message), errors[0].message


def test_a_when_that_is_not_a_mapping_is_refused():
    assert compile_errors(["task_type"]) == [
        ConditionError(("when",), "conditions must be a mapping of field to condition")
    ]


# ---------------------------------------------------------------- the matcher


def naive_first(conditions, facts):
    return next((index for index, condition in enumerate(conditions) if condition.holds(facts)), None)


def test_the_matcher_finds_the_first_rule_whose_conditions_hold():
    conditions = [
        compiled({"task_type": "coding"}),
        compiled({"input_tokens": {"lte": 8000}}),
        compiled({"application": {"matches": "acme-*"}, "labels.region": "us"}),
        compiled({"tools": "browse"}),
        compiled({"labels.region": {"eq": "eu", "in": ["us", "eu"]}, "input_tokens": {"gt": 10_000, "lt": 20_000}}),
        compiled({}),
    ]
    matcher = RuleMatcher(conditions)
    assert matcher.first_match(JOB) == 4 == naive_first(conditions, JOB)
    facts = JobFacts("coding", input_tokens=10)
    assert matcher.first_match(facts) == 0


def test_two_tests_of_one_family_on_one_field_both_apply():
    # `eq` and `in` on one field must both hold; merging them into one index entry would accept "us".
    conditions = [compiled({"labels.region": {"eq": "eu", "in": ["us", "eu"]}}), compiled({})]
    assert RuleMatcher(conditions).first_match(JobFacts("general", labels={"region": "us"})) == 1
    conditions = [compiled({"labels.x": {"ne": 5, "not_in": ["a"]}}), compiled({})]
    assert RuleMatcher(conditions).first_match(JobFacts("general", labels={"x": "b"})) == 1


def test_the_matcher_handles_missing_and_odd_values():
    conditions = [
        compiled({"labels.x": {"gt": 1}}),
        compiled({"labels.x": {"ne": "a"}}),
        compiled({"labels.x": {"matches": "a*"}}),
        compiled({"labels.x": {"exists": False}}),
        compiled({"complexity": {"lte": 1}}),
    ]
    matcher = RuleMatcher(conditions)
    for labels in ({}, {"x": None}, {"x": [1]}, {"x": float("nan")}, {"x": "abc"}, {"x": 2}, {"x": True}):
        for complexity in (None, 0.5, float("nan"), 10**400):
            facts = JobFacts("general", labels=labels, complexity=complexity)
            assert matcher.first_match(facts) == naive_first(conditions, facts), (labels, complexity)


def test_a_matcher_over_no_rules_matches_nothing():
    assert RuleMatcher([]).first_match(JOB) is None


# ---------------------------------------------------------------- approval scope: fail closed


def judge(when, args, *, job=JOB, tool="issue_refund", **result):
    """Three-valued approval evaluation of `when` on one tool call (True, False or None = unknown)."""
    call = SimpleNamespace(name=tool, args=args)
    context = SimpleNamespace(
        job=job,
        call=call,
        final_confidence=result.get("final_confidence", 0.9),
        final_tier=result.get("final_tier", "mini"),
        cost_usd=result.get("cost_usd", 0.01),
    )
    return compiled(when, SCOPE_APPROVAL).judge(context)


REFUND = {"tool": "issue_refund", "args.amount": {"gt": 100}}


@pytest.mark.parametrize(
    ("amount", "reason"),
    [
        ("5000", "args.amount is a string ('5000'); the condition compares with a number"),
        ({"value": 5000}, "args.amount is an object; the condition compares with a number"),
        ([5000], "args.amount is a list; the condition compares with a number"),
        (True, "args.amount is a boolean (true); the condition compares with a number"),
        (float("nan"), "args.amount is nan; the condition compares with a number"),
    ],
)
def test_a_model_value_of_the_wrong_type_is_unknown_never_false(amount, reason):
    assert judge(REFUND, {"amount": amount}) == (None, reason)


def test_a_missing_model_argument_is_unknown():
    assert judge(REFUND, {}) == (None, "args.amount is missing from the tool call")
    # `exists` asks about presence itself: its answer is known.
    assert judge({"args.amount": {"exists": False}}, {}) == (True, "args.amount is absent")


def test_real_numbers_decide_as_before():
    assert judge(REFUND, {"amount": 150}) == (True, "args.amount is 150, > 100; tool is 'issue_refund'")
    assert judge(REFUND, {"amount": 100}) == (False, "args.amount is 100, not > 100")


def test_another_tools_call_is_false_whatever_its_arguments():
    # Kleene: one false term decides the conjunction even when another is unknown.
    assert judge(REFUND, {"amount": "5000"}, tool="search") == (False, "tool is 'search', not 'issue_refund'")
    assert judge(REFUND, Unreadable("the tool call's arguments are not valid JSON"), tool="search")[0] is False


def test_unreadable_arguments_make_every_argument_test_unknown():
    unreadable = Unreadable("the tool call's arguments are not valid JSON")
    for when in (REFUND, {"args.amount": {"exists": True}}, {"args.note": {"matches": "*"}}):
        assert judge(when, unreadable) == (None, "the tool call's arguments are not valid JSON")


@pytest.mark.parametrize(
    ("when", "truth"),
    [
        ({"any": [REFUND, {"tool": "search"}]}, None),  # unknown or false
        ({"any": [REFUND, {"tool": "issue_refund"}]}, True),  # unknown or true
        ({"all": [REFUND, {"tool": "issue_refund"}]}, None),  # unknown and true
        ({"all": [REFUND, {"tool": "search"}]}, False),  # unknown and false
        ({"not": REFUND}, None),  # not unknown
        ({"not": {"tool": "search"}}, True),
    ],
)
def test_combinators_follow_kleene_logic(when, truth):
    assert judge(when, {"amount": "5000"})[0] is truth


def test_other_operators_on_the_wrong_type_are_unknown():
    assert judge({"args.currency": {"in": ["EUR", "USD"]}}, {"currency": 978})[0] is None
    assert judge({"args.currency": {"ne": "EUR"}}, {"currency": ["EUR"]})[0] is None
    assert judge({"args.note": {"matches": "urgent*"}}, {"note": 5})[0] is None
    assert judge({"args.currency": {"in": ["EUR", "USD"]}}, {"currency": "GBP"})[0] is False


def test_application_fields_missing_are_false_but_of_the_wrong_type_unknown():
    job = JobFacts("general", labels={"region": 7})
    assert judge({"labels.pii": True}, {}, job=job) == (False, "labels.pii is missing")
    assert judge({"labels.region": "eu"}, {}, job=job) == (
        None,
        "labels.region is a number (7); the condition compares with a string",
    )


def test_route_scope_keeps_two_valued_semantics():
    facts = JobFacts("general", labels={"region": 7})
    held, reason = explain({"labels.region": "eu"}, facts)
    assert held is False and "type mismatch" in reason


# ---------------------------------------------------------------- detected


def test_detected_tests_the_kinds_of_personal_data_found_in_the_prompt():
    job = JobFacts("general", detected=("email", "iban"))
    assert explain({"detected": ["email", "iban"]}, job) == (
        True,
        "a kind in [email, iban] is detected in the prompt (detected: [email, iban])",
    )
    assert explain({"detected": "card"}, job) == (
        False,
        "no kind in [card] is detected in the prompt (detected: [email, iban])",
    )
    assert explain({"detected": {"not_in": ["card", "phone"]}}, job)[0] is True
    assert explain({"detected": {"exists": True}}, job)[0] is True
    assert explain({"detected": {"exists": True}}, JOB) == (False, "personal data detected in the prompt: none")
    assert explain({"detected": ["email"]}, JOB)[0] is False


def test_detected_works_in_the_rule_index_and_in_approval_rules():
    clean, personal = JobFacts("general"), JobFacts("general", detected=("phone",))
    matcher = RuleMatcher([compiled({"detected": ["email", "phone"]}), compiled({})])
    assert matcher.first_match(personal) == 0
    assert matcher.first_match(clean) == 1
    assert judge({"detected": ["phone"]}, {}, job=personal)[0] is True
    assert judge({"detected": ["phone"]}, {}, job=clean)[0] is False


@pytest.mark.parametrize(
    ("when", "message"),
    [
        ({"detected": "EMAIL"}, "detected kinds are lowercase: use 'email', not 'EMAIL'"),
        ({"detected": {"gt": "email"}}, "'gt' does not apply to 'detected' (it is not a number)"),
        ({"detected": [1]}, "detected is a string; 1 is a number"),
    ],
)
def test_detected_operands_are_checked(when, message):
    assert [error.message for error in compile_errors(when)] == [message]
