"""Policy documents: YAML or JSON text in, a validated, immutable `PolicyDocument` out.

Validation runs in three layers and reports every problem it finds as a `PolicyError` (a JSON path such
as `rules[2].escalate_below.nano`, a message, and the source line when known):
1. the source: at most 256 KiB, one document, JSON-representable only — YAML is read with the YAML 1.2
   core schema (so `no` stays a string), anchors and aliases are refused (no alias bombs), and so are
   tags for dates, binary, sets or Python objects, non-string keys, duplicate keys and non-finite numbers;
2. the published JSON Schema (`schema.json`, draft 2020-12);
3. semantic checks the schema cannot express: unique ids, cascades climbing nano < mini < flagship,
   thresholds only on non-final cascade tiers, known confidence methods, durations, unreachable rules,
   and the closed condition language itself (`conditions.py`).

A document's identity is the SHA-256 of its canonical JSON (sorted keys, no whitespace, UTF-8), the same
canonical form the ledger hashes; the same policy written as YAML or JSON has the same hash.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from routing.decide.confidence import known_methods, schema_problem
from routing.decide.policy.conditions import (
    SCOPE_APPROVAL,
    SCOPE_ROUTE,
    Condition,
    Path,
    RuleMatcher,
    compile_when,
)
from routing.decide.tiers import TIER_NAMES, tier_rank

MAX_DOCUMENT_BYTES = 256 * 1024
MAX_DEPTH = 48
DEFAULT_ESCALATE_BELOW = 0.7
DEFAULT_CONFIDENCE: Mapping[str, str] = {"method": "logprob", "fallback": "self_report"}
DEFAULT_GROUP = "reviewer"
# The roles (controlplane.roles.Role) that may decide an approval. Auditors read, they never decide; and a
# group Arbiter has no role for would leave nobody (or, worse, somebody unintended) eligible.
APPROVAL_GROUPS = ("reviewer", "policy_admin")
DEFAULT_EXPIRES_AFTER_S = 24 * 3600
MAX_EXPIRES_AFTER_S = 365 * 24 * 3600


@dataclass(frozen=True, slots=True)
class PolicyError:
    path: str
    message: str
    line: int | None = None

    def to_record(self) -> dict[str, Any]:
        return {"path": self.path, "message": self.message, "line": self.line}

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.path or '(document)'}: {self.message}"


class InvalidPolicy(ValueError):
    def __init__(self, errors: Sequence[PolicyError]) -> None:
        self.errors = tuple(errors)
        super().__init__("; ".join(map(str, self.errors[:5])) + ("; ..." if len(self.errors) > 5 else ""))


# ---------------------------------------------------------------- the model


@dataclass(frozen=True, slots=True)
class ConfidenceSpec:
    method: str
    fallback: str | None = None
    tier: str | None = None  # judge tier for `verifier`; the document's `verifier.tier` otherwise
    output_schema: Mapping[str, Any] | bool | None = None  # for `schema`


@dataclass(frozen=True, slots=True)
class DeploymentConstraints:
    regions: tuple[str, ...] = ()  # empty: any region
    names: tuple[str, ...] = ()  # empty: any deployment; else allowed names, in order of preference
    require: frozenset[str] = frozenset()  # capabilities every deployment must have

    def describe(self) -> str:
        parts = []
        if self.regions:
            parts.append(f"region {', '.join(self.regions)}")
        if self.names:
            parts.append(f"names {', '.join(self.names)}")
        if self.require:
            parts.append(f"capabilities {', '.join(sorted(self.require))}")
        return "; ".join(parts) or "none"


@dataclass(frozen=True, slots=True)
class Limits:
    max_output_tokens: int | None = None
    timeout_s: float | None = None

    def to_record(self) -> dict[str, Any]:
        return {"max_output_tokens": self.max_output_tokens, "timeout_s": self.timeout_s}


@dataclass(frozen=True, slots=True)
class ShadowSpec:
    rate: float
    tier: str


@dataclass(frozen=True, slots=True)
class RouteRule:
    id: str
    description: str
    cascade: tuple[str, ...]
    escalate_below: Mapping[str, float]  # every non-final cascade tier, defaults filled in
    threshold_defaulted: frozenset[str]  # tiers whose threshold came from the document default
    confidence: ConfidenceSpec
    deployments: DeploymentConstraints
    limits: Limits
    shadow: ShadowSpec | None
    condition: Condition = field(compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class ApprovalRule:
    id: str
    description: str
    approvers: int
    group: str
    expires_after_s: int
    on_expiry: str
    condition: Condition = field(compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class BudgetPolicy:
    on_hard_limit: str = "reject"
    downgrade_cascade: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, eq=False)
class PolicyDocument:
    """A validated policy. Equal documents are those with equal canonical JSON."""

    version: int
    rules: tuple[RouteRule, ...]
    approvals: tuple[ApprovalRule, ...]
    blocked_tools: frozenset[str]
    budgets: BudgetPolicy
    verifier_tier: str | None
    complexity_method: str
    complexity_tier: str
    default_escalate_below: float
    sha256: str
    _canonical: str = field(repr=False)
    matcher: RuleMatcher = field(repr=False)
    source_lines: Mapping[Path, int] = field(default_factory=dict, repr=False)
    # Whether any rule reads `detected`: only then do the personal-data detectors run on a job's prompt.
    detects_personal_data: bool = False

    def line_of(self, path: Path) -> int | None:
        """The source line of a JSON path, when the document was loaded from text."""
        return _line(self.source_lines, path)

    def canonical_json(self) -> str:
        """Sorted keys, no whitespace, non-ASCII kept; hash its UTF-8 bytes to get `sha256`."""
        return self._canonical

    def as_data(self) -> dict[str, Any]:
        """A fresh copy of the document as parsed JSON data."""
        return json.loads(self._canonical)

    def rule(self, rule_id: str) -> RouteRule | None:
        return next((rule for rule in self.rules if rule.id == rule_id), None)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PolicyDocument) and other.sha256 == self.sha256

    def __hash__(self) -> int:
        return hash(self.sha256)


def canonical_json(data: object) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


# ---------------------------------------------------------------- entry points


def load_policy(text: str | bytes) -> PolicyDocument:
    """Parse and validate YAML or JSON text. Raises `InvalidPolicy` listing every error found."""
    data, lines, errors = parse_source(text)
    if errors:
        raise InvalidPolicy(errors)
    document = _validated(data, lines)
    problems = _approval_group_problems(document)
    if problems:
        raise InvalidPolicy(_policy_errors(problems, lines))
    return document


def _approval_group_problems(document: PolicyDocument) -> list[tuple[Path, str]]:
    """Written documents may name only groups that can decide. Checked on text (every new version and the
    editor's check), not on stored versions: one written before the rule still loads, and its holds are
    then decided by nobody (review.services), never by a fallback group."""
    return [
        (
            ("approvals", index, "group"),
            f"unknown approval group {rule.group!r}: an approval rule's group must be one of "
            f"{', '.join(APPROVAL_GROUPS)}",
        )
        for index, rule in enumerate(document.approvals)
        if rule.group not in APPROVAL_GROUPS
    ]


def policy_from_data(data: object) -> PolicyDocument:
    """Validate already-parsed data (e.g. a stored version's JSON). Raises `InvalidPolicy`."""
    errors = _json_problems(data, ())
    if errors:
        raise InvalidPolicy([PolicyError(format_path(path), message) for path, message in errors])
    return _validated(data, {})


def check_policy(text: str | bytes) -> list[PolicyError]:
    """Every error in `text`; empty when it is a valid policy."""
    try:
        load_policy(text)
    except InvalidPolicy as invalid:
        return list(invalid.errors)
    return []


def _validated(data: Any, lines: Mapping[Path, int]) -> PolicyDocument:
    problems = _schema_problems(data)
    document = None
    if not problems:
        document, problems = _build(data, lines)
    if problems:
        raise InvalidPolicy(_policy_errors(problems, lines))
    assert document is not None
    return document


def _policy_errors(problems: Sequence[tuple[Path, str]], lines: Mapping[Path, int]) -> list[PolicyError]:
    errors = {}
    for path, message in problems:
        error = PolicyError(format_path(path), message, _line(lines, path))
        errors.setdefault((error.path, error.message), error)
    return sorted(errors.values(), key=lambda error: (error.line or 0, error.path))


def format_path(path: Path) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part):
            text += f".{part}" if text else part
        else:
            text += f"[{json.dumps(part, ensure_ascii=False)}]"
    return text


def _line(lines: Mapping[Path, int], path: Path) -> int | None:
    while True:
        if path in lines:
            return lines[path]
        if not path:
            return None
        path = path[:-1]


# ---------------------------------------------------------------- layer 1: the source


def parse_source(text: str | bytes) -> tuple[Any, dict[Path, int], list[PolicyError]]:
    """(data, line of each JSON path, errors) for YAML or JSON text."""
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    if len(raw) > MAX_DOCUMENT_BYTES:
        return None, {}, [PolicyError("", f"the document is {len(raw):,} bytes; the limit is 256 KiB")]
    if isinstance(text, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            return None, {}, [PolicyError("", f"the document is not UTF-8 text: {error}")]
    text = text.removeprefix("\ufeff")
    if not text.strip():
        return None, {}, [PolicyError("", "the document is empty")]
    stripped = text.lstrip()
    json_error = None
    if stripped.startswith(("{", "[")):
        data, lines, errors, json_error = _parse_json(text)
        if json_error is None:
            return data, lines, errors
    data, lines, errors = _parse_yaml(text)
    if errors and json_error is not None and re.match(r'\[|\{\s*["}]', stripped):
        return None, {}, [json_error]  # it was meant as JSON: its own error reads better
    if not errors and not isinstance(data, dict):
        errors = [PolicyError("", "the document must be a mapping with a 'rules' list")]
    return data, lines, errors


def _line_starts(text: str) -> list[int]:
    return [0, *(match.end() for match in re.finditer("\n", text))]


def _parse_json(text: str) -> tuple[Any, dict[Path, int], list[PolicyError], PolicyError | None]:
    def refuse_constant(name: str) -> None:
        raise ValueError(f"{name} is not allowed: the document must be plain JSON")

    try:
        data = json.loads(text, parse_constant=refuse_constant)
    except json.JSONDecodeError as error:
        return (
            None,
            {},
            [],
            PolicyError("", f"JSON syntax error: {error.msg} (column {error.colno})", error.lineno),
        )
    except (ValueError, RecursionError) as error:
        return None, {}, [], PolicyError("", f"invalid JSON: {error}"[:300])
    problems = _json_problems(data, ())
    if problems:
        return None, {}, [PolicyError(format_path(path), message) for path, message in problems], None
    starts = _line_starts(text)
    lines: dict[Path, int] = {}
    duplicates: list[tuple[Path, int]] = []
    _index_json(text, 0, (), lines, duplicates, starts)
    errors = [PolicyError(format_path(path), "duplicate key", line) for path, line in duplicates]
    if not isinstance(data, dict) and not errors:
        errors = [PolicyError("", "the document must be a mapping with a 'rules' list", 1)]
    return data, lines, errors, None


def _json_problems(data: object, path: Path, depth: int = 0) -> list[tuple[Path, str]]:
    """What keeps `data` from being plain JSON: depth, non-string keys, non-finite numbers, other types."""
    if depth > MAX_DEPTH:
        return [(path, f"the document is nested more than {MAX_DEPTH} levels deep")]
    if isinstance(data, dict):
        problems = []
        for key, value in data.items():
            if not isinstance(key, str):
                problems.append(((*path, str(key)), "keys must be strings"))
            else:
                problems.extend(_json_problems(value, (*path, key), depth + 1))
        return problems
    if isinstance(data, list):
        return [p for index, item in enumerate(data) for p in _json_problems(item, (*path, index), depth + 1)]
    if isinstance(data, float) and not math.isfinite(data):
        return [(path, "numbers must be finite")]
    if data is None or isinstance(data, str | int | float | bool):
        return []
    return [(path, f"a {type(data).__name__} is not JSON data")]


_WHITESPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


def _index_json(
    text: str,
    at: int,
    path: Path,
    lines: dict[Path, int],
    duplicates: list[tuple[Path, int]],
    starts: list[int],
) -> int:
    """Record the line of every value of already-valid JSON `text`; return the index after the value."""
    at = _WHITESPACE.match(text, at).end()  # type: ignore[union-attr]
    lines.setdefault(path, bisect_right(starts, at))
    opener = text[at]
    if opener not in "{[":
        _, end = _DECODER.raw_decode(text, at)
        return end
    closer, index, seen = ("}" if opener == "{" else "]"), 0, set()
    at = _WHITESPACE.match(text, at + 1).end()  # type: ignore[union-attr]
    if text[at] == closer:
        return at + 1
    while True:
        if opener == "{":
            key_at = at
            key, at = json.decoder.scanstring(text, at + 1)  # type: ignore[attr-defined]
            child = (*path, key)
            if key in seen:
                duplicates.append((child, bisect_right(starts, key_at)))
            seen.add(key)
            lines[child] = bisect_right(starts, key_at)
            at = _WHITESPACE.match(text, at).end() + 1  # type: ignore[union-attr]  # the ':'
        else:
            child = (*path, index)
            index += 1
        at = _index_json(text, at, child, lines, duplicates, starts)
        at = _WHITESPACE.match(text, at).end()  # type: ignore[union-attr]
        if text[at] == closer:
            return at + 1
        at = _WHITESPACE.match(text, at + 1).end()  # type: ignore[union-attr]  # past the ','


class _Refused(yaml.YAMLError):
    def __init__(self, message: str, mark: yaml.Mark | None) -> None:
        super().__init__(message)
        self.message, self.mark = message, mark


_PLAIN = "tag:arbiter:plain"
_STANDARD = "tag:yaml.org,2002:"


class _Loader(
    yaml.reader.Reader,
    yaml.scanner.Scanner,
    yaml.parser.Parser,
    yaml.composer.Composer,
    yaml.resolver.BaseResolver,
):
    """Composes a node tree only: no constructors run, no anchors or aliases, plain scalars left
    unresolved so that `_construct` can apply the YAML 1.2 core schema."""

    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)
        yaml.resolver.BaseResolver.__init__(self)

    def compose_node(self, parent: Node | None, index: object) -> Node:
        event = self.peek_event()
        if isinstance(event, AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _Refused("YAML anchors and aliases are not allowed in a policy", event.start_mark)
        return super().compose_node(parent, index)

    def resolve(self, kind: type, value: str, implicit: tuple[bool, bool]) -> str:
        if kind is ScalarNode and implicit[0]:
            return _PLAIN
        return super().resolve(kind, value, implicit)


def _parse_yaml(text: str) -> tuple[Any, dict[Path, int], list[PolicyError]]:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except _Refused as refused:
        return None, {}, [PolicyError("", refused.message, refused.mark.line + 1 if refused.mark else None)]
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        message = " ".join(part for part in (error.context, error.problem) if part)
        return None, {}, [PolicyError("", f"YAML syntax error: {message}", mark.line + 1 if mark else None)]
    except yaml.YAMLError as error:
        return None, {}, [PolicyError("", f"YAML error: {error}"[:300])]
    except RecursionError:
        return None, {}, [PolicyError("", f"the document is nested more than {MAX_DEPTH} levels deep")]
    finally:
        loader.dispose()
    if node is None:
        return None, {}, [PolicyError("", "the document is empty")]
    lines: dict[Path, int] = {(): node.start_mark.line + 1}
    errors: list[PolicyError] = []
    data = _construct(node, (), lines, errors, 0)
    return data, lines, errors


_CORE_NULL = {"", "~", "null", "Null", "NULL"}
_CORE_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_CORE_INT = re.compile(r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+")
_CORE_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_CORE_SPECIAL = re.compile(r"[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)")


def _core_scalar(value: str) -> Any:
    """A plain scalar under the YAML 1.2 core schema — the JSON-compatible one."""
    if value in _CORE_NULL:
        return None
    if value in _CORE_BOOL:
        return _CORE_BOOL[value]
    if _CORE_INT.fullmatch(value):
        if value.startswith(("0o", "0x")):
            return int(value[2:], 8 if value[1] == "o" else 16)
        return int(value)
    if _CORE_FLOAT.fullmatch(value):
        return float(value)
    if _CORE_SPECIAL.fullmatch(value):
        raise ValueError("infinite and NaN numbers are not allowed")
    return value


def _construct(node: Node, path: Path, lines: dict[Path, int], errors: list[PolicyError], depth: int) -> Any:
    line = node.start_mark.line + 1
    if depth > MAX_DEPTH:
        errors.append(PolicyError(format_path(path), f"nested more than {MAX_DEPTH} levels deep", line))
        return None
    tag = node.tag
    if isinstance(node, ScalarNode):
        try:
            if tag == _STANDARD + "str":
                return node.value
            value = _core_scalar(node.value)
            expected = {"int": int, "float": float, "bool": bool, "null": type(None)}
            if tag != _PLAIN:
                wanted = expected.get(tag.removeprefix(_STANDARD)) if tag.startswith(_STANDARD) else None
                if wanted is None:
                    raise ValueError(f"the YAML tag {tag!r} is not allowed: a policy must be plain JSON data")
                if wanted is float and type(value) is int:
                    value = float(value)
                if type(value) is not wanted:
                    raise ValueError(f"{node.value!r} is not a valid {tag.removeprefix(_STANDARD)}")
            return value
        except ValueError as error:
            errors.append(PolicyError(format_path(path), str(error)[:200], line))
            return None
    if tag not in (_STANDARD + "seq", _STANDARD + "map"):
        errors.append(PolicyError(format_path(path), f"the YAML tag {tag!r} is not allowed", line))
        return None
    if isinstance(node, SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            items.append(_construct(item, (*path, index), lines, errors, depth + 1))
        return items
    assert isinstance(node, MappingNode)
    mapping: dict[str, Any] = {}
    for key_node, value_node in node.value:
        key_line = key_node.start_mark.line + 1
        key = _construct(key_node, path, {}, errors, depth + 1) if isinstance(key_node, ScalarNode) else None
        if not isinstance(key, str):
            errors.append(PolicyError(format_path(path), "mapping keys must be strings", key_line))
            continue
        child = (*path, key)
        if key in mapping:
            errors.append(PolicyError(format_path(child), "duplicate key", key_line))
        lines[child] = key_line
        mapping[key] = _construct(value_node, child, lines, errors, depth + 1)
    return mapping


# ---------------------------------------------------------------- layer 2: the JSON Schema


@cache
def policy_schema() -> dict[str, Any]:
    """The published JSON Schema of policy documents."""
    return json.loads(resources.files("routing.decide.policy").joinpath("schema.json").read_text("utf-8"))


@cache
def _schema_validator() -> Draft202012Validator:
    return Draft202012Validator(policy_schema())


def _schema_problems(data: Any) -> list[tuple[Path, str]]:
    problems: list[tuple[Path, str]] = []
    conditions_checked: dict[Path, bool] = {}
    for error in _schema_validator().iter_errors(data):
        path = tuple(error.absolute_path)
        when = _enclosing_when(path)
        if when is not None:
            # The condition language's own checker names the field and operator at fault; a schema
            # anyOf over condition shapes could only say that none of three shapes fit.
            if when not in conditions_checked:
                scope = SCOPE_ROUTE if when[0] == "rules" else SCOPE_APPROVAL
                _, condition_errors = compile_when(_at(data, when), scope=scope, path=when)
                problems.extend((e.path, e.message) for e in condition_errors)
                conditions_checked[when] = bool(condition_errors)
            if conditions_checked[when]:
                continue
        problems.extend(_translate(error))
    return problems


def _enclosing_when(path: Path) -> Path | None:
    if len(path) >= 3 and path[0] in ("rules", "approvals") and isinstance(path[1], int) and path[2] == "when":
        return path[:3]
    return None


def _at(data: Any, path: Path) -> Any:
    for part in path:
        data = data[part]
    return data


_JSON_TYPES = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}


_SCHEMA_TYPES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "number": "a number",
    "integer": "an integer",
    "boolean": "true or false",
    "null": "null",
}


def _schema_types(types: str | list[str]) -> str:
    names = [types] if isinstance(types, str) else types
    return " or ".join(_SCHEMA_TYPES.get(name, name) for name in names)


def _json_type(value: object) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "a number"
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _translate(error: ValidationError) -> list[tuple[Path, str]]:
    path = tuple(error.absolute_path)
    keyword, expected, instance = error.validator, error.validator_value, error.instance
    if "propertyNames" in error.relative_schema_path:
        return [((*path, str(instance)), f"unknown key {instance!r} (expected one of {', '.join(TIER_NAMES)})")]
    if keyword == "required":
        return [((*path,), f"missing required property '{name}'") for name in expected if name not in instance]
    if keyword == "additionalProperties":
        allowed = ", ".join(error.schema.get("properties", {}))
        extras = [key for key in instance if key not in error.schema.get("properties", {})]
        return [((*path, key), f"unknown property '{key}' (allowed: {allowed})") for key in extras]
    if keyword == "type":
        return [(path, f"expected {_schema_types(expected)}, got {_json_type(instance)}")]
    if keyword == "enum":
        return [(path, f"{json.dumps(instance)} is not one of: {', '.join(map(str, expected))}")]
    if keyword == "const":
        return [(path, f"must be {json.dumps(expected)}")]
    if keyword == "minItems":
        return [(path, "must not be empty" if expected == 1 else f"needs at least {expected} items")]
    if keyword == "maxItems":
        return [(path, f"has more than {expected} items")]
    if keyword in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        bound = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}[keyword]
        return [(path, f"{json.dumps(instance)} must be {bound} {expected}")]
    if keyword == "uniqueItems":
        return [(path, "items must be unique")]
    if keyword == "pattern":
        if expected.startswith("^[A-Za-z0-9]"):
            return [(path, f"invalid id {instance!r}: 1-64 letters, digits, '-', '_', '.' or ':'")]
        if "smhd" in expected:
            return [(path, f"invalid duration {instance!r}: use e.g. 90s, 30m, 4h, 2d or 1h30m")]
        if expected.startswith("^[a-z_]"):
            return [(path, f"invalid method name {instance!r}")]
        return [(path, f"{instance!r} does not match {expected}")]
    if keyword in ("anyOf", "oneOf") and error.context:
        # A branch of another type says nothing useful ("expected string, got a mapping"): report the
        # branch the value's own type fits, or, if none fits, every type that would have.
        fitting = [e for e in error.context if not (e.validator == "type" and not e.relative_path)]
        if fitting:
            return _translate(best_match(fitting))
        types = [e.validator_value for e in error.context]
        wanted = sorted({t for value in types for t in (value if isinstance(value, list) else [value])})
        return [(path, f"expected {_schema_types(wanted)}, got {_json_type(instance)}")]
    return [(path, error.message)]


# ---------------------------------------------------------------- layer 3: semantics


_DURATION = re.compile(r"([0-9]+)([smhd])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: str | int) -> int:
    """Seconds in `4h`, `30m`, `1h30m`, `2d`, `90s` or a plain number of seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or text such as 4h")
    if isinstance(value, int):
        seconds = value
    else:
        parts = _DURATION.findall(value)
        if not parts or "".join(number + unit for number, unit in parts) != value:
            raise ValueError(f"invalid duration {value!r}: use e.g. 90s, 30m, 4h, 2d or 1h30m")
        seconds = sum(int(number[:12]) * _SECONDS[unit] for number, unit in parts)
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    if seconds > MAX_EXPIRES_AFTER_S:
        raise ValueError("a duration may be at most 365 days")
    return seconds


class _Builder:
    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = data
        self.problems: list[tuple[Path, str]] = []
        defaults = data.get("defaults", {})
        self.default_threshold = float(defaults.get("escalate_below", DEFAULT_ESCALATE_BELOW))
        self.verifier_tier = data.get("verifier", {}).get("tier")
        self.default_confidence = self.confidence(
            defaults.get("confidence", DEFAULT_CONFIDENCE), ("defaults", "confidence")
        )
        self.default_limits = defaults.get("limits", {})

    def problem(self, path: Path, message: str) -> None:
        self.problems.append((path, message))

    def confidence(self, raw: str | Mapping[str, Any] | None, path: Path) -> ConfidenceSpec:
        if raw is None:
            return self.default_confidence
        spec = ConfidenceSpec(raw) if isinstance(raw, str) else ConfidenceSpec(**raw)
        methods = known_methods()
        here = path if isinstance(raw, str) else (*path, "method")
        for name, where in ((spec.method, here), (spec.fallback, (*path, "fallback"))):
            if name is not None and name not in methods:
                self.problem(where, f"unknown confidence method '{name}' (known: {', '.join(methods)})")
        if spec.fallback is not None and spec.fallback == spec.method:
            self.problem((*path, "fallback"), "the fallback must differ from the method")
        used = {spec.method, spec.fallback}
        if "verifier" in used and spec.tier is None and self.verifier_tier is None:
            self.problem(path, "the verifier method needs a judge tier: set 'tier' here or a top-level 'verifier'")
        if "schema" in used:
            if spec.output_schema is None:
                self.problem(path, "the schema method needs an 'output_schema'")
            else:
                message = schema_problem(spec.output_schema)
                if message:
                    self.problem((*path, "output_schema"), message)
        return spec

    def cascade(self, tiers: Sequence[str], path: Path) -> tuple[str, ...]:
        for index in range(1, len(tiers)):
            if tier_rank(tiers[index]) <= tier_rank(tiers[index - 1]):  # type: ignore[operator]
                self.problem(
                    (*path, index),
                    f"the cascade must climb strictly (nano < mini < flagship): "
                    f"'{tiers[index]}' comes after '{tiers[index - 1]}'",
                )
        return tuple(tiers)

    def rule(self, raw: Mapping[str, Any], path: Path) -> RouteRule:
        condition, errors = compile_when(raw.get("when", {}), scope=SCOPE_ROUTE, path=(*path, "when"))
        self.problems.extend((error.path, error.message) for error in errors)
        cascade = self.cascade(raw["cascade"], (*path, "cascade"))
        given = raw.get("escalate_below", {})
        for tier, threshold in given.items():
            where = (*path, "escalate_below", tier)
            if tier not in cascade:
                self.problem(where, f"'{tier}' is not in this rule's cascade [{', '.join(cascade)}]")
            elif tier == cascade[-1]:
                self.problem(
                    where,
                    f"'{tier}' is the cascade's last tier: its answer is final, so it takes no threshold",
                )
            elif not 0 <= threshold <= 1:
                self.problem(where, "a threshold must be between 0 and 1")
        thresholds = {tier: float(given.get(tier, self.default_threshold)) for tier in cascade[:-1]}
        deployments = raw.get("deployments", {})
        region = deployments.get("region", ())
        shadow = raw.get("shadow")
        return RouteRule(
            id=raw["id"],
            description=raw.get("description", ""),
            cascade=cascade,
            escalate_below=thresholds,
            threshold_defaulted=frozenset(tier for tier in cascade[:-1] if tier not in given),
            confidence=self.confidence(raw.get("confidence"), (*path, "confidence")),
            deployments=DeploymentConstraints(
                regions=(region,) if isinstance(region, str) else tuple(region),
                names=tuple(deployments.get("names", ())),
                require=frozenset(deployments.get("require", ())),
            ),
            limits=Limits(**{**self.default_limits, **raw.get("limits", {})}),
            shadow=ShadowSpec(float(shadow["rate"]), shadow["tier"]) if shadow else None,
            condition=condition or Condition(()),
        )

    def approval(self, raw: Mapping[str, Any], path: Path) -> ApprovalRule:
        condition, errors = compile_when(raw["when"], scope=SCOPE_APPROVAL, path=(*path, "when"))
        self.problems.extend((error.path, error.message) for error in errors)
        expires_after_s = DEFAULT_EXPIRES_AFTER_S
        if "expires_after" in raw:
            try:
                expires_after_s = parse_duration(raw["expires_after"])
            except ValueError as error:
                self.problem((*path, "expires_after"), str(error))
        return ApprovalRule(
            id=raw["id"],
            description=raw.get("description", ""),
            approvers=raw.get("approvers", 1),
            group=raw.get("group", DEFAULT_GROUP),
            expires_after_s=expires_after_s,
            on_expiry=raw.get("on_expiry", "reject"),
            condition=condition or Condition(()),
        )

    def unique_ids(self, items: Sequence[Mapping[str, Any]], section: str) -> None:
        first: dict[str, int] = {}
        for index, item in enumerate(items):
            if item["id"] in first:
                self.problem(
                    (section, index, "id"),
                    f"duplicate id '{item['id']}' (also {section}[{first[item['id']]}])",
                )
            first.setdefault(item["id"], index)

    def unreachable(self, rules: Sequence[Mapping[str, Any]]) -> None:
        """A rule after a catch-all, or after a rule with the same conditions, can never be chosen."""
        seen: dict[str, str] = {}
        catch_all = None
        for index, raw in enumerate(rules):
            when = canonical_json(raw.get("when", {}))
            if catch_all is not None:
                self.problem(
                    ("rules", index),
                    f"rule '{raw['id']}' can never match: rule '{catch_all}' above it has no conditions",
                )
            elif when in seen:
                self.problem(
                    ("rules", index),
                    f"rule '{raw['id']}' can never match: rule '{seen[when]}' above it has the same conditions",
                )
            seen.setdefault(when, raw["id"])
            if not raw.get("when"):
                catch_all = catch_all or raw["id"]


def _build(data: Mapping[str, Any], lines: Mapping[Path, int]) -> tuple[PolicyDocument | None, list[tuple[Path, str]]]:
    builder = _Builder(data)
    builder.unique_ids(data["rules"], "rules")
    builder.unique_ids(data.get("approvals", []), "approvals")
    builder.unreachable(data["rules"])
    rules = tuple(builder.rule(raw, ("rules", index)) for index, raw in enumerate(data["rules"]))
    approvals = tuple(
        builder.approval(raw, ("approvals", index)) for index, raw in enumerate(data.get("approvals", []))
    )
    budgets = data.get("budgets", {})
    downgrade = builder.cascade(budgets.get("downgrade_cascade", ()), ("budgets", "downgrade_cascade"))
    if builder.problems:
        return None, builder.problems
    canonical = canonical_json(data)
    document = PolicyDocument(
        version=data.get("version", 1),
        rules=rules,
        approvals=approvals,
        blocked_tools=frozenset(data.get("blocked_tools", ())),
        budgets=BudgetPolicy(budgets.get("on_hard_limit", "reject"), downgrade),
        verifier_tier=builder.verifier_tier,
        complexity_method=data.get("complexity", {}).get("method", "heuristic"),
        complexity_tier=data.get("complexity", {}).get("tier", "nano"),
        default_escalate_below=builder.default_threshold,
        sha256=hashlib.sha256(canonical.encode("utf-8")).hexdigest(),
        _canonical=canonical,
        matcher=RuleMatcher([rule.condition for rule in rules]),
        source_lines=dict(lines),
        detects_personal_data=any("detected" in rule.condition.fields() for rule in (*rules, *approvals)),
    )
    return document, []
