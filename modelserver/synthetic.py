"""The synthetic model: deterministic tiers whose correctness and confidence behave like real ones.

For one request the outcome is a pure function of (seed, tier, messages):
- the item's task type and difficulty d come from markers, else from keywords and a content hash;
- the chance of a correct answer is ``sigmoid(SLOPE * (skill[task] - d))``: skill is the difficulty at
  which the tier is right half the time;
- the draw that decides correctness is shared across tiers (an item hard for one is hard for all), with a
  tier-specific shift so tiers do not fail in lockstep;
- confidence is a logit-normal draw centred high for correct answers and lower for wrong ones, with
  overlap and a small tier-specific overconfidence, like real calibration.
Correct answers agree across tiers; wrong answers differ from the reference and from each other.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

from modelserver.completions import Reply, ToolCall, tokenize
from modelserver.markers import Markers, parse_markers
from modelserver.protocol import ChatRequest, canonical_messages, estimate_prompt_tokens, model_not_found
from modelserver.schema_instance import minimal_instance


@dataclass(frozen=True)
class TierProfile:
    name: str
    skill: dict[str, float]
    base_latency_ms: float
    per_token_latency_ms: float
    input_usd_per_mtok: float
    output_usd_per_mtok: float
    # Added to the confidence logit: small models tend to be overconfident.
    overconfidence: float


TIERS: dict[str, TierProfile] = {
    "nano": TierProfile(
        name="nano",
        skill={
            "classification": 0.80, "extraction": 0.75, "ranking": 0.70, "search": 0.50, "code_review": 0.35,
            "coding": 0.30, "planning": 0.20, "reasoning": 0.25, "general": 0.50,
        },
        base_latency_ms=60, per_token_latency_ms=3, input_usd_per_mtok=0.10, output_usd_per_mtok=0.40,
        overconfidence=0.3,
    ),
    "mini": TierProfile(
        name="mini",
        skill={
            "classification": 0.88, "extraction": 0.85, "ranking": 0.80, "search": 0.72, "code_review": 0.68,
            "coding": 0.65, "planning": 0.50, "reasoning": 0.55, "general": 0.68,
        },
        base_latency_ms=150, per_token_latency_ms=6, input_usd_per_mtok=0.40, output_usd_per_mtok=1.60,
        overconfidence=0.15,
    ),
    "flagship": TierProfile(
        name="flagship",
        skill={
            "classification": 0.95, "extraction": 0.93, "ranking": 0.92, "search": 0.88, "code_review": 0.88,
            "coding": 0.88, "planning": 0.85, "reasoning": 0.85, "general": 0.85,
        },
        base_latency_ms=400, per_token_latency_ms=15, input_usd_per_mtok=2.00, output_usd_per_mtok=8.00,
        overconfidence=0.0,
    ),
}  # fmt: skip
TIER_ORDER = tuple(TIERS)
SLOPE = 8.0
_MODEL_ID = re.compile(r"^sim-(nano|mini|flagship)(?:-[A-Za-z0-9][A-Za-z0-9._-]*)?$")
_KEYWORDS = (
    ("code_review", ("review this", "code review", "pull request", "diff")),
    ("coding", ("write a function", "implement", "refactor", "fix the bug", "def ", "code")),
    ("classification", ("classify", "categor", "label", "sentiment")),
    ("extraction", ("extract", "parse", "fields from")),
    ("ranking", ("rank", "order by relevance", "sort by")),
    ("search", ("search", "look up", "find documents")),
    ("planning", ("plan", "roadmap", "break down", "steps to")),
    ("reasoning", ("prove", "calculate", "how many", "solve", "why")),
)
_LABELS = ("billing", "technical", "account", "shipping", "refund", "other")


def tier_of(model: str) -> str | None:
    match = _MODEL_ID.match(model)
    return match.group(1) if match else None


def answer_value(task_type: str, k: int) -> str:
    """The k-th possible answer of a task type; k and k+1..k+3 always give four distinct answers."""
    formats = {
        "classification": lambda: _LABELS[k % len(_LABELS)],
        "extraction": lambda: f"INV-{k % 100000:05d}",
        "ranking": lambda: ",".join(str(i) for i in _permutation(k % 24)),
        "search": lambda: f"doc-{k % 1000}",
        "code_review": lambda: f"line {k % 300 + 1}",
        "coding": lambda: f"patch-{k % 4096:03x}",
        "planning": lambda: f"plan-{'ABCDEFGH'[k % 8]}",
        "reasoning": lambda: str(k % 1000),
        "general": lambda: f"option-{k % 50}",
    }
    return formats[task_type]()


def _permutation(index: int) -> list[int]:
    pool, result = [1, 2, 3, 4], []
    for radix in (6, 2, 1, 1):
        position, index = divmod(index, radix)
        result.append(pool.pop(position))
    return result


_TEMPLATES = {
    "classification": "label: {v}",
    "extraction": "Extracted the invoice number.",
    "ranking": "Most relevant first: {v}",
    "search": "Best match: {v}",
    "code_review": "One issue found, at {v}.",
    "coding": "Prepared {v}.",
    "planning": "Recommended {v}.",
    "reasoning": "Working through the quantities gives {v}.",
    "general": "Done.",
}


def answer_text(task_type: str, value: str) -> str:
    return f"{_TEMPLATES[task_type].format(v=value)}\nanswer: {value}"


@dataclass(frozen=True)
class Outcome:
    task_type: str
    difficulty: float
    p_correct: float
    correct: bool
    confidence: float
    answer: str
    reference: str


def _uniforms(*parts: object) -> list[float]:
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    # Offset by half a step so that every draw lies strictly inside (0, 1), as inv_cdf requires.
    return [(int.from_bytes(digest[i : i + 8], "big") + 0.5) / 2**64 for i in range(0, 32, 8)]


def infer_task_type(text: str) -> str:
    lowered = text.lower()
    for task_type, keywords in _KEYWORDS:
        if any(keyword in lowered for keyword in keywords):
            return task_type
    return "general"


def outcome_for(*, seed: str, tier: str, canonical: str, text: str, markers: Markers) -> Outcome:
    item_difficulty, item_draw, item_answer, _ = _uniforms(seed, canonical)
    tier_shift, confidence_draw, _, _ = _uniforms(seed, tier, canonical)
    task_type = markers.task_type or infer_task_type(text)
    difficulty = markers.difficulty
    if difficulty is None:
        difficulty = round(0.85 * item_difficulty + 0.15 * min(1.0, len(text) / 4000), 4)
    p_correct = 1 / (1 + math.exp(-SLOPE * (TIERS[tier].skill[task_type] - difficulty)))
    forced = markers.confidence_by_tier.get(tier)
    if forced is not None:
        correct, confidence = forced >= 0.5, forced
    else:
        # (u + shift) mod 1 is still uniform, and tiers share most of u: correlated but not lockstep.
        correct = (item_draw + 0.35 * tier_shift) % 1.0 < p_correct
        centre = (1.5 if correct else -0.2) + TIERS[tier].overconfidence
        logit = centre + NormalDist().inv_cdf(confidence_draw)
        confidence = round(min(0.995, max(0.02, 1 / (1 + math.exp(-logit)))), 4)
    k = int(item_answer * 2**32)
    reference = answer_value(task_type, k)
    answer = reference if correct else answer_value(task_type, k + 1 + TIER_ORDER.index(tier))
    return Outcome(task_type, difficulty, p_correct, correct, confidence, answer, reference)


class SyntheticBackend:
    mode = "synthetic"

    def __init__(self, *, seed: int = 0, latency_scale: float = 1.0) -> None:
        self.seed = seed
        self.latency_scale = latency_scale

    def model_ids(self) -> list[str]:
        return [f"sim-{tier}" for tier in TIER_ORDER]

    def serves(self, model: str) -> bool:
        return tier_of(model) is not None

    def reply(self, request: ChatRequest) -> Reply:
        tier = tier_of(request.model)
        if tier is None:
            raise model_not_found(request.model)
        text = request.text
        # A conversation ending in a tool result has acted on its [call:...]; calling again would loop.
        call_text = "" if request.messages[-1].get("role") == "tool" else text
        markers = parse_markers(text, call_text=call_text)
        seed = str(self.seed) if request.seed is None else f"{self.seed}:{request.seed}"
        outcome = outcome_for(
            seed=seed, tier=tier, canonical=canonical_messages(request.messages), text=text, markers=markers
        )
        content, tool_call = _compose(request, outcome, markers, tier)
        completion_tokens = len(tokenize(content or "")) + (len(tool_call.arguments) // 4 if tool_call else 0)
        profile = TIERS[tier]
        latency_ms = profile.base_latency_ms + profile.per_token_latency_ms * completion_tokens
        return Reply(
            content=content,
            confidence=outcome.confidence,
            tool_call=tool_call,
            prompt_tokens=estimate_prompt_tokens(request.messages),
            completion_tokens=completion_tokens,
            latency_s=latency_ms * self.latency_scale / 1000,
        )


def _compose(request: ChatRequest, outcome: Outcome, markers: Markers, tier: str) -> tuple[str | None, ToolCall | None]:
    tool_call = _tool_call(request, markers)
    if tool_call and markers.invalid_json_at(tier):
        tool_call = ToolCall(tool_call.name, _broken(tool_call.arguments))
    if tool_call:
        # Real models often say a word alongside a call; it also lets the logprob estimator score the step.
        return f"Calling {tool_call.name}.", tool_call
    response_format = request.response_format
    if response_format is None:
        return answer_text(outcome.task_type, outcome.answer), None
    if response_format["type"] == "json_schema":
        schema = response_format["json_schema"].get("schema", {})
        hints = {"confidence": outcome.confidence, "answer": outcome.answer, "label": outcome.answer}
        try:
            document: Any = minimal_instance(schema, hints)
        except (ValueError, KeyError, IndexError, TypeError):
            document = {"answer": outcome.answer, "confidence": outcome.confidence}
    else:
        document = {"answer": outcome.answer, "confidence": outcome.confidence}
    content = json.dumps(document)
    if markers.invalid_json_at(tier):
        content = _broken(content)
    return content, None


def _broken(text: str) -> str:
    return text[: max(1, len(text) // 2)] + ' "unterminated'


def _tool_call(request: ChatRequest, markers: Markers) -> ToolCall | None:
    """`tool_choice` as OpenAI documents it: `none` never calls, `auto` calls when the prompt's marker
    says so, `required` always calls (the marker's call, else the first tool), a named function always
    calls that function (with the marker's arguments when the marker names it)."""
    if not request.tools or request.tool_choice == "none":
        return None
    forced = request.tool_choice
    named = forced["function"]["name"] if isinstance(forced, dict) else None
    if markers.call and named in (None, markers.call.name):
        # Deliberately not checked against the offered tools: Arbiter must catch an un-offered call.
        return ToolCall(markers.call.name, json.dumps(markers.call.arguments))
    if forced == "required":
        forced = request.tools[0]
    if not isinstance(forced, dict):
        return None
    name = forced["function"]["name"]
    offered = {tool["function"]["name"]: tool["function"] for tool in request.tools}
    parameters = offered.get(name, {}).get("parameters", {"type": "object"})
    try:
        arguments = minimal_instance(parameters)
    except (ValueError, KeyError, IndexError, TypeError):
        arguments = {}
    return ToolCall(name, json.dumps(arguments))
