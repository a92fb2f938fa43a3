"""Reading a `when` mapping: check it against the condition language and compile it into a `Condition`.

Every problem is reported, each as a `ConditionError` naming the JSON path of the offending entry and
what is wrong with it (an unknown field or operator, an operand of the wrong type, a value the field can
never take), so a policy's author sees them all at once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from routing.decide.policy.conditions import AllOf, AnyOf, Atom, Condition, Not, Term
from routing.decide.policy.errors import Path
from routing.decide.policy.fields import (
    COMBINATORS,
    DETECTED,
    NUMBER,
    OPERATORS,
    SET_KINDS,
    STRING,
    TASK_TYPE,
    TIER,
    FieldSpec,
    field_getter,
    resolve_field,
)
from routing.decide.policy.values import kind_name, show
from routing.decide.tiers import TASK_TYPES, TIER_NAMES


@dataclass(frozen=True, slots=True)
class ConditionError:
    path: Path
    message: str


def compile_when(when: object, *, scope: str, path: Path = ()) -> tuple[Condition | None, list[ConditionError]]:
    """Check and compile a `when` mapping. Errors name the JSON path of the offending entry."""
    errors: list[ConditionError] = []
    condition = _compile(when, scope, path, errors)
    return (None if errors else condition), errors


def _compile(when: object, scope: str, path: Path, errors: list[ConditionError]) -> Condition:
    if not isinstance(when, Mapping):
        errors.append(ConditionError(path, "conditions must be a mapping of field to condition"))
        return Condition(())
    terms: list[Term] = []
    for name, condition in when.items():
        here = (*path, name)
        if not isinstance(name, str):
            errors.append(ConditionError(here, "field names must be strings"))
        elif name in COMBINATORS:
            term = _compile_combinator(name, condition, scope, here, errors)
            if term is not None:
                terms.append(term)
        else:
            terms.extend(_compile_field(name, condition, scope, here, errors))
    return Condition(terms)


def _compile_combinator(name: str, body: object, scope: str, path: Path, errors: list[ConditionError]) -> Term | None:
    if name == "not":
        if not isinstance(body, Mapping) or not body:
            errors.append(ConditionError(path, "'not' takes a non-empty mapping of conditions"))
            return None
        return Not(_compile(body, scope, path, errors))
    if not isinstance(body, list) or not body:
        errors.append(ConditionError(path, f"'{name}' takes a non-empty list of condition mappings"))
        return None
    children = tuple(_compile(child, scope, (*path, index), errors) for index, child in enumerate(body))
    return AllOf(children) if name == "all" else AnyOf(children)


def _compile_field(name: str, condition: object, scope: str, path: Path, errors: list[ConditionError]) -> list[Atom]:
    spec = resolve_field(name, scope)
    if isinstance(spec, str):
        errors.append(ConditionError(path, spec))
        return []
    if isinstance(condition, Mapping):
        if not condition:
            errors.append(ConditionError(path, f"no operator given for '{name}' ({', '.join(OPERATORS)})"))
            return []
        operations = list(condition.items())
        operator_path = True
    elif isinstance(condition, list):
        operations, operator_path = [("in", condition)], False
    else:
        operations, operator_path = [("eq", condition)], False
    getter = field_getter(spec, scope)
    atoms = []
    for op, operand in operations:
        here = (*path, op) if operator_path else path
        message = _operand_error(spec, op, operand)
        if message:
            errors.append(ConditionError(here, message))
            continue
        frozen = tuple(operand) if isinstance(operand, list) else operand
        atoms.append(Atom(spec, op, frozen, getter))
    return atoms


def _is_scalar(value: object) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str | int | bool)


def _value_error(spec: FieldSpec, value: object) -> str | None:
    """Why `value` can never be equal to this field's values, or None if it can."""
    if value is None:
        return "null is not a value here (to test for absence use exists: false)"
    if isinstance(value, float) and not math.isfinite(value):
        return "non-finite numbers are not allowed"
    if not _is_scalar(value):
        return f"{kind_name(value)} is not allowed here: use a string, number or boolean"
    kind = spec.kind
    if kind == TASK_TYPE and value not in TASK_TYPES:
        return f"unknown task type {show(value)} (known: {', '.join(TASK_TYPES)})"
    if kind == TIER and not (isinstance(value, str) and value in TIER_NAMES):
        return f"unknown tier {show(value)} (known: {', '.join(TIER_NAMES)})"
    if kind in (STRING, *SET_KINDS) and not isinstance(value, str):
        return f"{spec.name} is a string; {show(value)} is {kind_name(value)}"
    if kind == DETECTED and isinstance(value, str) and value != value.lower():
        # Kinds are lowercase (email, phone, iban, card, ...): 'EMAIL' would silently never match.
        return f"detected kinds are lowercase: use {show(value.lower())}, not {show(value)}"
    if kind == NUMBER and (isinstance(value, bool) or not isinstance(value, int | float)):
        return f"{spec.name} is a number; {show(value)} is {kind_name(value)}"
    return None


def _operand_error(spec: FieldSpec, op: object, operand: object) -> str | None:
    name = spec.name
    if op not in OPERATORS:
        return f"unknown operator {op!r} for '{name}' (known: {', '.join(OPERATORS)})"
    if op == "exists":
        return None if isinstance(operand, bool) else "'exists' takes true or false"
    if op == "matches":
        if spec.kind == NUMBER:
            return f"'matches' does not apply to the number field '{name}'"
        return None if isinstance(operand, str) else "'matches' takes a glob pattern string"
    if op in ("in", "not_in"):
        if not isinstance(operand, list) or not operand:
            return f"'{op}' takes a non-empty list of values"
        for value in operand:
            message = _value_error(spec, value)
            if message:
                return message
        return None
    if op in ("eq", "ne"):
        return _value_error(spec, operand)
    if spec.kind == TIER:
        return (
            None
            if isinstance(operand, str) and operand in TIER_NAMES
            else (f"'{op}' on '{name}' takes a tier ({', '.join(TIER_NAMES)})")
        )
    if spec.kind in (TASK_TYPE, STRING, *SET_KINDS):
        return f"'{op}' does not apply to '{name}' (it is not a number)"
    if isinstance(operand, bool) or not isinstance(operand, int | float) or not _is_scalar(operand):
        return f"'{op}' takes a number, not {show(operand) if _is_scalar(operand) else kind_name(operand)}"
    return None
