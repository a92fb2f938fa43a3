"""Validity and tightness of the threshold certificate over many random splits of item sets whose truth is
known (see evaluation.calibration.study)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from evaluation.calibration.study import POPULATIONS, live_study, run_per_rule_study, run_study, table_text


def _floats(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise CommandError(f"--targets: {text!r} is not a comma-separated list of numbers") from None
    if not values or not all(0 < value <= 1 for value in values):
        raise CommandError("--targets: every target must be in (0, 1]")
    return values


class Command(BaseCommand):
    help = (
        "Calibrate thresholds on each of --splits random splits of known item sets and report, per set and "
        "target, the miss rate (certified thresholds below target on the fresh items, on the whole set and, for "
        "drawn sets, on an independent sample; to be <= 1 - confidence) "
        "and the tightness (certified cost / the cheapest setting meeting the target on the same fresh items)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--population",
            action="append",
            choices=sorted(POPULATIONS),
            help="an item set (repeat for several; default all)",
        )
        parser.add_argument(
            "--per-rule",
            action="store_true",
            help="also --per-rule calibration on synthetic items under the demo policy (Bonferroni over rules)",
        )
        parser.add_argument(
            "--from-history",
            action="store_true",
            help="also the live-label procedure on shadow labels drawn with a known risk",
        )
        parser.add_argument("--targets", default="0.9,0.95,0.97", help="accuracy targets relative to the flagship")
        parser.add_argument("--confidence", default=0.95, type=float, help="1 - delta, the failure probability")
        parser.add_argument("--splits", default=200, type=int)
        parser.add_argument("--size", type=int, help="items per set (synthetic: drawn; GSM8K: at most 1,319)")
        parser.add_argument("--calibration-items", type=int, help="items that calibrate in each split")
        parser.add_argument("--seed", default=0, type=int)
        parser.add_argument("--json", action="store_true", help="the rows as JSON")
        parser.add_argument("--out", type=Path, help="also write the Markdown table (and JSON beside it)")

    def handle(self, *args: Any, **options: Any) -> None:
        names = options["population"] or list(POPULATIONS)
        if not 0 < options["confidence"] < 1:
            raise CommandError("--confidence must be in (0, 1)")
        if options["splits"] < 1:
            raise CommandError("--splits must be at least 1")
        for flag in ("size", "calibration_items"):
            if options[flag] is not None and options[flag] < 2:
                raise CommandError(f"--{flag.replace('_', '-')} must be at least 2")
        sizes = {name: options["size"] for name in names} if options["size"] else None
        calibrating = {name: options["calibration_items"] for name in names} if options["calibration_items"] else None
        targets, delta = _floats(options["targets"]), round(1 - options["confidence"], 12)
        try:
            rows = run_study(
                names,
                targets=targets,
                delta=delta,
                splits=options["splits"],
                sizes=sizes,
                calibration_items=calibrating,
                seed=options["seed"],
            )
            if options["per_rule"]:
                rows += run_per_rule_study(
                    targets=targets, delta=delta, splits=options["splits"], size=options["size"] or 6000,
                    seed=options["seed"],
                )  # fmt: skip
            if options["from_history"]:
                rows += [live_study(target=target, delta=delta, splits=options["splits"]) for target in targets]
        except ValueError as error:
            raise CommandError(str(error)) from None
        text = table_text(rows)
        if options["out"]:
            options["out"].write_text(text + "\n")
            options["out"].with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")
        self.stdout.write(json.dumps(rows) if options["json"] else text)
