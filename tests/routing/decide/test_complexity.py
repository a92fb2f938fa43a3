
from hypothesis import given, settings
from hypothesis import strategies as st

from routing.decide.complexity import (
    classifier_prompt,
    estimate_complexity,
    parse_classifier_answer,
)
from routing.decide.router import Constraints


def user(text):
    return [{"role": "user", "content": text}]


def score(text, **kwargs):
    return estimate_complexity(user(text), **kwargs).score


def test_a_short_classification_request_is_easy():
    estimate = estimate_complexity(user("Is this review positive or negative? 'Great phone.'"))
    assert estimate.method == "heuristic"
    assert estimate.score < 0.15


def test_code_maths_and_instructions_raise_the_score():
    plain = score("Tell me about the weather in a few words please.")
    code = score("Fix this:\n```python\ndef f(x):\n    return {x: x};\n```\nclass A: pass")
    maths = score("Solve 3x + 4 = 19 and prove that the solution is unique. Compute 2^10 * 7.")
    instructions = score(
        "Write a plan.\n- It must be short\n- It must cite sources\n- Never guess\n1. first\n2. then"
    )
    assert plain < min(code, maths, instructions)
    assert plain >= 0.0 and max(code, maths, instructions) <= 1.0


def test_features_are_reported():
    estimate = estimate_complexity(
        user("```\nx = 1;\n```\nSolve 2+2. You must explain why."),
        tools=["search", "calc"],
        constraints=Constraints(latency_budget_ms=100),
    )
    features = estimate.features
    assert features["tools"] == 2 and features["constraints"] == 1
    assert features["code"] >= 3 and features["math"] >= 3 and features["instructions"] == 1
    assert features["reasoning"] == 2
    assert estimate.to_record()["features"] == dict(features)


def test_content_parts_are_read():
    parts = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "prove it"}, {"type": "image_url", "image_url": {}}],
        }
    ]
    assert estimate_complexity(parts).features["math"] == 2


def test_a_long_hard_request_scores_high():
    text = (
        "Design the architecture and prove its correctness.\n" + "def step(x):\n    return x * 2 + 1;\n" * 200
    )
    assert score(text, tools=["a", "b", "c"]) > 0.85


def test_it_is_deterministic():
    # Its speed is measured in bench/router_bench.py (the router's decision includes it), not asserted here.
    text = "Compare the trade-offs of three designs. You must explain step by step.\n" * 20
    assert score(text) == score(text)
    assert estimate_complexity(user(text)) == estimate_complexity(user(text))


@settings(max_examples=100, deadline=None, database=None)
@given(st.text(max_size=300), st.text(max_size=300))
def test_the_score_never_falls_when_text_is_appended(text, more):
    assert 0.0 <= score(text) <= score(text + "\n" + more) <= 1.0


def test_classifier_prompt_passes_the_conversation_as_data():
    prompt = classifier_prompt([{"role": "system", "content": "be brief"}, *user("x" * 20_000)])
    assert [m["role"] for m in prompt] == ["system", "user"]
    assert "Reply with the number only" in prompt[0]["content"]
    assert len(prompt[1]["content"]) < 9_000


def test_parse_classifier_answer():
    assert parse_classifier_answer("0.7") == 0.7
    assert parse_classifier_answer("Difficulty: .25") == 0.25
    assert parse_classifier_answer("about 70%") == 0.7
    assert parse_classifier_answer("1") == 1.0
    assert parse_classifier_answer("7") is None
    assert parse_classifier_answer("hard") is None
    assert parse_classifier_answer(None) is None
