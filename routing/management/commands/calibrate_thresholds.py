"""Calibrate escalation thresholds with Learn then Test and write them as a draft policy version."""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from routing.evaluation.outcomes import EvaluationError
from routing.evaluation.services import calibration_run, evaluation_inputs


class Command(BaseCommand):
    help = (
        "Choose each non-final tier's escalation threshold to minimise cost subject to accuracy >= target x "
        "flagship-only accuracy, with a Learn-then-Test guarantee; write a draft policy version."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--outcomes", required=True)
        parser.add_argument("--tiers", required=True, help="TIER=MODEL,...; the last tier is the reference")
        parser.add_argument("--policy", default="two-tier", help="file, policy name or bundled name (two-tier)")
        parser.add_argument(
            "--target-relative",
            required=True,
            type=float,
            help="e.g. 0.97: accuracy >= 0.97 x the reference's",
        )
        parser.add_argument("--confidence", default=0.95, type=float, help="1 - the failure probability")
        parser.add_argument("--holdout", default=0.3, type=float, help="share of items held out for the check")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--policy-name", default="calibrated", help="the policy the draft version goes to")
        parser.add_argument("--author", help="username recorded as the version's author")
        parser.add_argument("--json", action="store_true")
        parser.add_argument("--in-memory", action="store_true", help="skip HTTP (same figures, faster)")

    def handle(self, *args: Any, **options: Any) -> None:
        author = None
        if options["author"]:
            author = get_user_model().objects.filter(username=options["author"]).first()
            if author is None:
                raise CommandError(f"--author: no user named {options['author']!r}")
        try:
            inputs = evaluation_inputs(outcomes=options["outcomes"], tiers=options["tiers"], policy=options["policy"])
            summary, _, version = calibration_run(
                inputs=inputs,
                target_relative=options["target_relative"],
                confidence=options["confidence"],
                holdout=options["holdout"],
                seed=options["seed"],
                policy_name=options["policy_name"],
                author=author,
                in_memory=options["in_memory"],
            )
        except EvaluationError as error:
            raise CommandError(str(error)) from None
        if options["json"]:
            self.stdout.write(json.dumps(summary))
            return
        if not summary["certified"]:
            self.stdout.write(f"not certified: {summary['reason']} (evaluation #{summary['evaluation']})")
            return
        held = summary["holdout"]
        lines = [
            f"thresholds {summary['thresholds']} for rules {', '.join(summary['rules'])}",
            f"guarantee: {summary['guarantee']}",
            f"expected: accuracy {summary['expected_accuracy']} "
            f"(reference {summary['expected_reference_accuracy']}), relative cost "
            f"{summary['expected_relative_cost']} (saving {summary['expected_saving']})",
        ]
        if held:
            lines.append(
                f"held out ({held['items']} items): accuracy {held['accuracy']} "
                f"vs {held['reference_accuracy']}, relative cost {held['relative_cost']}, "
                f"target met: {held['target_met']}"
            )
        if summary["reason"]:
            lines.append(f"note: {summary['reason']}")
        lines.append(f"draft {version} (id {version.pk}); evidence: evaluation #{summary['evaluation']}")
        self.stdout.write("\n".join(lines))
