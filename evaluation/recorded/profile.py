"""Workload profile: per task type, how often each tier's answer suffices, at what cost, and what the
policy did with that task type — where a cheaper cascade could go, and where it cannot."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from evaluation.recorded.outcomes import Price, TierMap
from evaluation.recorded.simulate import ItemRun, recorded_answers
from modelserver.recorded import RecordedItem


def workload_profile(
    items: Sequence[RecordedItem],
    tiers: TierMap,
    prices: Mapping[str, Price],
    runs: Sequence[ItemRun] = (),
) -> dict[str, dict[str, Any]]:
    answers = recorded_answers(items, tiers, prices)
    by_type: dict[str, list[RecordedItem]] = defaultdict(list)
    for item in items:
        by_type[item.task_type or "general"].append(item)
    runs_by_type: dict[str, list[ItemRun]] = defaultdict(list)
    for run in runs:
        if run.error is None:
            runs_by_type[run.task_type].append(run)
    profile = {}
    for task_type, members in sorted(by_type.items()):
        count = len(members)
        per_tier = {}
        for tier in tiers:
            verdicts = [answers[item.id][tier].correct for item in members]
            known = [verdict for verdict in verdicts if verdict is not None]
            per_tier[tier] = {
                "suffices": round(sum(known) / len(known), 6) if known else None,
                "mean_cost_usd": round(math.fsum(answers[item.id][tier].cost_usd for item in members) / count, 8),
            }
        cheapest = Counter()
        for item in members:
            right = [tier for tier in tiers if answers[item.id][tier].correct]
            cheapest[min(right, key=lambda tier: answers[item.id][tier].cost_usd) if right else "none"] += 1
        entry: dict[str, Any] = {
            "items": count,
            "tiers": per_tier,
            "cheapest_sufficient": {name: round(n / count, 6) for name, n in cheapest.most_common()},
        }
        policy_runs = runs_by_type.get(task_type)
        if policy_runs:
            known = [run.final.correct for run in policy_runs if run.final.correct is not None]
            finals = Counter(run.final.tier for run in policy_runs)
            entry["policy"] = {
                "items": len(policy_runs),
                "accuracy": round(sum(known) / len(known), 6) if known else None,
                "mean_cost_usd": round(math.fsum(run.cost_usd for run in policy_runs) / len(policy_runs), 8),
                "final_tier_share": {tier: round(n / len(policy_runs), 6) for tier, n in finals.items()},
                "rules": dict(Counter(run.rule_id for run in policy_runs)),
            }
        profile[task_type] = entry
    return profile
