"""Policy documents and their closed condition language. Pure Python: no Django, no I/O."""

from routing.decide.policy.document import PolicyDocument, check_policy, load_policy, policy_from_data
from routing.decide.policy.errors import InvalidPolicy, PolicyError
from routing.decide.policy.rules import (
    ApprovalRule,
    BudgetPolicy,
    ConfidenceSpec,
    DeploymentConstraints,
    Limits,
    RouteRule,
    ShadowSpec,
)
from routing.decide.policy.schema import policy_schema
from routing.decide.policy.source import canonical_json

__all__ = [
    "ApprovalRule",
    "BudgetPolicy",
    "ConfidenceSpec",
    "DeploymentConstraints",
    "InvalidPolicy",
    "Limits",
    "PolicyDocument",
    "PolicyError",
    "RouteRule",
    "ShadowSpec",
    "canonical_json",
    "check_policy",
    "load_policy",
    "policy_from_data",
    "policy_schema",
]
