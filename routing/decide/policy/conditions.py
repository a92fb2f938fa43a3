"""The closed condition language of policy documents: compiled conditions and their evaluation.

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

This module holds the compiled terms and their evaluation, two-valued (`holds`, `explain`) and
three-valued (`judge`); `compiler.compile_when` checks and compiles a `when` mapping into them, `fields`
says what each field is and how it is read, `values` how values are normalised and shown, and `matcher`
finds the first matching route rule through an index.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from fnmatch import translate
from typing import Any

from routing.decide.policy.fields import DETECTED, OPERATOR_ORDER, ORDERING_SYMBOLS, SET_KINDS, TIER, FieldSpec
from routing.decide.policy.values import (
    KIND_NAMES,
    MISSING,
    UNKNOWN,
    VALUE_TAGS,
    Unreadable,
    as_number,
    kind_name,
    show,
    show_list,
    value_key,
)
from routing.decide.tiers import TIER_NAMES, tier_rank


class Atom:
    """One `field op operand` test. `check` decides; `reason` says why, for either outcome."""

    __slots__ = ("field", "getter", "keys", "kind", "op", "operand", "pattern", "per_call", "rank", "tags")

    def __init__(self, spec: FieldSpec, op: str, operand: object, getter: Callable[[Any], object]) -> None:
        self.field = spec.name
        self.kind = spec.kind
        self.per_call: bool = spec.per_call
        self.op = op
        self.operand = operand
        self.getter = getter
        values = operand if isinstance(operand, tuple) else (operand,)
        self.keys = frozenset(value_key(value) for value in values)
        self.tags = frozenset(key[0] for key in self.keys if key)
        self.rank = tier_rank(operand) if spec.kind == TIER else None
        self.pattern = re.compile(translate(operand)) if op == "matches" and isinstance(operand, str) else None

    @property
    def sort_key(self) -> tuple[str, int]:
        return (self.field, OPERATOR_ORDER[self.op])

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
        if self.kind in SET_KINDS or op == "exists":
            return None
        if value is MISSING:
            return f"{self.field} is missing from the tool call" if self.field.startswith("args.") else None
        if op in ("eq", "ne", "in", "not_in"):
            key = value_key(value)
            if key is None or key[0] not in self.tags:
                return self._unknown(value, " or ".join(sorted(KIND_NAMES[tag] for tag in self.tags)))
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
        elif VALUE_TAGS.get(type(value)):
            what = f"{kind_name(value)} ({show(value)})"
        else:
            what = kind_name(value)
        if self.kind == TIER and type(value) is str:
            return f"{self.field} is {show(value)}, not a known tier ({', '.join(TIER_NAMES)})"
        return f"{self.field} is {what}; the condition compares with {wanted}"

    def comparable(self, value: object) -> int | float | None:
        """The value on the operand's scale for ordering operators, or None if it has none."""
        if self.kind == TIER:
            return tier_rank(value)
        return as_number(value)

    def check(self, value: object) -> bool:
        op = self.op
        if self.kind in SET_KINDS:
            return self._check_tools(value)  # type: ignore[arg-type]
        if op == "exists":
            return (value is not MISSING) is self.operand
        if value is MISSING:
            return False
        if op in ("eq", "in"):
            return value_key(value) in self.keys
        if op in ("ne", "not_in"):
            key = value_key(value)
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
        if self.kind in SET_KINDS:
            return self._tools_reason(value)  # type: ignore[arg-type]
        held = self.check(value)
        if op == "exists":
            if value is MISSING:
                return f"{field} is missing" if not held else f"{field} is absent"
            return f"{field} is present ({show(value)})" + ("" if held else " but must be absent")
        if value is MISSING:
            return f"{field} is missing"
        if op in ("eq", "ne", "in", "not_in"):
            key = value_key(value)
            if key is None or key[0] not in self.tags:
                return self._mismatch(value, " or ".join(sorted(KIND_NAMES[tag] for tag in self.tags)))
            if op == "eq":
                return f"{field} is {show(value)}" + ("" if held else f", not {show(self.operand)}")
            if op == "ne":
                return f"{field} is {show(value)}, " + (
                    f"not {show(self.operand)}" if held else "which the condition excludes"
                )
            inside = key in self.keys
            return f"{field} is {show(value)}, {'in' if inside else 'not in'} {show_list(self.operand)}"  # type: ignore[arg-type]
        if op == "matches":
            if type(value) is not str:
                return self._mismatch(value, "a string pattern")
            return f"{field} is {show(value)}, {'matches' if held else 'does not match'} {self.operand!r}"
        symbol = ORDERING_SYMBOLS[op]
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
            f"type mismatch: {self.field} is {show(value)} ({kind_name(value)}), the condition compares with {wanted}"
        )

    def _tools_reason(self, tools: tuple[str, ...]) -> str:
        op = self.op
        held = self._check_tools(tools)
        offered = show_list(tools) if tools else "none"
        if self.kind == DETECTED:
            return self._detected_reason(tools, held, offered)
        if op == "exists":
            return f"tools offered: {offered}"
        if op == "matches":
            return f"{'an' if held else 'no'} offered tool matches {self.operand!r} (tools: {offered})"
        listed = show_list(self.operand if isinstance(self.operand, tuple) else (self.operand,))
        if op in ("eq", "in"):
            return f"{'a tool in' if held else 'no tool in'} {listed} is offered (tools: {offered})"
        return f"{'no tool in' if held else 'a tool in'} {listed} is offered (tools: {offered})"

    def _detected_reason(self, kinds: tuple[str, ...], held: bool, found: str) -> str:
        op = self.op
        if op == "exists":
            return f"personal data detected in the prompt: {found}"
        if op == "matches":
            return f"{'a' if held else 'no'} detected kind matches {self.operand!r} (detected: {found})"
        listed = show_list(self.operand if isinstance(self.operand, tuple) else (self.operand,))
        seen = held if op in ("eq", "in") else not held
        return f"{'a kind in' if seen else 'no kind in'} {listed} is detected in the prompt (detected: {found})"


class AllOf:
    __slots__ = ("conditions", "per_call")
    field = "all"
    sort_key = ("all", 0)

    def __init__(self, conditions: tuple[Condition, ...]) -> None:
        self.conditions = conditions
        self.per_call: bool = any(condition.per_call for condition in conditions)

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
        self.per_call: bool = any(condition.per_call for condition in conditions)

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
        reasons: list[str] = []
        unknown: list[str] = []
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
        self.per_call: bool = condition.per_call

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
        self.terms: tuple[Term, ...] = tuple(sorted(terms, key=lambda term: term.sort_key))
        self.per_call: bool = any(term.per_call for term in self.terms)

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
    reasons: list[str] = []
    unknown: list[str] = []
    for term in terms:
        truth, reason = term.judge(ctx)
        if truth is False:
            return False, reason
        (unknown if truth is UNKNOWN else reasons).append(reason)
    if unknown:
        return UNKNOWN, "; ".join(unknown)
    return True, "; ".join(reasons)
