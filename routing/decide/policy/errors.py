"""What is wrong with a policy document: `PolicyError` (a JSON path, a message and the source line when
known) and `InvalidPolicy`, which carries every one of them. Shared by the three layers of validation."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# A JSON path into a document: ("rules", 2, "escalate_below", "nano") is rules[2].escalate_below.nano.
Path = tuple[str | int, ...]


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


def policy_errors(problems: Sequence[tuple[Path, str]], lines: Mapping[Path, int]) -> list[PolicyError]:
    errors: dict[tuple[str, str], PolicyError] = {}
    for path, message in problems:
        error = PolicyError(format_path(path), message, line_at(lines, path))
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


def line_at(lines: Mapping[Path, int], path: Path) -> int | None:
    while True:
        if path in lines:
            return lines[path]
        if not path:
            return None
        path = path[:-1]
