"""A recorded-outcomes file as evaluation reads it: the model server's own parser, the tier mapping, and
each recorded answer's tokens, cost and correctness exactly as a replay through the server would see them.

Token counts a file does not record are estimated the way the model server estimates them (about four
characters a prompt token, word-sized completion tokens), so an answer costs the same whether it was
read here or served over HTTP. Cost is the recorded `cost_usd` when present, else the catalog price of the
tier times those tokens.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelserver.completions import tokenize
from modelserver.protocol import estimate_prompt_tokens
from modelserver.recorded import OutcomesFileError, RecordedItem, RecordedResponse, load_outcomes
from routing.decide.confidence import normalise_answer
from routing.decide.tiers import TIER_NAMES, tier_rank

TierMap = dict[str, str]  # tier -> model id in the file, cheapest tier first


class EvaluationError(ValueError):
    """An evaluation that cannot run; the message is one line saying why."""


@dataclass(frozen=True)
class Outcomes:
    items: tuple[RecordedItem, ...]
    raw: tuple[Mapping[str, Any], ...]  # what an in-process model server is started with
    models: tuple[str, ...]
    source: str
    sha256: str  # of the item lines, so an evaluation record names the exact data it ran on


def read_outcomes(path: str | Path) -> Outcomes:
    """Read a `.jsonl` or gzipped `.jsonl.gz` file; every problem raises `EvaluationError`."""
    path = Path(path)
    try:
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
        text = data.decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise EvaluationError(f"{path}: cannot read recorded outcomes: {error}") from None
    raw = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise EvaluationError(f"{path}:{number}: not valid JSON ({error.msg})") from None
    return outcomes_from_items(raw, source=str(path))


def outcomes_from_items(raw: Iterable[Mapping[str, Any]], *, source: str = "in-memory") -> Outcomes:
    raw = tuple(raw)
    try:
        parsed = load_outcomes(raw)
    except OutcomesFileError as error:
        raise EvaluationError(f"{source}: {error}") from None
    digest = hashlib.sha256()
    for entry in raw:
        digest.update(json.dumps(entry, sort_keys=True, separators=(",", ":")).encode())
        digest.update(b"\n")
    return Outcomes(
        items=tuple(parsed.items.values()),
        raw=raw,
        models=tuple(parsed.models),
        source=source,
        sha256=digest.hexdigest(),
    )


def parse_tier_map(spec: str, models: Sequence[str]) -> TierMap:
    """`nano=MODEL,mini=MODEL,flagship=MODEL` (any subset, any order) to a mapping in tier order."""
    mapping: dict[str, str] = {}
    for part in (piece.strip() for piece in spec.split(",")):
        if not part:
            continue
        tier, separator, model = (text.strip() for text in part.partition("="))
        if not separator or not model:
            raise EvaluationError(f"--tiers: {part!r} is not TIER=MODEL")
        if tier_rank(tier) is None:
            raise EvaluationError(f"--tiers: unknown tier {tier!r} (known: {', '.join(TIER_NAMES)})")
        if tier in mapping:
            raise EvaluationError(f"--tiers: tier {tier} is given twice")
        if model not in models:
            raise EvaluationError(
                f"--tiers: model {model!r} has no recorded responses (the file has: {', '.join(models)})"
            )
        mapping[tier] = model
    if not mapping:
        raise EvaluationError("--tiers: give at least one TIER=MODEL")
    return dict(sorted(mapping.items(), key=lambda entry: tier_rank(entry[0])))  # type: ignore[arg-type,return-value]


def top_tier(tiers: TierMap) -> str:
    """The most capable tier mapped: the reference that `flagship_only` and the calibration target use."""
    return next(reversed(tiers))


@dataclass(frozen=True)
class Price:
    input_per_mtok: float
    output_per_mtok: float

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input_per_mtok + completion_tokens * self.output_per_mtok) / 1e6


def demo_prices() -> dict[str, Price]:
    """The demo catalog's price per tier (its preferred deployment in the default region)."""
    from routing.demo.seed import demo_catalog  # the demo module pulls in services; only prices are needed

    prices: dict[str, tuple[int, Price]] = {}
    for entry in demo_catalog():
        if entry.get("region", "us") != "us":
            continue
        priority = entry.get("priority", 100)
        if entry["tier"] not in prices or priority < prices[entry["tier"]][0]:
            prices[entry["tier"]] = (priority, Price(float(entry["price_in"]), float(entry["price_out"])))
    return {tier: price for tier, (_, price) in prices.items()}


def prompt_tokens(item: RecordedItem, response: RecordedResponse) -> int:
    # The model server's own rule (modelserver.recorded.RecordedBackend.reply).
    return response.prompt_tokens or estimate_prompt_tokens(item.messages)


def completion_tokens(response: RecordedResponse) -> int:
    if response.completion_tokens is not None:
        return response.completion_tokens
    return len(tokenize(response.content))


def tokens_estimated(response: RecordedResponse) -> bool:
    return not response.prompt_tokens or response.completion_tokens is None


def answer_cost(response: RecordedResponse, prompt: int, completion: int, price: Price) -> float:
    return response.cost_usd if response.cost_usd is not None else price.cost(prompt, completion)


def answer_correct(response: RecordedResponse, content: str, reference: str | None) -> bool | None:
    """The recorded verdict; else the answer compared with the reference, normalised; else unknown."""
    if response.correct is not None:
        return response.correct
    if reference is None:
        return None
    return normalise_answer(content) == normalise_answer(reference)


@dataclass(frozen=True)
class RecordedAnswer:
    """One model's recorded answer to one item, priced: what the baselines are computed from."""

    correct: bool | None
    cost_usd: float
    confidence: float | None
    latency_ms: float | None


def recorded_answer(item: RecordedItem, model: str, price: Price) -> RecordedAnswer:
    response = item.responses.get(model)
    if response is None:
        raise EvaluationError(f"item {item.id} has no recorded response from model {model!r}")
    return RecordedAnswer(
        correct=answer_correct(response, response.content, item.reference),
        cost_usd=answer_cost(response, prompt_tokens(item, response), completion_tokens(response), price),
        confidence=response.confidence,
        latency_ms=response.latency_ms,
    )
