"""Evaluate a routing policy on recorded outcomes, against its baselines (see evaluation)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from evaluation.offline_runs import evaluation_inputs, evaluation_run
from evaluation.recorded.outcomes import EvaluationError


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


class Command(BaseCommand):
    help = (
        "Replay every recorded item through the router, the confidence estimators and the escalation rule "
        "against the local model server in recorded-outcomes mode; report accuracy, cost and baselines."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--outcomes", required=True, help="recorded-outcomes JSON Lines file (.gz allowed)")
        parser.add_argument(
            "--tiers",
            required=True,
            help="TIER=MODEL,... e.g. mini=mistralai/Mixtral-8x7B-Instruct-v0.1,flagship=gpt-4-1106-preview",
        )
        parser.add_argument(
            "--policy",
            required=True,
            help="a policy file, a policy name in the database, or a bundled name (two-tier)",
        )
        parser.add_argument("--json", action="store_true", help="print one JSON object")
        parser.add_argument(
            "--in-memory",
            action="store_true",
            help="skip HTTP: build the server's responses in process (faster)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            inputs = evaluation_inputs(outcomes=options["outcomes"], tiers=options["tiers"], policy=options["policy"])
            report, _ = evaluation_run(inputs=inputs, in_memory=options["in_memory"])
        except EvaluationError as error:
            raise CommandError(str(error)) from None
        if options["json"]:
            self.stdout.write(json.dumps(report, sort_keys=False))
            return
        self.stdout.write(self.summary(report))

    def summary(self, report: dict[str, Any]) -> str:
        if "accuracy" not in report:
            return f"no item could be routed: {'; '.join(report.get('errors', []))}"
        rows = [("policy", report)]
        rows += [(f"{tier} only", figures) for tier, figures in report["tier_only"].items()]
        rows += [("oracle", report["oracle"]), ("random mix", report["random_mix"])]
        policy, evaluation = report["policy"]["source"], report["evaluation"]
        lines = [f"{report['items']} items, policy {policy} (evaluation #{evaluation})"]
        lines.append(f"{'':16} {'accuracy':>9} {'cost $':>12} {'relative':>9}")
        for name, figures in rows:
            lines.append(
                f"{name:16} {_percent(figures['accuracy']):>9} {figures['cost_usd']:>12.6f} "
                f"{figures['relative_cost'] if figures['relative_cost'] is not None else 'n/a':>9}"
            )
        escalation = ", ".join(f"{tier} {_percent(rate)}" for tier, rate in report["escalation_rate"].items())
        shares = ", ".join(f"{tier} {_percent(share)}" for tier, share in report["final_tier_share"].items())
        approvals = report["approvals_triggered"]
        lines.append(f"escalation rate: {escalation}; final tier: {shares}")
        lines.append(f"approvals triggered: {approvals['items']} items {approvals['by_rule']}")
        return "\n".join(lines)
