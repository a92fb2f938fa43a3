"""The policy's choice for a tier that is down (`tier_down`): parsed, defaulted and refused when wrong."""

from __future__ import annotations

import pytest

from routing.decide.policy import check_policy, load_policy
from routing.decide.policy.rules import DEFAULT_TIER_DOWN_WAIT_S

RULES = "rules:\n  - id: r\n    cascade: [nano, mini]\n"


def errors(text: str) -> list[tuple[str, str]]:
    return [(error.path, error.message) for error in check_policy(text)]


def test_a_policy_without_it_fails_at_once_as_before():
    document = load_policy(RULES)
    assert (document.tier_down.action, document.tier_down.wait_up_to_s) == ("fail", DEFAULT_TIER_DOWN_WAIT_S)


def test_wait_takes_a_deadline_as_a_duration_or_seconds():
    assert load_policy(RULES + "tier_down: {action: wait, wait_up_to: 1h30m}\n").tier_down.wait_up_to_s == 5400
    assert load_policy(RULES + "tier_down: {action: wait, wait_up_to: 90}\n").tier_down.wait_up_to_s == 90
    assert load_policy(RULES + "tier_down: {action: wait}\n").tier_down.wait_up_to_s == DEFAULT_TIER_DOWN_WAIT_S
    assert load_policy(RULES + "tier_down: {action: hold, wait_up_to: 4h}\n").tier_down.wait_up_to_s == 4 * 3600


def test_it_changes_the_documents_identity():
    assert load_policy(RULES).sha256 != load_policy(RULES + "tier_down: {action: wait}\n").sha256


@pytest.mark.parametrize(
    ("block", "path", "message"),
    [
        ("{action: retry}", "tier_down.action", '"retry" is not one of: fail, hold, wait'),
        ("{action: wait, wait_up_to: soon}", "tier_down.wait_up_to", "invalid duration 'soon'"),
        ("{action: wait, wait_up_to: 0}", "tier_down.wait_up_to", "0 must be >= 1"),
        ("{action: wait, wait_up_to: 400d}", "tier_down.wait_up_to", "a duration may be at most 365 days"),
        ("{action: fail, wait_up_to: 10m}", "tier_down.wait_up_to", "wait_up_to applies only to action: hold or wait"),
        ("{wait_up_to: 10m}", "tier_down.wait_up_to", "wait_up_to applies only to action: hold or wait"),
        ("{action: wait, until: 10m}", "tier_down.until", "unknown property 'until'"),
        ("wait", "tier_down", "expected a mapping, got a string"),
    ],
)
def test_a_bad_value_is_named_with_its_path(block, path, message):
    found = errors(RULES + f"tier_down: {block}\n")
    assert len(found) == 1, found
    assert found[0][0] == path
    assert message in found[0][1]


@pytest.mark.django_db
def test_the_api_refuses_a_bad_tier_down_with_a_400_at_its_line(admin):
    name = admin.setup.policy.name
    source = RULES + "tier_down:\n  action: hold-forever\n"
    response = admin.client.post(f"/api/v1/admin/policies/{name}/versions", {"source": source}, format="json")
    assert response.status_code == 400
    problem = response.json()
    assert problem["code"] == "invalid_policy"
    error = next(e for e in problem["errors"] if e["path"] == "tier_down.action")
    assert error["line"] == 5
