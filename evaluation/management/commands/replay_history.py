"""Replay past jobs under a draft policy version: routing only (no model call), or fully under a cost cap."""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from evaluation.history_runs import history_run
from evaluation.management.commands._options import moment
from evaluation.recorded.outcomes import EvaluationError
from evaluation.records import version_by_id


def _usd(text: str) -> Decimal:
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise CommandError(f"--cost-cap {text!r} is not an amount in USD (e.g. 2.50)") from None
    if not amount.is_finite() or amount <= 0:
        raise CommandError(f"--cost-cap must be above 0 USD, not {text}")
    return amount


class Command(BaseCommand):
    help = (
        "What a draft policy version would have done with past jobs: escalations, cost, approval holds, "
        "answers and final tiers that would change. --mode routing (default) walks the draft over the "
        "recorded confidences without calling a model; --mode full re-executes each job's stored input "
        "against the real deployments under the draft, never spending more than --cost-cap USD (jobs "
        "whose input was erased are reported unknown, never guessed)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--policy-version", type=int, required=True, help="the version's id")
        parser.add_argument("--application", help="only this application's jobs (its slug)")
        parser.add_argument("--since", help="jobs created at or after (ISO date or date-time, UTC if naive)")
        parser.add_argument("--until", help="jobs created before")
        parser.add_argument("--limit", type=int, default=1000, help="newest jobs first (default 1000)")
        parser.add_argument(
            "--mode",
            choices=("routing", "full"),
            default="routing",
            help="routing: from recorded confidences, no model call (default); full: re-execute each job's "
            "stored input against the real deployments under the draft, within --cost-cap",
        )
        parser.add_argument(
            "--cost-cap", help="full mode only, required there: the most the replay may spend, in USD (> 0)"
        )
        parser.add_argument("--json", action="store_true")

    def _progress(self, done: int, total: int) -> None:
        # On stderr, so that --json output stays one document.
        self.stderr.write(f"\r{done}/{total} jobs", ending="\n" if done == total else "")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["limit"] < 1:
            raise CommandError("--limit must be at least 1")
        since = moment(options["since"]) if options["since"] else None
        until = moment(options["until"]) if options["until"] else None
        cost_cap = _usd(options["cost_cap"]) if options["cost_cap"] is not None else None
        if options["mode"] == "full" and cost_cap is None:
            raise CommandError("--mode full calls real deployments: give --cost-cap USD (> 0)")
        if options["mode"] == "routing" and cost_cap is not None:
            raise CommandError("--cost-cap applies to --mode full only (routing mode calls no model)")
        try:
            report, _ = history_run(
                version=version_by_id(options["policy_version"]),
                application=options["application"],
                since=since,
                until=until,
                limit=options["limit"],
                mode=options["mode"],
                cost_cap_usd=cost_cap,
                progress=self._progress,
            )
        except EvaluationError as error:
            raise CommandError(str(error)) from None
        if options["json"]:
            self.stdout.write(json.dumps(report))
            return
        cost, approvals = report["cost_usd"], report["approvals"]
        spending = []
        if report["mode"] == "full":
            spending = [
                f"spent ${report['spent_usd']} of ${report['cost_cap_usd']}; executed {report['executed']}, "
                f"not run (cost cap) {report['not_run_cost_cap']}, input erased {report['input_erased']}"
            ]
        self.stdout.write(
            "\n".join(
                [
                    *spending,
                    f"{report['jobs']} jobs, {report['decided']} decided, {report['unknown']} unknown "
                    f"{report['unknown_reasons'] or ''}".rstrip(),
                    f"final tier changes: {report['final_tier_changed']} {report['final_tier_transitions']}; "
                    f"answers that differ: {report['answers_differ']}",
                    f"escalation rate: {report['escalation_rate']['original']} -> {report['escalation_rate']['draft']}",
                    f"cost: ${cost['original']} -> ${cost['draft']} ({cost['relative']})",
                    f"held for approval: {approvals['original_held']} -> {approvals['draft_held']} "
                    f"(newly held {approvals['newly_held']}, released {approvals['released']})",
                    f"evaluation #{report['evaluation']}",
                ]
            )
        )
