"""Properties of the router over generated valid documents and arbitrary facts, checked against a naive
reference evaluator written from the condition language's stated semantics (not from its code)."""

import json
import math
from fnmatch import fnmatchcase

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routing.decide.policy import canonical_json, policy_from_data
from routing.decide.policy.compiler import compile_when
from routing.decide.policy.fields import SCOPE_ROUTE
from routing.decide.policy.matcher import RuleMatcher
from routing.decide.router import Constraints, DeploymentInfo, JobFacts, PlanStep, route

TIERS = ["nano", "mini", "flagship"]
TASKS = ["classification", "extraction", "coding", "planning"]
NUMBERS = [0, 1, 100, 8000, 8000.5, -3, 10**6]
STRINGS = ["eu", "us", "acme-x", "a", "core", ""]
PATTERNS = ["a*", "acme-*", "*x", "e?", "[eu]*", "*"]
TOOLS = ["search", "browse", "issue_refund"]

# field -> kind
FIELDS = {
    "task_type": "task",
    "input_tokens": "number",
    "complexity": "number",
    "application": "string",
    "labels.region": "scalar",
    "labels.pii": "scalar",
    "metadata.team": "scalar",
    "metadata.team.name": "scalar",
    "constraints.min_tier": "tier",
    "constraints.latency_budget_ms": "number",
    "tools": "tools",
}
SETTINGS = settings(
    max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


def values_for(kind):
    return {
        "task": st.sampled_from(TASKS),
        "number": st.sampled_from(NUMBERS),
        "string": st.sampled_from(STRINGS),
        "scalar": st.sampled_from([*STRINGS, *NUMBERS, True, False]),
        "tier": st.sampled_from(TIERS),
        "tools": st.sampled_from(TOOLS),
    }[kind]


@st.composite
def conditions(draw, kind):
    ops = ["eq", "ne", "in", "not_in", "exists"]
    if kind in ("number", "scalar", "tier"):
        ops += ["lt", "lte", "gt", "gte"]
    if kind != "number":
        ops += ["matches"]
    values = values_for(kind)
    shape = draw(st.sampled_from(["bare", "list", "ops"]))
    if shape == "bare":
        return draw(values)
    if shape == "list":
        return draw(st.lists(values, min_size=1, max_size=3))
    chosen = draw(st.lists(st.sampled_from(ops), min_size=1, max_size=2, unique=True))
    operators = {}
    for op in chosen:
        if op in ("in", "not_in"):
            operators[op] = draw(st.lists(values, min_size=1, max_size=3))
        elif op == "exists":
            operators[op] = draw(st.booleans())
        elif op == "matches":
            operators[op] = draw(st.sampled_from(PATTERNS))
        elif op in ("lt", "lte", "gt", "gte") and kind == "scalar":
            operators[op] = draw(st.sampled_from(NUMBERS))
        else:
            operators[op] = draw(values)
    return operators


@st.composite
def whens(draw, depth=0):
    fields = draw(st.lists(st.sampled_from(sorted(FIELDS)), max_size=3, unique=True))
    when = {field: draw(conditions(FIELDS[field])) for field in fields}
    if depth == 0 and draw(st.integers(0, 4)) == 0:
        combinator = draw(st.sampled_from(["any", "all", "not"]))
        if combinator == "not":
            inner = draw(whens(depth=1))
            if inner:
                when["not"] = inner
        else:
            when[combinator] = draw(st.lists(whens(depth=1), min_size=1, max_size=2))
    return when


@st.composite
def rules(draw, index):
    cascade = [tier for tier in TIERS if draw(st.booleans())] or [draw(st.sampled_from(TIERS))]
    rule = {"id": f"rule-{index}", "cascade": cascade, "when": draw(whens())}
    thresholds = {
        tier: draw(st.sampled_from([0, 0.5, 0.8, 1])) for tier in cascade[:-1] if draw(st.booleans())
    }
    if thresholds:
        rule["escalate_below"] = thresholds
    rule["confidence"] = draw(
        st.sampled_from(
            [
                "logprob",
                "self_report",
                {"method": "logprob", "fallback": "self_report"},
                {"method": "verifier", "tier": "flagship"},
            ]
        )
    )
    if draw(st.booleans()):
        rule["deployments"] = {"region": draw(st.sampled_from(["eu", "us", ["eu", "us"]]))}
    return rule


@st.composite
def documents(draw):
    """Valid documents: rules that could never match (after a catch-all, or repeating an earlier rule's
    conditions) are left out, as validation would refuse them."""
    candidates = [draw(rules(index)) for index in range(draw(st.integers(1, 7)))]
    kept, seen = [], set()
    for rule in candidates:
        key = canonical_json(rule["when"])
        if key in seen:
            continue
        seen.add(key)
        kept.append(rule)
        if not rule["when"]:
            break
    data = {"rules": kept}
    if draw(st.booleans()):
        data["budgets"] = {"on_hard_limit": draw(st.sampled_from(["reject", "downgrade"]))}
    return data


odd_numbers = st.one_of(
    st.sampled_from(NUMBERS),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**400), max_value=10**400),
)
anything = st.one_of(
    st.none(),
    st.booleans(),
    odd_numbers,
    st.sampled_from(STRINGS + TIERS + TASKS),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.sampled_from(["name", "x"]), st.sampled_from(STRINGS), max_size=2),
)


def mostly(pool):
    """Values from the pool the documents use (so that boundaries are hit), else anything at all."""
    return st.one_of(st.sampled_from(pool), st.sampled_from(pool), st.sampled_from(pool), anything)


@st.composite
def facts(draw):
    return JobFacts(
        task_type=draw(mostly(TASKS)),
        input_tokens=draw(st.one_of(mostly(NUMBERS), odd_numbers)),
        complexity=draw(st.one_of(mostly(NUMBERS), st.floats(0, 1))),
        application=draw(mostly(STRINGS)),
        labels=draw(
            st.fixed_dictionaries(
                {}, optional={"region": mostly([*STRINGS, *NUMBERS]), "pii": mostly([True, False, 1, "eu"])}
            )
        ),
        constraints=Constraints(
            latency_budget_ms=draw(st.one_of(st.none(), mostly(NUMBERS))),
            cost_cap_usd=draw(st.one_of(st.none(), st.sampled_from([0.0001, 0.01, 10.0]), anything)),
            min_tier=draw(st.one_of(st.none(), mostly(TIERS))),
            max_tier=draw(st.one_of(st.none(), st.sampled_from(TIERS), anything)),
        ),
        metadata=draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "team": st.one_of(mostly(STRINGS), st.fixed_dictionaries({"name": mostly(STRINGS)}))
                },
            )
        ),
        tools=tuple(draw(st.lists(st.sampled_from(TOOLS), max_size=3, unique=True))),
        budget_hard_limit_reached=draw(st.booleans()),
    )


catalogs = st.lists(
    st.builds(
        DeploymentInfo,
        name=st.sampled_from(["d1", "d2", "d3", "d4", "d5"]),
        tier=st.sampled_from(TIERS),
        region=st.sampled_from(["eu", "us", None]),
        capabilities=st.frozensets(st.sampled_from(["tools", "logprobs", "json_schema"])),
        enabled=st.booleans(),
        p95_latency_ms=st.one_of(st.none(), st.floats(0, 5000)),
        input_price_per_mtok=st.floats(0, 20),
        output_price_per_mtok=st.floats(0, 60),
    ),
    max_size=6,
)


# ---------------------------------------------------------------- the reference evaluator

MISSING = object()
RANK = {tier: rank for rank, tier in enumerate(TIERS)}


def ref_value(job, field):
    if field == "tools":
        return tuple(name for name in job.tools if isinstance(name, str))
    if "." not in field:
        value = getattr(job, field)
    else:
        head, rest = field.split(".", 1)
        if head == "constraints":
            value = getattr(job.constraints, rest)
        else:
            value = getattr(job, head)
            for part in rest.split(".") if head == "metadata" else [rest]:
                value = value.get(part) if isinstance(value, dict) else None
    return MISSING if value is None else value


def kind_of(value):
    if isinstance(value, bool):
        return "b"
    if isinstance(value, int | float):
        return "n"
    return "s" if isinstance(value, str) else "other"


def same(a, b):
    return kind_of(a) == kind_of(b) and kind_of(a) != "other" and a == b


def ref_atom(field, op, operand, value):
    listed = operand if isinstance(operand, list) else [operand]
    if field == "tools":
        if op == "exists":
            return bool(value) == operand
        if op == "matches":
            return any(fnmatchcase(name, operand) for name in value)
        offered = any(name in listed for name in value)
        return offered if op in ("eq", "in") else not offered
    if op == "exists":
        return (value is not MISSING) == operand
    if value is MISSING:
        return False
    if op in ("eq", "in"):
        return any(same(value, item) for item in listed)
    if op in ("ne", "not_in"):
        return kind_of(value) in {kind_of(item) for item in listed} and not any(
            same(value, i) for i in listed
        )
    if op == "matches":
        return isinstance(value, str) and fnmatchcase(value, operand)
    if FIELDS.get(field) == "tier":
        # Facts may hold anything (a list, a dict): only a tier's name has a rank, and `in RANK` on an
        # unhashable value would raise instead of saying "no".
        if not isinstance(value, str) or value not in RANK:
            return False
        left, right = RANK[value], RANK[operand]
    else:
        if kind_of(value) != "n" or value != value:
            return False
        left, right = value, operand
    return {"lt": left < right, "lte": left <= right, "gt": left > right, "gte": left >= right}[op]


def ref_holds(when, job):
    for field, condition in when.items():
        if field == "any":
            ok = any(ref_holds(child, job) for child in condition)
        elif field == "all":
            ok = all(ref_holds(child, job) for child in condition)
        elif field == "not":
            ok = not ref_holds(condition, job)
        else:
            if isinstance(condition, dict):
                operations = condition.items()
            else:
                operations = [("in" if isinstance(condition, list) else "eq", condition)]
            value = ref_value(job, field)
            ok = all(ref_atom(field, op, operand, value) for op, operand in operations)
        if not ok:
            return False
    return True


# ---------------------------------------------------------------- properties


@SETTINGS
@given(data=documents(), job=facts(), catalog=catalogs)
def test_routing_is_total_deterministic_and_recordable(data, job, catalog):
    document = policy_from_data(data)  # generated documents are valid
    assert [rule.id for rule in document.rules] == [rule["id"] for rule in data["rules"]]
    first = route(job, document, catalog)
    second = route(job, document, catalog)
    record = first.to_record()
    json.dumps(record, allow_nan=False)
    assert record == second.to_record()
    assert (first.plan is None) == (first.error is not None)


@SETTINGS
@given(data=documents(), job=facts(), catalog=catalogs)
def test_the_chosen_rule_is_the_first_whose_conditions_hold(data, job, catalog):
    document = policy_from_data(data)
    expected = next((rule["id"] for rule in data["rules"] if ref_holds(rule["when"], job)), None)
    result = route(job, document, catalog)
    explanation = result.explanation
    assert explanation.matched_rule == expected
    if result.plan is not None:
        assert result.plan.rule_id == expected
    ids = [rule["id"] for rule in data["rules"]]
    checked = explanation.rules_checked
    cut = len(ids) if expected is None else ids.index(expected) + 1
    assert [check.rule_id for check in checked] == ids[:cut]
    for check, rule in zip(checked, data["rules"], strict=False):
        assert check.matched == ref_holds(rule["when"], job)
        assert check.reason
    if expected is None:
        assert result.error.startswith("no rule matched")


@SETTINGS
@given(data=documents(), job=facts(), catalog=catalogs)
def test_plans_follow_the_cascade_and_the_catalog(data, job, catalog):
    document = policy_from_data(data)
    result = route(job, document, catalog)
    if result.plan is None:
        return
    rule = document.rule(result.plan.rule_id)
    steps = result.plan.steps
    tiers = [step.tier for step in steps]
    assert tiers == sorted(tiers, key=RANK.__getitem__) and len(set(tiers)) == len(tiers)
    if not result.plan.downgraded:
        assert set(tiers) <= set(rule.cascade)
    by_name = {}
    for deployment in catalog:
        by_name.setdefault(deployment.name, []).append(deployment)
    for step in steps:
        for name in step.deployments:
            assert any(d.tier == step.tier and d.enabled for d in by_name[name])
    assert steps[-1].escalate_below is None
    for step in steps[:-1]:
        expected = rule.escalate_below.get(step.tier, document.default_escalate_below)
        assert step.escalate_below == expected


@settings(max_examples=200, deadline=None, database=None)
@given(whens_=st.lists(whens(), min_size=1, max_size=6), job=facts())
def test_the_rule_index_agrees_with_the_reference(whens_, job):
    # No document validation here, so the many cheap examples go to the index's boundaries.
    matcher = RuleMatcher([compile_when(when, scope=SCOPE_ROUTE)[0] for when in whens_])
    expected = next((index for index, when in enumerate(whens_) if ref_holds(when, job)), None)
    assert matcher.first_match(job) == expected


@SETTINGS
@given(threshold=st.floats(0, 1), score=st.floats(0, 1))
def test_thresholds_escalate_strictly_below(threshold, score):
    step = PlanStep("nano", ("d",), threshold, "logprob")
    assert step.accepts(score) == (score >= threshold)
    assert step.accepts(threshold)
    below = math.nextafter(threshold, -math.inf)
    if below >= 0:
        assert not step.accepts(below)


@pytest.mark.parametrize("value", [[], [1], {}, {"x": "eu"}, 7, "huge"])
def test_a_tier_fact_of_any_shape_is_a_plain_no(value):
    """The case that made the property above flaky: `min_tier = []`. The reference said "crash"; the
    router must (and does) say "this rule does not match" and route by the next one."""
    data = {
        "rules": [
            {"id": "at-least-mini", "when": {"constraints.min_tier": {"gte": "mini"}}, "cascade": ["mini"]},
            {"id": "named", "when": {"constraints.min_tier": ["nano", "mini"]}, "cascade": ["mini"]},
            {"id": "default", "cascade": ["mini"]},
        ]
    }
    job = JobFacts("classification", constraints=Constraints(min_tier=value))
    result = route(job, policy_from_data(data), [DeploymentInfo("d1", "mini")])
    assert result.explanation.matched_rule == "default"
    assert not ref_holds(data["rules"][0]["when"], job) and not ref_holds(data["rules"][1]["when"], job)
