"""Calibrate escalation thresholds with Learn then Test and write them as a draft policy version: offline
from recorded outcomes, or from the labels of live history."""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from evaluation.history_runs import live_calibration_run
from evaluation.management.commands._options import moment
from evaluation.offline_runs import calibration_run, evaluation_inputs
from evaluation.recorded.outcomes import EvaluationError
from evaluation.records import version_by_id

OFFLINE_ONLY = ("tiers", "policy", "in_memory", "per_rule")
HISTORY_ONLY = ("policy_version", "application", "since", "until", "limit", "label_source")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


class Command(BaseCommand):
    help = (
        "Choose escalation thresholds with a Learn-then-Test guarantee and write them as a draft policy "
        "version. Offline (--outcomes FILE --tiers ...): each non-final tier's threshold minimises cost "
        "subject to accuracy >= target x flagship-only accuracy on recorded outcomes. From live history "
        "(--from-history --policy-version N): per rule and escalating tier, the lowest threshold (never below "
        "the one in force) at which the share of the tier's accepted answers still accepted and wrong is "
        "<= 1 - target, from shadow labels (and, with --label-source all, reviewer decisions)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--outcomes", help="offline: recorded-outcomes JSON Lines file")
        parser.add_argument("--tiers", help="offline: TIER=MODEL,...; the last tier is the reference")
        parser.add_argument("--policy", help="offline: file, policy name or bundled name (default two-tier)")
        parser.add_argument("--in-memory", action="store_true", help="offline: skip HTTP (same figures, faster)")
        parser.add_argument(
            "--per-rule", action="store_true", help="offline: calibrate each rule's cascade on its own items"
        )
        parser.add_argument("--from-history", action="store_true", help="calibrate from live labels instead")
        parser.add_argument("--policy-version", type=int, help="history: the version whose thresholds to calibrate")
        parser.add_argument("--application", help="history: only this application's jobs (its slug)")
        parser.add_argument("--since", help="history: jobs created at or after (ISO date or date-time)")
        parser.add_argument("--until", help="history: jobs created before")
        parser.add_argument("--limit", type=int, help="history: newest jobs first (default 1000)")
        parser.add_argument(
            "--label-source",
            choices=("shadow", "all"),
            help="history: shadow labels only (default; a random sample), or reviewer decisions too",
        )
        parser.add_argument(
            "--target-relative",
            required=True,
            type=float,
            help="e.g. 0.97: offline, accuracy >= 0.97 x the reference's; history, <= 3%% accepted and wrong",
        )
        parser.add_argument("--confidence", default=0.95, type=float, help="1 - the failure probability")
        parser.add_argument(
            "--holdout",
            default=0.0,
            type=float,
            help="share held out to report on, never to certify (default 0: every item certifies)",
        )
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--policy-name", default="calibrated", help="the policy the draft version goes to")
        parser.add_argument("--author", help="username recorded as the version's author")
        parser.add_argument("--json", action="store_true")

    def _check_sources(self, options: dict[str, Any]) -> None:
        def given(names: tuple[str, ...]) -> list[str]:
            return [_flag(name) for name in names if options.get(name) not in (None, False)]

        if options["from_history"] and options["outcomes"]:
            raise CommandError("--outcomes and --from-history are two different sources: give one")
        if options["from_history"]:
            if wrong := given(OFFLINE_ONLY):
                raise CommandError(f"{', '.join(wrong)} only apply to --outcomes (offline calibration)")
            if options["policy_version"] is None:
                raise CommandError("--from-history needs --policy-version N (the version to calibrate)")
            if options["limit"] is not None and options["limit"] < 1:
                raise CommandError("--limit must be at least 1")
            return
        if not options["outcomes"]:
            raise CommandError("give --outcomes FILE --tiers ... (offline) or --from-history --policy-version N")
        if wrong := given(HISTORY_ONLY):
            raise CommandError(f"{', '.join(wrong)} only apply to --from-history")
        if not options["tiers"]:
            raise CommandError("--outcomes needs --tiers TIER=MODEL,...")

    def handle(self, *args: Any, **options: Any) -> None:
        self._check_sources(options)
        author = None
        if options["author"]:
            author = get_user_model().objects.filter(username=options["author"]).first()
            if author is None:
                raise CommandError(f"--author: no user named {options['author']!r}")
        common = {
            "target_relative": options["target_relative"],
            "confidence": options["confidence"],
            "holdout": options["holdout"],
            "seed": options["seed"],
            "policy_name": options["policy_name"],
            "author": author,
        }
        since = moment(options["since"]) if options["since"] else None
        until = moment(options["until"]) if options["until"] else None
        try:
            if options["from_history"]:
                summary, _, version = live_calibration_run(
                    version=version_by_id(options["policy_version"]),
                    application=options["application"],
                    since=since,
                    until=until,
                    limit=options["limit"] or 1000,
                    label_source=options["label_source"] or "shadow",
                    **common,
                )
            else:
                inputs = evaluation_inputs(
                    outcomes=options["outcomes"], tiers=options["tiers"], policy=options["policy"] or "two-tier"
                )
                summary, _, version = calibration_run(
                    inputs=inputs, in_memory=options["in_memory"], per_rule=options["per_rule"], **common
                )
        except EvaluationError as error:
            raise CommandError(str(error)) from None
        if options["json"]:
            self.stdout.write(json.dumps(summary))
        elif not summary["certified"]:
            self.stdout.write(f"not certified: {summary['reason']} (evaluation #{summary['evaluation']})")
        elif options["from_history"]:
            self.stdout.write(self._history_summary(summary, version))
        elif options["per_rule"]:
            self.stdout.write(self._per_rule_summary(summary, version))
        else:
            self.stdout.write(self._offline_summary(summary, version))

    def _history_summary(self, summary: dict[str, Any], version: Any) -> str:
        lines = [f"{summary['jobs']} jobs, labels {summary['labels']['by_source']}"]
        for certificate in summary["certificates"]:
            where = f"{certificate['rule']} / {certificate['tier']}"
            if certificate["threshold"] is None:
                lines.append(f"{where}: not certified ({certificate['reason']})")
            else:
                lines.append(
                    f"{where}: {certificate['threshold']} (in force {certificate['threshold_in_force']}; "
                    f"{certificate['calibration_labels']} labels, risk {certificate['risk']} <= "
                    f"{certificate['risk_upper_bound']}, held out {certificate['holdout_risk']})"
                )
        lines.append(f"guarantee: {summary['guarantee']}")
        lines.append(f"draft {version} (id {version.pk}); evidence: evaluation #{summary['evaluation']}")
        return "\n".join(lines)

    def _per_rule_summary(self, summary: dict[str, Any], version: Any) -> str:
        lines = []
        for rule, entry in summary["rules"].items():
            if entry["certified"]:
                lines.append(
                    f"{rule}: thresholds {entry['thresholds']}, expected accuracy {entry['expected_accuracy']} "
                    f"(reference {entry['expected_reference_accuracy']}), relative cost "
                    f"{entry['expected_relative_cost']}"
                )
            else:
                lines.append(f"{rule}: not certified ({entry['reason']})")
        lines += [f"{rule}: unchanged ({why})" for rule, why in summary["skipped"].items()]
        lines.append(f"draft {version} (id {version.pk}); evidence: evaluation #{summary['evaluation']}")
        return "\n".join(lines)

    def _offline_summary(self, summary: dict[str, Any], version: Any) -> str:
        held = summary["holdout"]
        lines = [
            f"thresholds {summary['thresholds']} for rules {', '.join(summary['rules'])}",
            f"guarantee: {summary['guarantee']}",
            f"expected: accuracy {summary['expected_accuracy']} "
            f"(reference {summary['expected_reference_accuracy']}), relative cost "
            f"{summary['expected_relative_cost']} (saving {summary['expected_saving']}); margin over the target "
            f"{summary['expected_margin']} (accuracy the test vouches for above it, share of items)",
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
        return "\n".join(lines)
