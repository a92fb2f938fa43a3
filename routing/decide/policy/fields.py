"""The vocabulary of the condition language: its scopes, operators and fields, the kind of each field
(which decides the operators and operands it accepts), and how a field's value is read from a job's facts
or from an approval context.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from routing.decide.policy.values import Unreadable, constraint_value, mapping_get, normalize, path_get, tool_names

SCOPE_ROUTE = "route"
SCOPE_APPROVAL = "approval"

OPERATORS: tuple[str, ...] = ("eq", "ne", "in", "not_in", "lt", "lte", "gt", "gte", "matches", "exists")
COMBINATORS: tuple[str, ...] = ("all", "any", "not")
ORDERING_SYMBOLS = {"lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
OPERATOR_ORDER = {op: index for index, op in enumerate(OPERATORS)}

# Field kinds decide which operators and operand types a field accepts.
TASK_TYPE = "task_type"
STRING = "string"
NUMBER = "number"
TIER = "tier"
SCALAR = "scalar"  # labels, metadata, args: a string, number or boolean
TOOLS = "tools"
DETECTED = "detected"
SET_KINDS = (TOOLS, DETECTED)  # fields whose value is a set of names, tested by membership

ROUTE_FIELDS: dict[str, str] = {
    "task_type": TASK_TYPE,
    "input_tokens": NUMBER,
    "complexity": NUMBER,
    "application": STRING,
    "tools": TOOLS,
    "detected": DETECTED,
}
CONSTRAINT_FIELDS: dict[str, str] = {
    "latency_budget_ms": NUMBER,
    "cost_cap_usd": NUMBER,
    "min_tier": TIER,
    "max_tier": TIER,
}
# A run's facts before the job joined it (routing.decide.runs.RunFacts); missing when the job is in no run.
RUN_FIELDS: dict[str, str] = {
    "calls": NUMBER,
    "flagship_calls": NUMBER,
    "cost_usd": NUMBER,
    "role": STRING,
}
APPROVAL_FIELDS: dict[str, str] = {
    "tool": STRING,
    "final_confidence": NUMBER,
    "cost_usd": NUMBER,
    "final_tier": TIER,
}


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    kind: str
    per_call: bool  # read from one tool call of a result (`tool`, `args.*`)


def known_fields(scope: str) -> list[str]:
    names = [*ROUTE_FIELDS, *(f"constraints.{name}" for name in CONSTRAINT_FIELDS)]
    names += [*(f"run.{name}" for name in RUN_FIELDS), "labels.<name>", "metadata.<path>"]
    if scope == SCOPE_APPROVAL:
        names += [*APPROVAL_FIELDS, "args.<path>"]
    return names


def resolve_field(name: str, scope: str) -> FieldSpec | str:
    """The spec of a field name, or an error message naming what is wrong with it."""
    if name in ROUTE_FIELDS:
        return FieldSpec(name, ROUTE_FIELDS[name], per_call=False)
    if name in APPROVAL_FIELDS:
        if scope != SCOPE_APPROVAL:
            return f"field '{name}' is only available in approval rules"
        return FieldSpec(name, APPROVAL_FIELDS[name], per_call=name == "tool")
    prefix, _, rest = name.partition(".")
    if prefix in ("labels", "metadata", "args") and rest and all(rest.split(".")):
        if prefix == "args" and scope != SCOPE_APPROVAL:
            return f"field '{name}' is only available in approval rules"
        return FieldSpec(name, SCALAR, per_call=prefix == "args")
    if prefix == "run" and rest in RUN_FIELDS:
        return FieldSpec(name, RUN_FIELDS[rest], per_call=False)
    if prefix == "run":
        return f"unknown run fact '{rest}' (known: {', '.join(RUN_FIELDS)})"
    if prefix == "constraints" and rest in CONSTRAINT_FIELDS:
        return FieldSpec(name, CONSTRAINT_FIELDS[rest], per_call=False)
    if prefix == "constraints":
        return f"unknown constraint '{rest}' (known: {', '.join(CONSTRAINT_FIELDS)})"
    return f"unknown field '{name}' (known: {', '.join(known_fields(scope))})"


# ---------------------------------------------------------------- getters


def _job_getter(spec: FieldSpec) -> Callable[[Any], object]:
    name = spec.name
    if name in SET_KINDS:
        return lambda facts: tool_names(getattr(facts, name, ()))
    if name in ROUTE_FIELDS:
        return lambda facts: normalize(getattr(facts, name, None))
    prefix, _, rest = name.partition(".")
    if prefix == "labels":
        return lambda facts: normalize(mapping_get(getattr(facts, "labels", None), rest))
    if prefix == "run":
        return lambda facts: normalize(getattr(getattr(facts, "run", None), rest, None))
    if prefix == "metadata":
        segments = tuple(rest.split("."))
        return lambda facts: normalize(path_get(getattr(facts, "metadata", None), segments))
    return lambda facts: normalize(constraint_value(getattr(facts, "constraints", None), rest))


def _approval_getter(spec: FieldSpec) -> Callable[[Any], object]:
    """Approval contexts carry `.job` (job facts), `.call` (one tool call or None) and the result's
    `.final_confidence`, `.final_tier`, `.cost_usd`."""
    name = spec.name
    if name == "tool":
        return lambda ctx: normalize(getattr(ctx.call, "name", None))
    if name in APPROVAL_FIELDS:
        return lambda ctx: normalize(getattr(ctx, name, None))
    if name.startswith("args."):
        segments = tuple(name[len("args.") :].split("."))

        def argument(ctx: Any) -> object:
            args = getattr(ctx.call, "args", None)
            return args if isinstance(args, Unreadable) else normalize(path_get(args, segments))

        return argument
    job_getter = _job_getter(spec)
    return lambda ctx: job_getter(ctx.job)


def field_getter(spec: FieldSpec, scope: str) -> Callable[[Any], object]:
    return _approval_getter(spec) if scope == SCOPE_APPROVAL else _job_getter(spec)
