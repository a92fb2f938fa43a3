"""Router decision time at 10, 100 and 1,000 rules, where only the last rule matches (the worst case).

    PYTHONPATH=. python bench/router_bench.py [--repeats 7] [--json]

Scenarios, each with N rules of which only the last matches the job:
- `per-application`: earlier rules pin other applications (`application: app-i`) and cap input tokens;
- `thresholds`: every rule pins the job's own task type and differs only in a numeric bound
  (`input_tokens: {gt: 100000 + i}`) — nothing to skip by task type;
- `mixed`: rules cycle through task types, labels, tier constraints and token ranges;
- `glob`: every rule has `application: {matches: "team-i-*"}` (indexed by the pattern's literal prefix);
- `any` (not indexable): every rule is `any: [{application: app-i}, {labels.team: team-i}]`; combinators
  are checked rule by rule, so this one grows linearly — the known worst case.

`decide` is `route()` — the plan, with rule reasons left for the first read of the explanation; `explain`
adds `to_record()`, which works out why each earlier rule failed (what is written to the ledger).
Figures are the median (and, on a busy machine, the best) over repeats of the mean µs per call.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from routing.decide.policy import PolicyDocument, policy_from_data
from routing.decide.router import Constraints, DeploymentInfo, JobFacts, route
from routing.decide.tiers import TASK_TYPES

CATALOG = [
    DeploymentInfo("nano-a", "nano", "eu", frozenset({"tools", "logprobs"}), True, 250.0, 0.1, 0.4),
    DeploymentInfo("nano-b", "nano", "us", frozenset({"tools", "logprobs"}), True, 300.0, 0.1, 0.4),
    DeploymentInfo("mini-a", "mini", "eu", frozenset({"tools", "logprobs"}), True, 700.0, 0.4, 1.6),
    DeploymentInfo("mini-b", "mini", "us", frozenset({"tools"}), False, 650.0, 0.4, 1.6),
    DeploymentInfo(
        "flagship-a",
        "flagship",
        "eu",
        frozenset({"tools", "logprobs", "json_schema"}),
        True,
        1800.0,
        2.0,
        8.0,
    ),
    DeploymentInfo("flagship-b", "flagship", "us", frozenset({"tools", "logprobs"}), True, 2100.0, 2.0, 8.0),
]

JOB = JobFacts(
    task_type="reasoning",
    input_tokens=5_000,
    complexity=0.6,
    application="acme-support",
    labels={"pii": False, "region": "us"},
    constraints=Constraints(latency_budget_ms=3_000),
    tools=("search",),
)

LAST_RULE = {
    "id": "last",
    "when": {"task_type": "reasoning"},
    "cascade": ["mini", "flagship"],
    "escalate_below": {"mini": 0.75},
}


def _rules(count: int, make: Callable[[int], dict]) -> PolicyDocument:
    rules = [{"id": f"r{index}", **make(index)} for index in range(count - 1)]
    return policy_from_data({"rules": [*rules, LAST_RULE]})


def per_application(index: int) -> dict:
    return {
        "when": {"application": f"app-{index}", "input_tokens": {"lte": 8_000 + index}},
        "cascade": ["nano", "mini", "flagship"],
        "escalate_below": {"nano": 0.8, "mini": 0.7},
    }


def thresholds(index: int) -> dict:
    return {
        "when": {"task_type": "reasoning", "input_tokens": {"gt": 100_000 + index}},
        "cascade": ["flagship"],
    }


def mixed(index: int) -> dict:
    others = [task for task in TASK_TYPES if task != "reasoning"]
    shapes = [
        {"task_type": others[index % len(others)], "input_tokens": {"lte": 1_000 + index}},
        {"labels.region": f"region-{index}", "complexity": {"gte": 0.5}},
        {
            "task_type": ["reasoning", "planning"],
            "constraints.min_tier": {"gte": "flagship"},
            "labels.n": index,
        },
        {"input_tokens": {"gt": 200_000 + index}, "application": {"ne": "acme-support"}},
        {"labels.pii": True, "metadata.team": f"team-{index}"},
    ]
    return {"when": shapes[index % len(shapes)], "cascade": ["mini", "flagship"]}


def glob(index: int) -> dict:
    return {"when": {"application": {"matches": f"team-{index}-*"}}, "cascade": ["mini"]}


def any_of(index: int) -> dict:
    return {
        "when": {"any": [{"application": f"app-{index}"}, {"labels.team": f"team-{index}"}]},
        "cascade": ["mini"],
    }


SCENARIOS = {
    "per-application": per_application,
    "thresholds": thresholds,
    "mixed": mixed,
    "glob": glob,
    "any": any_of,
}


def _time(call: Callable[[], object], repeats: int, budget_s: float = 0.2) -> tuple[float, float]:
    loops = 1
    while True:
        started = time.perf_counter()
        for _ in range(loops):
            call()
        elapsed = time.perf_counter() - started
        if elapsed > budget_s / 4 or loops >= 1 << 20:
            break
        loops *= 4
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(loops):
            call()
        samples.append((time.perf_counter() - started) / loops * 1e6)
    return statistics.median(samples), min(samples)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    arguments = parser.parse_args()
    if not arguments.json:
        print(f"{'scenario':<16} {'rules':>6} {'decide µs':>10} {'(best)':>7} {'explain µs':>11}")
    for name, make in SCENARIOS.items():
        for count in (10, 100, 1_000):
            document = _rules(count, make)
            result = route(JOB, document, CATALOG)
            assert result.plan is not None and result.plan.rule_id == "last", result.error
            decide, best = _time(lambda document=document: route(JOB, document, CATALOG), arguments.repeats)
            explain, _ = _time(
                lambda document=document: route(JOB, document, CATALOG).to_record(),
                max(arguments.repeats // 2, 3),
            )
            if arguments.json:
                figures = {"decide_us": decide, "decide_best_us": best, "explain_us": explain}
                print(json.dumps({"scenario": name, "rules": count, **figures}))
            else:
                print(f"{name:<16} {count:>6} {decide:>10.1f} {best:>7.1f} {explain:>11.1f}")


if __name__ == "__main__":
    main()
