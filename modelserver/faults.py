"""Fault knobs per model id: errors, rate limits, slowness, hangs and generation pace (``token_ms``, see
``streaming``), changeable while serving.

Knobs are keyed by the full model id (``sim-nano-b`` apart from ``sim-nano``) so a same-tier fallback
deployment can stay healthy while its primary fails. ``"*"`` sets every model at once.
"""

from __future__ import annotations

import random
import threading
from dataclasses import asdict, dataclass, replace
from typing import Any

WILDCARD = "*"


@dataclass(frozen=True)
class Faults:
    error_rate: float = 0.0
    rate_limit_rate: float = 0.0
    retry_after: float = 1.0
    slow_ms: int = 0
    hang: bool = False
    token_ms: int = 0


def _rate(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise ValueError(f"must be a number between 0 and 1, got {value!r}")
    return float(value)


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 86400:
        raise ValueError(f"must be a number of seconds between 0 and 86400, got {value!r}")
    return float(value)


def _milliseconds(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 600_000:
        raise ValueError(f"must be an integer number of milliseconds between 0 and 600000, got {value!r}")
    return value


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {value!r}")
    return value


KNOBS = {
    "error_rate": _rate,
    "rate_limit_rate": _rate,
    "retry_after": _seconds,
    "slow_ms": _milliseconds,
    "hang": _flag,
    "token_ms": _milliseconds,
}


class FaultKnobError(ValueError):
    def __init__(self, knob: str, message: str) -> None:
        super().__init__(message)
        self.knob = knob


def validate_knobs(knobs: dict[str, Any]) -> dict[str, Any]:
    """Check knob names and values; raises ``FaultKnobError`` naming the knob."""
    checked = {}
    for name, value in knobs.items():
        if name not in KNOBS:
            raise FaultKnobError(name, f"unknown fault knob {name!r}; knobs are {', '.join(KNOBS)}")
        try:
            checked[name] = KNOBS[name](value)
        except ValueError as exc:
            raise FaultKnobError(name, f"{name} {exc}") from None
    return checked


def parse_fault_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``sim-nano:error_rate=0.5,retry_after=2,hang=true`` → (model, validated knobs)."""
    model, sep, assignments = spec.partition(":")
    if not sep or not model:
        raise ValueError(f"expected MODEL:knob=value,..., got {spec!r}")
    knobs: dict[str, Any] = {}
    for assignment in filter(None, assignments.split(",")):
        name, sep, raw = assignment.partition("=")
        if not sep:
            raise ValueError(f"expected knob=value, got {assignment!r}")
        knobs[name.strip()] = _parse_scalar(raw.strip())
    return model, validate_knobs(knobs)


def _parse_scalar(raw: str) -> Any:
    if raw.lower() in ("true", "yes", "on"):
        return True
    if raw.lower() in ("false", "no", "off"):
        return False
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        return float(raw)
    except ValueError:
        return raw


class FaultBoard:
    """The current knobs, shared by every handler thread; reads are a dict lookup under a lock."""

    def __init__(self, *, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._default = Faults()
        self._by_model: dict[str, Faults] = {}
        # Seeded so a test with error_rate=0.5 sees the same sequence on every run.
        self._random = random.Random(seed)

    def get(self, model: str) -> Faults:
        with self._lock:
            return self._by_model.get(model, self._default)

    def set(self, model: str, **knobs: Any) -> None:
        knobs = validate_knobs(knobs)
        with self._lock:
            if model == WILDCARD:
                self._default = replace(self._default, **knobs)
                self._by_model = {name: replace(faults, **knobs) for name, faults in self._by_model.items()}
            else:
                self._by_model[model] = replace(self._by_model.get(model, self._default), **knobs)

    def reset(self, model: str) -> None:
        with self._lock:
            if model == WILDCARD:
                self._default, self._by_model = Faults(), {}
            else:
                # Explicitly clean, so a wildcard fault set earlier no longer applies to this model.
                self._by_model[model] = Faults()

    def draw(self) -> float:
        with self._lock:
            return self._random.random()

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {WILDCARD: asdict(self._default)} | {m: asdict(f) for m, f in self._by_model.items()}
