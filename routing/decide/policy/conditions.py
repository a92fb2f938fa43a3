"""The closed condition language of policy documents.

A `when` mapping holds `field: condition` entries, all of which must hold. A bare scalar means `eq`, a
bare list means `in`, a mapping holds operators (`eq ne in not_in lt lte gt gte matches exists`); the
combinators `any: [when, ...]`, `all: [when, ...]` and `not: when` nest. Nothing is ever evaluated as code.

Semantics every caller relies on:
- a missing field (absent, or None) fails every operator except `exists: false` — it never raises;
- a value of the wrong type (a string compared with a number) fails, and the reason says so;
- `matches` is a case-sensitive glob (fnmatch) on strings;
- ordering on tier fields (`constraints.min_tier`, `final_tier`, ...) follows nano < mini < flagship;
- `tools` is the set of tool names a job offers: `eq` means "is offered", `in` "any of these is offered",
  `not_in` "none of these is offered", `matches` "some offered tool matches", `exists` "any tool offered";
- `detected` is the set of kinds of personal data the redaction detectors (audit.redaction: email, phone,
  iban, card, and the configured detectors' labels, lowercased) find in the job's prompt, with the same
  operators: `detected: [email, iban]` holds when either is found. It is computed once per job, and only
  for a policy that reads it (`PolicyDocument.detects_personal_data`).

Approval rules fail closed (`Condition.judge`, three-valued): model output is attacker-controlled, so a
test that cannot be evaluated is *unknown*, not false — a value of the wrong type for its operator
("5000", an object, a list, a boolean or NaN where a number is compared; a non-string for `matches`), a
missing `args.*` field, or tool-call arguments that are not a JSON object at all (`Unreadable`). Unknowns
combine by Kleene logic (a conjunction is false if a term is false, else unknown if one is unknown; `any`
is true if one is true, else unknown if one is unknown; `not unknown` is unknown), and a rule whose
condition is unknown holds, its reason saying what could not be evaluated. A missing field the
application supplies (labels, metadata, constraints) is still simply not equal. Route rules keep the
two-valued semantics above.

Terms are checked in field-name order, not source order, so that an explanation depends only on the
document's canonical JSON (and so on its hash), never on how the YAML happened to be laid out.

`RuleMatcher` finds the first matching rule of a list in time that grows with the number of distinct
fields, not with the number of rules: each field's equality, exclusion, ordering and existence tests are
indexed into bit masks of rules, so one dictionary lookup or bisection rejects every rule it rules out.
Glob patterns are indexed by their literal prefix. Terms that do not index (`tools`, combinators, a
second equality or exclusion test on one field) are checked lazily, only for rules that are
still candidates, lowest index first — so the result is exactly the first rule whose conditions hold.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import translate
from typing import Any

from routing.decide.tiers import TASK_TYPES, TIER_NAMES, tier_rank

SCOPE_ROUTE = "route"
SCOPE_APPROVAL = "approval"

OPERATORS: tuple[str, ...] = ("eq", "ne", "in", "not_in", "lt", "lte", "gt", "gte", "matches", "exists")
COMBINATORS: tuple[str, ...] = ("all", "any", "not")
_ORDERING = {"lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
_OP_ORDER = {op: index for index, op in enumerate(OPERATORS)}

# Field kinds decide which operators and operand types a field accepts.
TASK_TYPE = "task_type"
STRING = "string"
NUMBER = "number"
TIER = "tier"
SCALAR = "scalar"  # labels, metadata, args: a string, number or boolean
TOOLS = "tools"
DETECTED = "detected"
_SETS = (TOOLS, DETECTED)  # fields whose value is a set of names, tested by membership

_ROUTE_FIELDS: dict[str, str] = {
    "task_type": TASK_TYPE,
    "input_tokens": NUMBER,
    "complexity": NUMBER,
    "application": STRING,
    "tools": TOOLS,
    "detected": DETECTED,
}
_CONSTRAINT_FIELDS: dict[str, str] = {
    "latency_budget_ms": NUMBER,
    "cost_cap_usd": NUMBER,
    "min_tier": TIER,
    "max_tier": TIER,
}
_APPROVAL_FIELDS: dict[str, str] = {
    "tool": STRING,
    "final_confidence": NUMBER,
    "cost_usd": NUMBER,
    "final_tier": TIER,
}
_PREFIXES = ("labels.", "metadata.", "constraints.")
_APPROVAL_PREFIXES = ("args.",)


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A model-output value that could not be read at all (tool-call arguments that are not a JSON
    object): every approval test on it is unknown, and the reason says why."""

    reason: str


# Approval-scope truth values (Kleene): True, False, or UNKNOWN when a test cannot be evaluated.
UNKNOWN: Any = None

Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class ConditionError:
    path: Path
    message: str


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    kind: str
    per_call: bool  # read from one tool call of a result (`tool`, `args.*`)


def known_fields(scope: str) -> list[str]:
    names = [*_ROUTE_FIELDS, *(f"constraints.{name}" for name in _CONSTRAINT_FIELDS)]
    names += ["labels.<name>", "metadata.<path>"]
    if scope == SCOPE_APPROVAL:
        names += [*_APPROVAL_FIELDS, "args.<path>"]
    return names


def resolve_field(name: str, scope: str) -> FieldSpec | str:
    """The spec of a field name, or an error message naming what is wrong with it."""
    if name in _ROUTE_FIELDS:
        return FieldSpec(name, _ROUTE_FIELDS[name], per_call=False)
    if name in _APPROVAL_FIELDS:
        if scope != SCOPE_APPROVAL:
            return f"field '{name}' is only available in approval rules"
        return FieldSpec(name, _APPROVAL_FIELDS[name], per_call=name == "tool")
    prefix, _, rest = name.partition(".")
    if prefix in ("labels", "metadata", "args") and rest and all(rest.split(".")):
        if prefix == "args" and scope != SCOPE_APPROVAL:
            return f"field '{name}' is only available in approval rules"
        return FieldSpec(name, SCALAR, per_call=prefix == "args")
    if prefix == "constraints" and rest in _CONSTRAINT_FIELDS:
        return FieldSpec(name, _CONSTRAINT_FIELDS[rest], per_call=False)
    if prefix == "constraints":
        return f"unknown constraint '{rest}' (known: {', '.join(_CONSTRAINT_FIELDS)})"
    return f"unknown field '{name}' (known: {', '.join(known_fields(scope))})"


# ---------------------------------------------------------------- values


def normalize(raw: object) -> object:
    """Facts arrive from callers in many shapes; conditions see only str, int, float, bool, MISSING or
    'other' (present, but equal to nothing and comparable with nothing)."""
    kind = type(raw)
    if kind is str or kind is int or kind is float or kind is bool:
        return raw
    if raw is None or raw is MISSING:
        return MISSING
    if isinstance(raw, str):
        return str.__str__(raw)
    if isinstance(raw, bool):
        return bool(raw)
    if isinstance(raw, int):
        return int.__int__(raw)
    if isinstance(raw, float):
        return float.__float__(raw)
    return raw


_TAGS: dict[type, str] = {str: "s", int: "n", float: "n", bool: "b"}
_KIND_NAMES = {"s": "a string", "n": "a number", "b": "a boolean"}


def _key(value: object) -> tuple[str, object] | None:
    tag = _TAGS.get(type(value))
    return None if tag is None else (tag, value)


def _kind_name(value: object) -> str:
    if value is MISSING:
        return "missing"
    tag = _TAGS.get(type(value))
    return _KIND_NAMES[tag] if tag else f"a {type(value).__name__}"


def show(value: object) -> str:
    """A value as a person reads it in an explanation."""
    if value is MISSING:
        return "missing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) < 10**30 else f"<a {value.bit_length()}-bit integer>"
    if isinstance(value, float):
        if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
            return f"{int(value):,}"
        return f"{value:,}" if math.isfinite(value) and abs(value) < 1e15 else repr(value)
    if isinstance(value, str):
        text = value if len(value) <= 80 else value[:77] + "..."
        return repr(text)
    return f"<{type(value).__name__}>"


def _show_list(values: Sequence[object]) -> str:
    # Inside a list, digit grouping would read as more items: [1000, 2], not [1,000, 2].
    return "[" + ", ".join(v if isinstance(v, str) else show(v).replace(",", "") for v in values) + "]"


def _number(value: object) -> int | float | None:
    if type(value) is int:
        return value
    if type(value) is float and not math.isnan(value):
        return value
    return None


# ---------------------------------------------------------------- getters


def _mapping_get(container: object, key: str) -> object:
    if type(container) is dict or isinstance(container, Mapping):
        return container.get(key, MISSING)
    return MISSING


def _path_get(container: object, segments: tuple[str, ...]) -> object:
    value = container
    for segment in segments:
        if isinstance(value, Mapping):
            value = value.get(segment, MISSING)
        elif isinstance(value, list | tuple) and segment.isdigit():
            index = int(segment)
            value = value[index] if index < len(value) else MISSING
        else:
            return MISSING
        if value is MISSING:
            return MISSING
    return value


def constraint_value(constraints: object, name: str) -> object:
    """A job constraint, from a `Constraints` object or a mapping."""
    if type(constraints) is dict or isinstance(constraints, Mapping):
        return constraints.get(name, MISSING)  # type: ignore[union-attr]
    return getattr(constraints, name, MISSING)


def tool_names(raw: object) -> tuple[str, ...]:
    if type(raw) is tuple and all(type(name) is str for name in raw):
        return raw  # type: ignore[return-value]
    if isinstance(raw, str):
        return (str.__str__(raw),)
    if isinstance(raw, list | tuple | set | frozenset):
        return tuple(str.__str__(name) for name in raw if isinstance(name, str))
    return ()


def _job_getter(spec: FieldSpec) -> Callable[[Any], object]:
    name = spec.name
    if name in _SETS:
        return lambda facts: tool_names(getattr(facts, name, ()))
    if name in _ROUTE_FIELDS:
        return lambda facts: normalize(getattr(facts, name, None))
    prefix, _, rest = name.partition(".")
    if prefix == "labels":
        return lambda facts: normalize(_mapping_get(getattr(facts, "labels", None), rest))
    if prefix == "metadata":
        segments = tuple(rest.split("."))
        return lambda facts: normalize(_path_get(getattr(facts, "metadata", None), segments))
    return lambda facts: normalize(constraint_value(getattr(facts, "constraints", None), rest))


def _approval_getter(spec: FieldSpec) -> Callable[[Any], object]:
    """Approval contexts carry `.job` (job facts), `.call` (one tool call or None) and the result's
    `.final_confidence`, `.final_tier`, `.cost_usd`."""
    name = spec.name
    if name == "tool":
        return lambda ctx: normalize(getattr(ctx.call, "name", None))
    if name in _APPROVAL_FIELDS:
        return lambda ctx: normalize(getattr(ctx, name, None))
    if name.startswith("args."):
        segments = tuple(name[len("args.") :].split("."))

        def argument(ctx: Any) -> object:
            args = getattr(ctx.call, "args", None)
            return args if isinstance(args, Unreadable) else normalize(_path_get(args, segments))

        return argument
    job_getter = _job_getter(spec)
    return lambda ctx: job_getter(ctx.job)


def _getter(spec: FieldSpec, scope: str) -> Callable[[Any], object]:
    return _approval_getter(spec) if scope == SCOPE_APPROVAL else _job_getter(spec)


# ---------------------------------------------------------------- terms


class Atom:
    """One `field op operand` test. `check` decides; `reason` says why, for either outcome."""

    __slots__ = ("field", "getter", "keys", "kind", "op", "operand", "pattern", "per_call", "rank", "tags")

    def __init__(self, spec: FieldSpec, op: str, operand: object, getter: Callable[[Any], object]) -> None:
        self.field = spec.name
        self.kind = spec.kind
        self.per_call = spec.per_call
        self.op = op
        self.operand = operand
        self.getter = getter
        values = operand if isinstance(operand, tuple) else (operand,)
        self.keys = frozenset(_key(value) for value in values)
        self.tags = frozenset(key[0] for key in self.keys if key)
        self.rank = tier_rank(operand) if spec.kind == TIER else None
        self.pattern = re.compile(translate(operand)) if op == "matches" else None

    @property
    def sort_key(self) -> tuple[str, int]:
        return (self.field, _OP_ORDER[self.op])

    def holds(self, ctx: object) -> bool:
        return self.check(self.getter(ctx))

    def explain(self, ctx: object) -> tuple[bool, str]:
        value = self.getter(ctx)
        return self.check(value), self.reason(value)

    def judge(self, ctx: object) -> tuple[bool | None, str]:
        """Approval scope: (True, False or UNKNOWN, reason). UNKNOWN when the value cannot be tested."""
        value = self.getter(ctx)
        why = self.undecidable(value)
        if why is not None:
            return UNKNOWN, why
        return self.check(value), self.reason(value)

    def undecidable(self, value: object) -> str | None:
        """Why this test cannot be evaluated on `value`, or None when it can.

        Model output is attacker-controlled, so in approval rules a value of the wrong type (a string
        where a number is compared, an object, a list, NaN) and a missing `args.*` field are unknowns,
        never a plain "does not match". A missing field the application supplies is simply not equal."""
        if isinstance(value, Unreadable):
            return value.reason
        op = self.op
        if self.kind in _SETS or op == "exists":
            return None
        if value is MISSING:
            return f"{self.field} is missing from the tool call" if self.field.startswith("args.") else None
        if op in ("eq", "ne", "in", "not_in"):
            key = _key(value)
            if key is None or key[0] not in self.tags:
                return self._unknown(value, " or ".join(sorted(_KIND_NAMES[tag] for tag in self.tags)))
            return None
        if op == "matches":
            return None if type(value) is str else self._unknown(value, "a string pattern")
        if self.comparable(value) is None:
            if type(value) is float:
                return f"{self.field} is nan; the condition compares with a number"
            return self._unknown(value, "a tier" if self.kind == TIER else "a number")
        return None

    def _unknown(self, value: object, wanted: str) -> str:
        if isinstance(value, Mapping):
            what = "an object"
        elif isinstance(value, list | tuple):
            what = "a list"
        elif _TAGS.get(type(value)):
            what = f"{_kind_name(value)} ({show(value)})"
        else:
            what = _kind_name(value)
        if self.kind == TIER and type(value) is str:
            return f"{self.field} is {show(value)}, not a known tier ({', '.join(TIER_NAMES)})"
        return f"{self.field} is {what}; the condition compares with {wanted}"

    def comparable(self, value: object) -> int | float | None:
        """The value on the operand's scale for ordering operators, or None if it has none."""
        if self.kind == TIER:
            return tier_rank(value)
        return _number(value)

    def check(self, value: object) -> bool:
        op = self.op
        if self.kind in _SETS:
            return self._check_tools(value)  # type: ignore[arg-type]
        if op == "exists":
            return (value is not MISSING) is self.operand
        if value is MISSING:
            return False
        if op in ("eq", "in"):
            return _key(value) in self.keys
        if op in ("ne", "not_in"):
            key = _key(value)
            return key is not None and key[0] in self.tags and key not in self.keys
        if op == "matches":
            return type(value) is str and self.pattern.match(value) is not None  # type: ignore[union-attr]
        scaled = self.comparable(value)
        if scaled is None:
            return False
        bound = self.rank if self.kind == TIER else self.operand
        if op == "lt":
            return scaled < bound  # type: ignore[operator]
        if op == "lte":
            return scaled <= bound  # type: ignore[operator]
        if op == "gt":
            return scaled > bound  # type: ignore[operator]
        return scaled >= bound  # type: ignore[operator]

    def _check_tools(self, tools: tuple[str, ...]) -> bool:
        op = self.op
        if op == "exists":
            return bool(tools) is self.operand
        if op == "matches":
            return any(self.pattern.match(name) for name in tools)  # type: ignore[union-attr]
        offered = any(("s", name) in self.keys for name in tools)
        return offered if op in ("eq", "in") else not offered

    def reason(self, value: object) -> str:
        field, op = self.field, self.op
        if self.kind in _SETS:
            return self._tools_reason(value)  # type: ignore[arg-type]
        held = self.check(value)
        if op == "exists":
            if value is MISSING:
                return f"{field} is missing" if not held else f"{field} is absent"
            return f"{field} is present ({show(value)})" + ("" if held else " but must be absent")
        if value is MISSING:
            return f"{field} is missing"
        if op in ("eq", "ne", "in", "not_in"):
            key = _key(value)
            if key is None or key[0] not in self.tags:
                return self._mismatch(value, " or ".join(sorted(_KIND_NAMES[tag] for tag in self.tags)))
            if op == "eq":
                return f"{field} is {show(value)}" + ("" if held else f", not {show(self.operand)}")
            if op == "ne":
                return f"{field} is {show(value)}, " + (
                    f"not {show(self.operand)}" if held else "which the condition excludes"
                )
            inside = key in self.keys
            return f"{field} is {show(value)}, {'in' if inside else 'not in'} {_show_list(self.operand)}"  # type: ignore[arg-type]
        if op == "matches":
            if type(value) is not str:
                return self._mismatch(value, "a string pattern")
            return f"{field} is {show(value)}, {'matches' if held else 'does not match'} {self.operand!r}"
        symbol = _ORDERING[op]
        if self.comparable(value) is None:
            if self.kind == TIER:
                if type(value) is str:
                    return f"{field} is {show(value)}, not a known tier ({', '.join(TIER_NAMES)})"
                return self._mismatch(value, "a tier")
            if type(value) is float:
                return f"{field} is nan, not comparable with {show(self.operand)}"
            return self._mismatch(value, "a number")
        return f"{field} is {show(value)}, {'' if held else 'not '}{symbol} {show(self.operand)}"

    def _mismatch(self, value: object, wanted: str) -> str:
        return (
            f"type mismatch: {self.field} is {show(value)} ({_kind_name(value)}), the condition compares with {wanted}"
        )

    def _tools_reason(self, tools: tuple[str, ...]) -> str:
        op = self.op
        held = self._check_tools(tools)
        offered = _show_list(tools) if tools else "none"
        if self.kind == DETECTED:
            return self._detected_reason(tools, held, offered)
        if op == "exists":
            return f"tools offered: {offered}"
        if op == "matches":
            return f"{'an' if held else 'no'} offered tool matches {self.operand!r} (tools: {offered})"
        listed = _show_list(self.operand if isinstance(self.operand, tuple) else (self.operand,))
        if op in ("eq", "in"):
            return f"{'a tool in' if held else 'no tool in'} {listed} is offered (tools: {offered})"
        return f"{'no tool in' if held else 'a tool in'} {listed} is offered (tools: {offered})"

    def _detected_reason(self, kinds: tuple[str, ...], held: bool, found: str) -> str:
        op = self.op
        if op == "exists":
            return f"personal data detected in the prompt: {found}"
        if op == "matches":
            return f"{'a' if held else 'no'} detected kind matches {self.operand!r} (detected: {found})"
        listed = _show_list(self.operand if isinstance(self.operand, tuple) else (self.operand,))
        seen = held if op in ("eq", "in") else not held
        return f"{'a kind in' if seen else 'no kind in'} {listed} is detected in the prompt (detected: {found})"


class AllOf:
    __slots__ = ("conditions", "per_call")
    field = "all"
    sort_key = ("all", 0)

    def __init__(self, conditions: tuple[Condition, ...]) -> None:
        self.conditions = conditions
        self.per_call = any(condition.per_call for condition in conditions)

    def holds(self, ctx: object) -> bool:
        return all(condition.holds(ctx) for condition in self.conditions)

    def explain(self, ctx: object) -> tuple[bool, str]:
        reasons = []
        for condition in self.conditions:
            held, reason = condition.explain(ctx)
            if not held:
                return False, f"all: {reason}"
            reasons.append(reason)
        return True, "all: " + "; ".join(reasons)

    def judge(self, ctx: object) -> tuple[bool | None, str]:
        truth, reason = _judge_all(self.conditions, ctx)
        return truth, f"all: {reason}"


class AnyOf:
    __slots__ = ("conditions", "per_call")
    field = "any"
    sort_key = ("any", 0)

    def __init__(self, conditions: tuple[Condition, ...]) -> None:
        self.conditions = conditions
        self.per_call = any(condition.per_call for condition in conditions)

    def holds(self, ctx: object) -> bool:
        return any(condition.holds(ctx) for condition in self.conditions)

    def explain(self, ctx: object) -> tuple[bool, str]:
        reasons = []
        for condition in self.conditions:
            held, reason = condition.explain(ctx)
            if held:
                return True, f"any: {reason}"
            reasons.append(reason)
        return False, "none of any held: " + " | ".join(reasons)

    def judge(self, ctx: object) -> tuple[bool | None, str]:
        """Kleene: true if one holds, else unknown if one is unknown, else false."""
        reasons, unknown = [], []
        for condition in self.conditions:
            truth, reason = condition.judge(ctx)
            if truth is True:
                return True, f"any: {reason}"
            (unknown if truth is UNKNOWN else reasons).append(reason)
        if unknown:
            return UNKNOWN, "any: " + " | ".join(unknown)
        return False, "none of any held: " + " | ".join(reasons)


class Not:
    __slots__ = ("condition", "per_call")
    field = "not"
    sort_key = ("not", 0)

    def __init__(self, condition: Condition) -> None:
        self.condition = condition
        self.per_call = condition.per_call

    def holds(self, ctx: object) -> bool:
        return not self.condition.holds(ctx)

    def explain(self, ctx: object) -> tuple[bool, str]:
        held, reason = self.condition.explain(ctx)
        return not held, f"not ({reason})"

    def judge(self, ctx: object) -> tuple[bool | None, str]:
        truth, reason = self.condition.judge(ctx)
        return (UNKNOWN if truth is UNKNOWN else not truth), f"not ({reason})"


Term = Atom | AllOf | AnyOf | Not


class Condition:
    """A compiled `when`: every term must hold. An empty `when` always holds."""

    __slots__ = ("per_call", "terms")

    def __init__(self, terms: Sequence[Term]) -> None:
        self.terms = tuple(sorted(terms, key=lambda term: term.sort_key))
        self.per_call = any(term.per_call for term in self.terms)

    def fields(self) -> set[str]:
        """Every field this condition reads, combinators included."""
        found: set[str] = set()
        for term in self.terms:
            if isinstance(term, Atom):
                found.add(term.field)
            elif isinstance(term, Not):
                found |= term.condition.fields()
            else:
                for condition in term.conditions:
                    found |= condition.fields()
        return found

    def holds(self, ctx: object) -> bool:
        return all(term.holds(ctx) for term in self.terms)

    def explain(self, ctx: object) -> tuple[bool, str]:
        """(held, reason): the first failing term's reason, or what held."""
        if not self.terms:
            return True, "no conditions"
        reasons = []
        for term in self.terms:
            held, reason = term.explain(ctx)
            if not held:
                return False, reason
            reasons.append(reason)
        return True, "; ".join(reasons)

    def judge(self, ctx: object) -> tuple[bool | None, str]:
        """Approval scope, three-valued: False if a term fails, else UNKNOWN if a term cannot be
        evaluated (the reason lists those), else True."""
        if not self.terms:
            return True, "no conditions"
        return _judge_all(self.terms, ctx)


def _judge_all(terms: Sequence[Term | Condition], ctx: object) -> tuple[bool | None, str]:
    """Kleene conjunction: a failing term decides even when another is unknown (`tool: issue_refund`
    fails for another tool's call whatever its arguments are)."""
    reasons, unknown = [], []
    for term in terms:
        truth, reason = term.judge(ctx)
        if truth is False:
            return False, reason
        (unknown if truth is UNKNOWN else reasons).append(reason)
    if unknown:
        return UNKNOWN, "; ".join(unknown)
    return True, "; ".join(reasons)


# ---------------------------------------------------------------- compiling


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
    getter = _getter(spec, scope)
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
        return f"{_kind_name(value)} is not allowed here: use a string, number or boolean"
    kind = spec.kind
    if kind == TASK_TYPE and value not in TASK_TYPES:
        return f"unknown task type {show(value)} (known: {', '.join(TASK_TYPES)})"
    if kind == TIER and not (isinstance(value, str) and value in TIER_NAMES):
        return f"unknown tier {show(value)} (known: {', '.join(TIER_NAMES)})"
    if kind in (STRING, *_SETS) and not isinstance(value, str):
        return f"{spec.name} is a string; {show(value)} is {_kind_name(value)}"
    if kind == DETECTED and value != value.lower():  # type: ignore[union-attr]
        # Kinds are lowercase (email, phone, iban, card, ...): 'EMAIL' would silently never match.
        return f"detected kinds are lowercase: use {show(value.lower())}, not {show(value)}"  # type: ignore[union-attr]
    if kind == NUMBER and (isinstance(value, bool) or not isinstance(value, int | float)):
        return f"{spec.name} is a number; {show(value)} is {_kind_name(value)}"
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
    if spec.kind in (TASK_TYPE, STRING, *_SETS):
        return f"'{op}' does not apply to '{name}' (it is not a number)"
    if isinstance(operand, bool) or not isinstance(operand, int | float) or not _is_scalar(operand):
        return f"'{op}' takes a number, not {show(operand) if _is_scalar(operand) else _kind_name(operand)}"
    return None


# ---------------------------------------------------------------- the rule index


_FAMILY = {"eq": "eq", "in": "eq", "ne": "ne", "not_in": "ne"}
_GLOB_PREFIX = re.compile(r"[^*?\[]*")


class _FieldIndex:
    """Every indexable test on one field, across all rules, as bit masks over rule positions.

    A rule contributes at most one equality test (eq/in) and one exclusion test (ne/not_in) per field:
    masks of two tests of one family would merge into their union, so a second one stays lazy."""

    __slots__ = (
        "accept",
        "eq_rules",
        "excluded",
        "exists_false",
        "exists_true",
        "getter",
        "glob_lengths",
        "glob_rules",
        "globs",
        "kind",
        "ne_rules",
        "ne_tags",
        "ordered",
        "pending",
    )

    def __init__(self, getter: Callable[[Any], object], kind: str) -> None:
        self.getter = getter
        self.kind = kind
        self.eq_rules = 0
        self.accept: dict[object, int] = {}
        self.ne_rules = 0
        self.excluded: dict[object, int] = {}
        self.ne_tags: dict[str, int] = {}
        self.exists_true = 0
        self.exists_false = 0
        # `matches`: patterns by their literal prefix, so a value meets only the patterns it could match.
        self.glob_rules = 0
        self.globs: dict[str, list[tuple[re.Pattern[str], int]]] = {}
        self.glob_lengths: tuple[int, ...] = ()
        self.pending: dict[str, list[tuple[int | float, int]]] = {}
        # op -> (sorted bounds, cumulative fail masks), built by `freeze`.
        self.ordered: dict[str, tuple[list[int | float], list[int]]] = {}

    def add(self, atom: Atom, bit: int) -> None:
        op = atom.op
        if op in ("eq", "in"):
            self.eq_rules |= bit
            for key in atom.keys:
                self.accept[key] = self.accept.get(key, 0) | bit
        elif op in ("ne", "not_in"):
            self.ne_rules |= bit
            for key in atom.keys:
                self.excluded[key] = self.excluded.get(key, 0) | bit
            for tag in atom.tags:
                self.ne_tags[tag] = self.ne_tags.get(tag, 0) | bit
        elif op == "matches":
            self.glob_rules |= bit
            prefix = _GLOB_PREFIX.match(atom.operand).group()  # type: ignore[arg-type, union-attr]
            self.globs.setdefault(prefix, []).append((atom.pattern, bit))  # type: ignore[arg-type]
        elif op == "exists":
            if atom.operand:
                self.exists_true |= bit
            else:
                self.exists_false |= bit
        else:
            bound = atom.rank if self.kind == TIER else atom.operand
            self.pending.setdefault(op, []).append((bound, bit))  # type: ignore[arg-type]

    def freeze(self) -> None:
        for op, entries in self.pending.items():
            entries.sort(key=lambda entry: entry[0])
            bounds = [bound for bound, _ in entries]
            masks = [bit for _, bit in entries]
            if op in ("gt", "gte"):
                # gt fails where bound >= value, gte where bound > value: a suffix of the sorted bounds.
                cumulative = [0] * (len(masks) + 1)
                for index in range(len(masks) - 1, -1, -1):
                    cumulative[index] = cumulative[index + 1] | masks[index]
            else:
                # lt fails where bound <= value, lte where bound < value: a prefix.
                cumulative = [0]
                for mask in masks:
                    cumulative.append(cumulative[-1] | mask)
            self.ordered[op] = (bounds, cumulative)
        self.pending = {}
        self.glob_lengths = tuple(sorted({len(prefix) for prefix in self.globs}))

    def failing(self, value: object) -> int:
        """Mask of the rules this field's value rules out."""
        if value is MISSING:
            fail = self.eq_rules | self.ne_rules | self.exists_true | self.glob_rules
            for _, cumulative in self.ordered.values():
                fail |= cumulative[0] | cumulative[-1]
            return fail
        fail = self.exists_false
        key = _key(value)
        if self.eq_rules:
            fail |= self.eq_rules & ~self.accept.get(key, 0)
        if self.ne_rules:
            allowed = self.ne_tags.get(key[0], 0) & ~self.excluded.get(key, 0) if key else 0
            fail |= self.ne_rules & ~allowed
        if self.glob_rules:
            fail |= self.glob_rules & ~self._glob_matches(value)
        if self.ordered:
            scaled = tier_rank(value) if self.kind == TIER else _number(value)
            for op, (bounds, cumulative) in self.ordered.items():
                if scaled is None:
                    fail |= cumulative[0] | cumulative[-1]
                elif op == "gt" or op == "lte":
                    fail |= cumulative[bisect_left(bounds, scaled)]
                else:
                    fail |= cumulative[bisect_right(bounds, scaled)]
        return fail

    def _glob_matches(self, value: object) -> int:
        if type(value) is not str:
            return 0
        matched = 0
        for length in self.glob_lengths:
            if length > len(value):
                break
            for pattern, bit in self.globs.get(value[:length], ()):
                if pattern.match(value):
                    matched |= bit
        return matched


class RuleMatcher:
    """First-match evaluation of a list of route conditions, indexed by field (see module doc)."""

    __slots__ = ("all_rules", "conditions", "fields", "residual")

    def __init__(self, conditions: Sequence[Condition]) -> None:
        self.conditions = tuple(conditions)
        self.all_rules = (1 << len(self.conditions)) - 1
        indexes: dict[str, _FieldIndex] = {}
        self.residual: list[tuple[Term, ...]] = []
        for position, condition in enumerate(self.conditions):
            bit = 1 << position
            lazy: list[Term] = []
            families: set[tuple[str, str]] = set()
            for term in condition.terms:
                if not isinstance(term, Atom) or term.kind in _SETS:
                    lazy.append(term)
                    continue
                family = (term.field, _FAMILY.get(term.op, term.op))
                if family in families:
                    lazy.append(term)
                    continue
                families.add(family)
                index = indexes.get(term.field)
                if index is None:
                    index = indexes[term.field] = _FieldIndex(term.getter, term.kind)
                index.add(term, bit)
            self.residual.append(tuple(lazy))
        for index in indexes.values():
            index.freeze()
        self.fields = tuple(indexes.values())

    def first_match(self, facts: object) -> int | None:
        """Position of the first rule whose conditions hold for `facts`, or None."""
        candidates = self.all_rules
        for index in self.fields:
            candidates &= ~index.failing(index.getter(facts))
            if not candidates:
                return None
        residual = self.residual
        while candidates:
            lowest = candidates & -candidates
            position = lowest.bit_length() - 1
            if all(term.holds(facts) for term in residual[position]):
                return position
            candidates ^= lowest
        return None
