"""`RuleMatcher`: the first matching rule of a list, in time that grows with the number of distinct
fields, not with the number of rules.

Each field's equality, exclusion, ordering and existence tests are indexed into bit masks of rules, so one
dictionary lookup or bisection rejects every rule it rules out. Glob patterns are indexed by their literal
prefix. Terms that do not index (`tools`, combinators, a second equality or exclusion test on one field)
are checked lazily, only for rules that are still candidates, lowest index first — so the result is
exactly the first rule whose conditions hold.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from typing import Any

from routing.decide.policy.conditions import Atom, Condition, Term
from routing.decide.policy.fields import SET_KINDS, TIER
from routing.decide.policy.values import MISSING, as_number, value_key
from routing.decide.tiers import tier_rank

_FAMILY = {"eq": "eq", "in": "eq", "ne": "ne", "not_in": "ne"}
_GLOB_META = re.compile(r"[*?\[]")


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
            pattern, operand = atom.pattern, atom.operand
            assert pattern is not None and isinstance(operand, str)  # compile_when: 'matches' takes a pattern
            prefix = _GLOB_META.split(operand, maxsplit=1)[0]  # the literal text before the first wildcard
            self.globs.setdefault(prefix, []).append((pattern, bit))
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
        key = value_key(value)
        if self.eq_rules:
            fail |= self.eq_rules & ~self.accept.get(key, 0)
        if self.ne_rules:
            allowed = self.ne_tags.get(key[0], 0) & ~self.excluded.get(key, 0) if key else 0
            fail |= self.ne_rules & ~allowed
        if self.glob_rules:
            fail |= self.glob_rules & ~self._glob_matches(value)
        if self.ordered:
            scaled = tier_rank(value) if self.kind == TIER else as_number(value)
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
                if not isinstance(term, Atom) or term.kind in SET_KINDS:
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
