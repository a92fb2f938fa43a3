"""Policy documents and their closed condition language. Pure Python: no Django, no I/O."""

from routing.decide.policy.document import (
    ApprovalRule,
    BudgetPolicy,
    ConfidenceSpec,
    DeploymentConstraints,
    InvalidPolicy,
    Limits,
    PolicyDocument,
    PolicyError,
    RouteRule,
    ShadowSpec,
    canonical_json,
    check_policy,
    load_policy,
    policy_from_data,
    policy_schema,
)

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
