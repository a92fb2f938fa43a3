"""Layer 1 of policy validation, the source: YAML or JSON text in, plain JSON data and the source line of
every JSON path out.

At most 256 KiB, one document, JSON-representable only — YAML is read with the YAML 1.2 core schema (so
`no` stays a string), anchors and aliases are refused (no alias bombs), and so are tags for dates, binary,
sets or Python objects, non-string keys, duplicate keys and non-finite numbers. `canonical_json` is the
other direction: the one text of a document's data that its identity (SHA-256) is taken over.
"""

from __future__ import annotations

import json
import math
import re
from bisect import bisect_right
from typing import Any

import yaml
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from routing.decide.policy.errors import Path, PolicyError, format_path

MAX_DOCUMENT_BYTES = 256 * 1024
MAX_DEPTH = 48


def canonical_json(data: object) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


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
    problems = json_problems(data, ())
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


def json_problems(data: object, path: Path, depth: int = 0) -> list[tuple[Path, str]]:
    """What keeps `data` from being plain JSON: depth, non-string keys, non-finite numbers, other types."""
    if depth > MAX_DEPTH:
        return [(path, f"the document is nested more than {MAX_DEPTH} levels deep")]
    if isinstance(data, dict):
        problems = []
        for key, value in data.items():
            if not isinstance(key, str):
                problems.append(((*path, str(key)), "keys must be strings"))
            else:
                problems.extend(json_problems(value, (*path, key), depth + 1))
        return problems
    if isinstance(data, list):
        return [p for index, item in enumerate(data) for p in json_problems(item, (*path, index), depth + 1)]
    if isinstance(data, float) and not math.isfinite(data):
        return [(path, "numbers must be finite")]
    if data is None or isinstance(data, str | int | float | bool):
        return []
    return [(path, f"a {type(data).__name__} is not JSON data")]


_WHITESPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


def _skip_whitespace(text: str, at: int) -> int:
    match = _WHITESPACE.match(text, at)  # never None: the pattern also matches the empty string
    return match.end() if match else at


def _index_json(
    text: str,
    at: int,
    path: Path,
    lines: dict[Path, int],
    duplicates: list[tuple[Path, int]],
    starts: list[int],
) -> int:
    """Record the line of every value of already-valid JSON `text`; return the index after the value."""
    at = _skip_whitespace(text, at)
    lines.setdefault(path, bisect_right(starts, at))
    opener = text[at]
    if opener not in "{[":
        _, end = _DECODER.raw_decode(text, at)
        return end
    closer, index, seen = ("}" if opener == "{" else "]"), 0, set()
    at = _skip_whitespace(text, at + 1)
    if text[at] == closer:
        return at + 1
    while True:
        if opener == "{":
            key_at = at
            key, at = _DECODER.raw_decode(text, at)  # the key: a JSON string
            child = (*path, key)
            if key in seen:
                duplicates.append((child, bisect_right(starts, key_at)))
            seen.add(key)
            lines[child] = bisect_right(starts, key_at)
            at = _skip_whitespace(text, at) + 1  # past the ':'
        else:
            child = (*path, index)
            index += 1
        at = _index_json(text, at, child, lines, duplicates, starts)
        at = _skip_whitespace(text, at)
        if text[at] == closer:
            return at + 1
        at = _skip_whitespace(text, at + 1)  # past the ','


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

    # PyYAML passes an item's position, or for a mapping value its key's node (the stubs say int only).
    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
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
