import json

import pytest
from jsonschema import Draft202012Validator

from routing.decide.policy import (
    InvalidPolicy,
    PolicyError,
    canonical_json,
    check_policy,
    load_policy,
    policy_from_data,
    policy_schema,
)
from routing.decide.policy.semantics import parse_duration
from routing.decide.policy.source import MAX_DOCUMENT_BYTES

# The example in DESIGN.md ("The policy document"), verbatim.
DESIGN_EXAMPLE = """\
rules:
  - id: cheap-extraction
    when: {task_type: [classification, extraction, ranking], input_tokens: {lte: 8000}}
    cascade: [nano, mini, flagship]
    escalate_below: {nano: 0.80, mini: 0.70}
    confidence: logprob
  - id: eu-personal-data
    when: {labels.region: eu}
    deployments: {region: eu}
    cascade: [mini, flagship]
  - id: default
    cascade: [mini, flagship]
    escalate_below: {mini: 0.75}
approvals:
  - id: refunds-over-100
    when: {tool: issue_refund, args.amount: {gt: 100}}
    approvers: 2
    expires_after: 4h
    on_expiry: reject
  - id: unsure-after-flagship
    when: {final_confidence: {lt: 0.5}}
budgets:
  on_hard_limit: downgrade   # or reject
"""

FULL = """\
version: 1
description: everything the format knows
defaults:
  escalate_below: 0.6
rules:
  - id: cheap-extraction
    description: small structured tasks
    when: {task_type: [classification, extraction, ranking], input_tokens: {lte: 8000}}
    cascade: [nano, mini, flagship]
    escalate_below: {nano: 0.80, mini: 0.70}
    confidence: logprob
    deployments: {region: eu}
    limits: {max_output_tokens: 1024, timeout_s: 30}
    shadow: {rate: 0.05, tier: flagship}
  - id: careful
    when: {task_type: planning}
    cascade: [mini, flagship]
    confidence: {method: verifier, fallback: self_report}
  - id: default
    cascade: [mini, flagship]
    escalate_below: {mini: 0.75}
approvals:
  - id: refunds-over-100
    when: {tool: issue_refund, args.amount: {gt: 100}}
    approvers: 2
    group: policy_admin
    expires_after: 4h
    on_expiry: reject
  - id: unsure-after-flagship
    when: {final_confidence: {lt: 0.5}}
  - id: eu-pii
    when: {labels.pii: true}
    expires_after: 1h30m
    on_expiry: approve
blocked_tools: [delete_database]
budgets:
  on_hard_limit: downgrade
  downgrade_cascade: [nano]
verifier: {tier: flagship}
"""


def errors_of(text):
    return check_policy(text)


def only_error(text):
    errors = check_policy(text)
    assert len(errors) == 1, errors
    return errors[0]


def rules_yaml(body: str) -> str:
    return "rules:\n" + body


def test_it_loads_the_design_example():
    document = load_policy(DESIGN_EXAMPLE)
    assert [rule.id for rule in document.rules] == ["cheap-extraction", "eu-personal-data", "default"]
    assert [rule.id for rule in document.approvals] == ["refunds-over-100", "unsure-after-flagship"]
    assert document.budgets.on_hard_limit == "downgrade"


def test_it_loads_every_part_of_the_format():
    document = load_policy(FULL)
    cheap, careful, default = document.rules
    assert cheap.cascade == ("nano", "mini", "flagship")
    assert cheap.escalate_below == {"nano": 0.8, "mini": 0.7}
    assert cheap.confidence.method == "logprob" and cheap.confidence.fallback is None
    assert cheap.deployments.regions == ("eu",)
    assert (cheap.limits.max_output_tokens, cheap.limits.timeout_s) == (1024, 30)
    assert (cheap.shadow.rate, cheap.shadow.tier) == (0.05, "flagship")
    assert careful.confidence.method == "verifier" and careful.confidence.fallback == "self_report"
    assert careful.escalate_below == {"mini": 0.6}  # from defaults.escalate_below
    assert careful.threshold_defaulted == frozenset({"mini"})
    assert default.escalate_below == {"mini": 0.75}
    refunds, unsure, pii = document.approvals
    assert (refunds.approvers, refunds.group, refunds.expires_after_s, refunds.on_expiry) == (
        2,
        "policy_admin",
        14400,
        "reject",
    )
    assert (unsure.approvers, unsure.group, unsure.expires_after_s, unsure.on_expiry) == (
        1,
        "reviewer",
        86400,
        "reject",
    )
    assert (pii.expires_after_s, pii.on_expiry) == (5400, "approve")
    assert document.blocked_tools == frozenset({"delete_database"})
    assert document.budgets.downgrade_cascade == ("nano",)
    assert document.verifier_tier == "flagship"


def test_the_same_policy_as_yaml_and_as_json_has_one_hash():
    from_yaml = load_policy(FULL)
    from_json = load_policy(json.dumps(from_yaml.as_data(), indent=4))
    assert from_json.sha256 == from_yaml.sha256
    assert from_json == from_yaml


def test_canonical_json_sorts_keys_without_whitespace():
    document = load_policy('rules:\n  - {id: r, cascade: [mini], description: "é"}\n')
    assert document.canonical_json() == '{"rules":[{"cascade":["mini"],"description":"é","id":"r"}]}'
    import hashlib

    assert document.sha256 == hashlib.sha256(document.canonical_json().encode()).hexdigest()
    assert canonical_json({"b": 1, "a": [1.5, None]}) == '{"a":[1.5,null],"b":1}'


def test_as_data_is_a_copy():
    document = load_policy(FULL)
    data = document.as_data()
    data["rules"].clear()
    assert document.as_data()["rules"]


def test_policy_from_data_matches_load_policy():
    document = load_policy(FULL)
    assert policy_from_data(document.as_data()).sha256 == document.sha256


def test_policy_from_data_refuses_data_that_is_not_json():
    with pytest.raises(InvalidPolicy) as raised:
        policy_from_data({"rules": [{"id": "r", "cascade": ("mini",), "when": {"labels.x": {1, 2}}}]})
    assert "a tuple is not JSON data" in str(raised.value) or "a set is not JSON data" in str(raised.value)
    with pytest.raises(InvalidPolicy):
        policy_from_data(
            {"rules": [{"id": "r", "cascade": ["mini"], "when": {"complexity": {"lt": float("nan")}}}]}
        )


def test_the_published_schema_is_valid_draft_2020_12():
    schema = policy_schema()
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert Draft202012Validator(schema).is_valid(load_policy(FULL).as_data())


# ---------------------------------------------------------------- semantic and schema errors


def test_an_unknown_field_is_named_with_its_line():
    error = only_error(rules_yaml("  - id: r\n    when: {colour: red}\n    cascade: [mini]\n"))
    assert error.path == "rules[0].when.colour"
    assert error.message.startswith("unknown field 'colour'")
    assert error.line == 3


def test_a_threshold_on_the_last_tier_is_refused():
    error = only_error(
        rules_yaml("  - id: r\n    cascade: [nano, mini]\n    escalate_below: {nano: 0.8, mini: 0.7}\n")
    )
    assert error == PolicyError(
        "rules[0].escalate_below.mini",
        "'mini' is the cascade's last tier: its answer is final, so it takes no threshold",
        4,
    )


def test_a_threshold_for_a_tier_outside_the_cascade_is_refused():
    error = only_error(
        rules_yaml("  - id: r\n    cascade: [mini, flagship]\n    escalate_below: {nano: 0.8}\n")
    )
    assert error.path == "rules[0].escalate_below.nano"
    assert "not in this rule's cascade" in error.message


def test_a_threshold_outside_0_1_is_refused_with_its_path():
    error = only_error(
        "rules:\n  - id: a\n    cascade: [mini]\n  - id: b\n    when: {task_type: coding}\n"
        "    cascade: [nano, mini, flagship]\n    escalate_below: {nano: 1.5}\n"
    )
    assert (error.path, error.line) == ("rules[1].escalate_below.nano", 7)
    assert error.message == "1.5 must be <= 1"


@pytest.mark.parametrize(
    ("cascade", "message"),
    [
        (
            "[mini, nano]",
            "the cascade must climb strictly (nano < mini < flagship): 'nano' comes after 'mini'",
        ),
        (
            "[mini, mini]",
            "the cascade must climb strictly (nano < mini < flagship): 'mini' comes after 'mini'",
        ),
    ],
)
def test_a_cascade_must_climb_strictly(cascade, message):
    error = only_error(rules_yaml(f"  - id: r\n    cascade: {cascade}\n"))
    assert (error.path, error.message, error.line) == ("rules[0].cascade[1]", message, 3)


def test_an_unknown_tier_is_refused():
    error = only_error(rules_yaml("  - id: r\n    cascade: [mini, huge]\n"))
    assert error.path == "rules[0].cascade[1]"
    assert error.message == '"huge" is not one of: nano, mini, flagship'


@pytest.mark.parametrize(
    ("confidence", "path"),
    [("magic", "rules[0].confidence"), ("{method: magic}", "rules[0].confidence.method")],
)
def test_an_unknown_confidence_method_is_refused(confidence, path):
    error = only_error(rules_yaml(f"  - id: r\n    cascade: [mini]\n    confidence: {confidence}\n"))
    assert error.path == path
    assert error.message.startswith("unknown confidence method 'magic' (known: agreement, logprob")


def test_a_fallback_must_be_a_different_known_method():
    errors = errors_of(
        rules_yaml("  - id: r\n    cascade: [mini]\n    confidence: {method: logprob, fallback: logprob}\n")
    )
    assert [e.message for e in errors] == ["the fallback must differ from the method"]
    error = only_error(
        rules_yaml("  - id: r\n    cascade: [mini]\n    confidence: {method: logprob, fallback: guess}\n")
    )
    assert error.path == "rules[0].confidence.fallback"


def test_the_verifier_method_needs_a_judge_tier():
    error = only_error(rules_yaml("  - id: r\n    cascade: [mini]\n    confidence: verifier\n"))
    assert "needs a judge tier" in error.message
    assert (
        check_policy(
            rules_yaml("  - id: r\n    cascade: [mini]\n    confidence: {method: verifier, tier: flagship}\n")
        )
        == []
    )


def test_the_schema_method_needs_a_valid_output_schema():
    error = only_error(rules_yaml("  - id: r\n    cascade: [mini]\n    confidence: schema\n"))
    assert error.message == "the schema method needs an 'output_schema'"
    error = only_error(
        rules_yaml(
            "  - id: r\n    cascade: [mini]\n"
            "    confidence: {method: schema, output_schema: {type: banana}}\n"
        )
    )
    assert error.path == "rules[0].confidence.output_schema"
    assert error.message.startswith("invalid JSON Schema")


def test_rule_ids_must_be_unique():
    errors = errors_of(
        rules_yaml(
            "  - id: r\n    when: {task_type: coding}\n    cascade: [mini]\n  - id: r\n    cascade: [mini]\n"
        )
    )
    assert [(e.path, e.message, e.line) for e in errors] == [
        ("rules[1].id", "duplicate id 'r' (also rules[0])", 5)
    ]


def test_at_least_one_rule_is_needed():
    assert only_error("rules: []\n") == PolicyError("rules", "must not be empty", 1)
    assert only_error("approvals: []\n") == PolicyError("", "missing required property 'rules'", 1)


def test_an_unknown_property_is_named():
    error = only_error(rules_yaml("  - id: r\n    cascade: [mini]\n    cascde: [mini]\n"))
    assert (error.path, error.line) == ("rules[0].cascde", 4)
    assert error.message.startswith("unknown property 'cascde' (allowed: id, description, when, cascade")


def test_a_missing_cascade_is_named():
    assert only_error(rules_yaml("  - id: r\n")) == PolicyError(
        "rules[0]", "missing required property 'cascade'", 2
    )


def test_a_bad_id_is_explained():
    error = only_error(rules_yaml("  - id: 'has spaces'\n    cascade: [mini]\n"))
    assert error.path == "rules[0].id"
    assert error.message.startswith("invalid id 'has spaces'")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("4w", "invalid duration '4w': use e.g. 90s, 30m, 4h, 2d or 1h30m"),
        ("0s", "a duration must be positive"),
        ("400d", "a duration may be at most 365 days"),
    ],
)
def test_durations_must_parse(value, message):
    error = only_error(
        "rules:\n  - {id: r, cascade: [mini]}\n"
        f"approvals:\n  - id: a\n    when: {{}}\n    expires_after: {value}\n"
    )
    assert (error.path, error.message, error.line) == ("approvals[0].expires_after", message, 6)


def test_durations():
    assert [parse_duration(text) for text in ("90s", "30m", "4h", "2d", "1h30m")] == [
        90,
        1800,
        14400,
        172800,
        5400,
    ]
    assert parse_duration(600) == 600
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration("h4")


def test_approvers_must_be_at_least_one():
    error = only_error(
        "rules:\n  - {id: r, cascade: [mini]}\napprovals:\n  - {id: a, when: {}, approvers: 0}\n"
    )
    assert (error.path, error.message) == ("approvals[0].approvers", "0 must be >= 1")


def test_a_rule_after_a_catch_all_can_never_match():
    error = only_error(
        rules_yaml(
            "  - id: default\n    cascade: [mini]\n"
            "  - id: late\n    when: {task_type: coding}\n    cascade: [mini]\n"
        )
    )
    assert (error.path, error.line) == ("rules[1]", 4)
    assert error.message == "rule 'late' can never match: rule 'default' above it has no conditions"


def test_a_rule_with_the_same_conditions_as_an_earlier_one_can_never_match():
    error = only_error(
        rules_yaml(
            "  - id: a\n    when: {task_type: coding}\n    cascade: [mini]\n"
            "  - id: b\n    when: {task_type: coding}\n    cascade: [flagship]\n"
        )
    )
    assert error.message == "rule 'b' can never match: rule 'a' above it has the same conditions"


def test_condition_errors_replace_the_schemas_vague_ones():
    errors = errors_of(
        rules_yaml(
            "  - id: r\n    when: {input_tokens: {lte: lots}, task_type: plannig}\n    cascade: [mini]\n"
        )
    )
    assert [(e.path, e.message) for e in errors] == [
        ("rules[0].when.input_tokens.lte", "'lte' takes a number, not 'lots'"),
        (
            "rules[0].when.task_type",
            "unknown task type 'plannig' (known: classification, extraction, ranking, "
            "search, code_review, coding, planning, reasoning, general)",
        ),
    ]


def test_approval_only_fields_are_refused_in_routing_rules():
    error = only_error(
        rules_yaml("  - id: r\n    when: {final_confidence: {lt: 0.5}}\n    cascade: [mini]\n")
    )
    assert error.message == "field 'final_confidence' is only available in approval rules"


def test_a_type_error_names_the_expected_and_actual_types():
    error = only_error(rules_yaml("  - id: r\n    cascade: mini\n"))
    assert (error.path, error.message) == ("rules[0].cascade", "expected a list, got a string")
    error = only_error(rules_yaml("  - id: r\n    cascade: [mini]\n    deployments: {region: 5}\n"))
    assert error.message == "expected a list or a string, got a number"


def test_every_error_is_reported_at_once():
    errors = errors_of(
        rules_yaml(
            "  - id: r\n    when: {task_type: coding}\n    cascade: [mini, nano]\n    confidence: magic\n"
            "  - id: r\n    cascade: [mini]\n"
        )
    )
    assert [e.path for e in errors] == ["rules[0].cascade[1]", "rules[0].confidence", "rules[1].id"]
    with pytest.raises(InvalidPolicy) as raised:
        load_policy(rules_yaml("  - id: r\n    cascade: [mini, nano]\n    confidence: magic\n"))
    assert len(raised.value.errors) == 2
    assert "line 3: rules[0].cascade[1]" in str(raised.value)
    assert raised.value.errors[0].to_record() == {
        "path": "rules[0].cascade[1]",
        "message": raised.value.errors[0].message,
        "line": 3,
    }


# ---------------------------------------------------------------- the source


def test_yaml_is_read_with_the_core_schema():
    document = load_policy(
        rules_yaml(
            "  - id: r\n    when: {labels.country: no, labels.since: 2024-01-01, labels.on: on}\n"
            "    cascade: [mini]\n"
        )
    )
    assert document.as_data()["rules"][0]["when"] == {
        "labels.country": "no",
        "labels.since": "2024-01-01",
        "labels.on": "on",
    }


def test_anchors_and_aliases_are_refused():
    text = "rules:\n  - &rule {id: r, cascade: [mini]}\n  - *rule\n"
    assert only_error(text) == PolicyError("", "YAML anchors and aliases are not allowed in a policy", 2)


def test_an_alias_bomb_is_refused_quickly():
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x"]']
    lines += [
        f"a{i}: &a{i} [*a{i - 1},*a{i - 1},*a{i - 1},*a{i - 1},*a{i - 1},*a{i - 1}]" for i in range(1, 12)
    ]
    error = only_error("\n".join(lines) + "\nrules: [{id: r, cascade: [mini]}]\n")
    assert "anchors and aliases" in error.message


@pytest.mark.parametrize(
    "value",
    [
        "!!binary aGVsbG8=",
        "!!timestamp 2024-01-01",
        "!!set {a, b}",
        "!!python/object:os.system {}",
        "!custom x",
    ],
)
def test_non_json_yaml_types_are_refused(value):
    error = only_error(rules_yaml(f"  - id: r\n    when: {{labels.x: {value}}}\n    cascade: [mini]\n"))
    assert "is not allowed" in error.message
    assert error.line == 3


def test_standard_scalar_tags_are_allowed():
    document = load_policy(
        rules_yaml(
            "  - id: r\n    when: {labels.x: !!str 5, input_tokens: {lt: !!int '9'}}\n    cascade: [mini]\n"
        )
    )
    assert document.as_data()["rules"][0]["when"] == {"labels.x": "5", "input_tokens": {"lt": 9}}


def test_non_string_keys_are_refused():
    error = only_error(rules_yaml("  - id: r\n    cascade: [mini]\n    when: {1: x}\n"))
    assert (error.message, error.line) == ("mapping keys must be strings", 4)


def test_duplicate_keys_are_refused_in_yaml_and_json():
    assert only_error(rules_yaml("  - id: r\n    id: s\n    cascade: [mini]\n")) == PolicyError(
        "rules[0].id", "duplicate key", 3
    )
    text = '{\n  "rules": [\n    {"id": "r", "cascade": ["mini"],\n     "id": "s"}\n  ]\n}\n'
    assert only_error(text) == PolicyError("rules[0].id", "duplicate key", 4)


@pytest.mark.parametrize(
    "text",
    [
        "rules: [{id: r, cascade: [mini], when: {complexity: {lt: .nan}}}]",
        '{"rules": [{"id": "r", "cascade": ["mini"], "when": {"complexity": {"lt": NaN}}}]}',
        '{"rules": [{"id": "r", "cascade": ["mini"], "when": {"complexity": {"lt": 1e999}}}]}',
    ],
)
def test_non_finite_numbers_are_refused(text):
    error = only_error(text)
    assert "NaN" in error.message or "finite" in error.message or "infinite" in error.message


def test_a_document_over_256_kib_is_refused():
    text = "description: '" + "x" * MAX_DOCUMENT_BYTES + "'\nrules: [{id: r, cascade: [mini]}]\n"
    error = only_error(text)
    assert error.message.endswith("the limit is 256 KiB")


def test_deep_nesting_is_refused():
    assert "nested more than" in only_error("rules: " + "[" * 5000 + "]" * 5000).message
    assert "nested more than" in only_error('{"rules": ' + "[" * 100 + "]" * 100 + "}").message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the document is empty"),
        ("# only a comment\n", "the document is empty"),
        ("- a\n- b\n", "the document must be a mapping with a 'rules' list"),
        (
            "rules: [{id: r, cascade: [mini]}]\n---\nrules: []\n",
            "YAML syntax error: expected a single document",
        ),
    ],
)
def test_documents_that_are_not_one_mapping_are_refused(text, message):
    assert only_error(text).message.startswith(message)


def test_a_yaml_syntax_error_has_its_line():
    error = only_error("rules:\n  - id: r\n    cascade: [mini\n  - id: s\n")
    assert error.message.startswith("YAML syntax error")
    assert error.line in (3, 4)


def test_a_json_syntax_error_has_its_line():
    error = only_error('{\n  "rules": [\n    {"id": "r",, "cascade": ["mini"]}\n  ]\n}\n')
    assert error.message.startswith("JSON syntax error")
    assert error.line == 3


def test_json_errors_carry_source_lines():
    text = json.dumps(
        {
            "rules": [
                {"id": "a", "cascade": ["mini"], "when": {"task_type": "coding"}},
                {"id": "b", "cascade": ["nano", "mini"], "escalate_below": {"mini": 0.5}},
            ]
        },
        indent=2,
    )
    error = only_error(text)
    assert error.path == "rules[1].escalate_below.mini"
    assert text.splitlines()[error.line - 1].strip() == '"mini": 0.5'


def test_bytes_and_a_byte_order_mark_are_accepted():
    assert load_policy(("\ufeff" + FULL).encode()).sha256 == load_policy(FULL).sha256
    assert only_error(b"rules: \xff\n").message.startswith("the document is not UTF-8 text")
