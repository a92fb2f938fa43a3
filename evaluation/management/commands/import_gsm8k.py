"""Convert the RouteLLM GSM8K responses into the recorded-outcomes format (see evaluation.recorded.gsm8k)."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from evaluation.recorded.gsm8k import gsm8k_items
from evaluation.recorded.outcomes import EvaluationError, outcomes_from_items

DEFAULT_CSV = Path(settings.BASE_DIR).parent / "shared" / "data" / "routellm-gsm8k" / "gsm8k_responses.csv"
DEFAULT_OUT = Path(settings.BASE_DIR) / "evaluation" / "data" / "gsm8k-outcomes.jsonl"


class Command(BaseCommand):
    help = "Convert the RouteLLM GSM8K CSV into a recorded-outcomes JSON Lines file (.gz to compress)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--csv", type=Path, default=DEFAULT_CSV, help=f"default {DEFAULT_CSV}")
        parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default {DEFAULT_OUT}")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            items = list(gsm8k_items(options["csv"]))
            outcomes_from_items(items, source=str(options["csv"]))  # the model server must accept it
        except EvaluationError as error:
            raise CommandError(str(error)) from None
        text = "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items).encode("utf-8")
        out: Path = options["out"]
        out.parent.mkdir(parents=True, exist_ok=True)
        # mtime=0 keeps a gzipped output byte-identical across runs.
        out.write_bytes(gzip.compress(text, mtime=0) if out.suffix == ".gz" else text)
        right = Counter(model for item in items for model, r in item["responses"].items() if r["correct"])
        models = ", ".join(f"{model} {right[model] / len(items):.3f}" for model in items[0]["responses"])
        self.stdout.write(f"wrote {len(items)} items to {out} ({len(text):,} bytes); accuracy: {models}")
