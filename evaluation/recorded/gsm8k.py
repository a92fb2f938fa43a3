"""The RouteLLM GSM8K responses (CSV) as a recorded-outcomes file (JSON Lines, see DESIGN.md).

The CSV (lm-sys/RouteLLM, `routellm/evals/gsm8k/gsm8k_responses.csv`, Apache-2.0) has one row per GSM8K
test question: the `prompt`, and per model a `True`/`False` verdict column named after the model and its
answer text in `<model>_response`. What the conversion keeps, and what it does not invent:
- `content` and `correct` per model, as recorded; `task_type` is `reasoning` for every item;
- no `reference`: the CSV does not carry GSM8K's gold answers, and the verdicts make one unnecessary;
- no `confidence`: the data carry no confidence signal (no logprobs, no self-report). A number derived
  from the text would be served through `logprobs` as if a model had measured it, so none is written;
  a cascade on this file sees "no confidence" exactly as a live job would (the logprob method is not
  applicable and, without a fallback, scores 0);
- no token counts, latency or cost: tokens are estimated from text length by whoever reads the file
  (the model server and `evaluation.recorded.outcomes` estimate them the same way), and cost is the
  catalog price of the tier times those tokens.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from evaluation.recorded.outcomes import EvaluationError

RESPONSE_SUFFIX = "_response"
VERDICTS = {"True": True, "False": False}
TASK_TYPE = "reasoning"


def gsm8k_items(csv_path: str | Path) -> Iterator[dict[str, Any]]:
    """One recorded-outcomes item per CSV row, in file order, ids `gsm8k-0001`..."""
    path = Path(csv_path)
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    try:
        handle = path.open(encoding="utf-8", newline="")
    except OSError as error:
        raise EvaluationError(f"{path}: cannot read: {error.strerror}") from None
    with handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        models = [c for c in columns if c != "prompt" and not c.endswith(RESPONSE_SUFFIX)]
        missing = [f"{m}{RESPONSE_SUFFIX}" for m in models if f"{m}{RESPONSE_SUFFIX}" not in columns]
        if "prompt" not in columns or not models or missing:
            raise EvaluationError(
                f"{path}: expected columns prompt, <model> and <model>{RESPONSE_SUFFIX}; got {', '.join(columns)}"
            )
        for number, row in enumerate(reader, start=1):
            responses = {}
            for model in models:
                verdict = VERDICTS.get(row[model])
                if verdict is None:
                    raise EvaluationError(f"{path}: row {number}, column {model}: {row[model]!r} is not True/False")
                responses[model] = {"content": row[model + RESPONSE_SUFFIX], "correct": verdict}
            yield {
                "id": f"gsm8k-{number:04d}",
                "task_type": TASK_TYPE,
                "source": f"RouteLLM gsm8k_responses.csv row {number}",
                "messages": [{"role": "user", "content": row["prompt"]}],
                "responses": responses,
            }
