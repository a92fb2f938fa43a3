"""`make chaos`: every fault scenario on the embedded defaults (Redis as the broker), then with RabbitMQ (quorum
queues), each on a whole `make run` stack of its own; prints the report and writes it to
tests/faults/results/latest.md (and the figures to latest.json). Exit status 1 when any check failed.

    python -m tests.faults [--broker redis,rabbitmq] [--only worker-children,redis-restart] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from tests.faults.scenarios import BY_NAME, SCENARIOS, Result, run
from tests.faults.stack import Stack, StackConfig

RESULTS = Path(__file__).resolve().parent / "results"
BROKERS = {"redis": (8900, 8901), "rabbitmq": (8910, 8911)}


def _cell(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f}"


def report(results: list[Result], *, started: datetime, seconds: float) -> str:
    load = os.getloadavg()
    lines = [
        f"# Fault suite — {started:%Y-%m-%d %H:%M} UTC",
        "",
        f"`make chaos` ({seconds / 60:.0f} min; {platform.node()}, {os.cpu_count()} CPUs, load "
        f"{load[0]:.1f} at the end). Each scenario: a `make run` stack under client load (2 job submitters "
        "at 1.5 jobs/s in all with Idempotency-Keys, 1 openai-SDK chat client), one fault, then the checks.",
        "",
        "| broker | scenario | result | jobs | lost | duplicates | paid twice | recovery (s) | lease (s) "
        "| client answers |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for result in results:
        answers = ", ".join(f"{label}: {count}" for label, count in result.client_statuses.items())
        lines.append(
            f"| {result.broker} | {result.scenario} | {'pass' if result.passed else '**FAIL**'} | {result.jobs} "
            f"| {result.lost} | {result.duplicates} | {result.repaid} | {_cell(result.recovery_s)} "
            f"| {result.lease_s:g} | {answers} |"
        )
    lines += ["", "Recovery, per scenario kind:", ""]
    kinds = {}
    for result in results:
        kinds.setdefault(result.scenario, result.recovery_kind)
    lines += [f"- {name}: {kind or '—'}" for name, kind in kinds.items()]
    failed = [result for result in results if not result.passed]
    if failed:
        lines += ["", "## Failed checks", ""]
        for result in failed:
            lines.append(f"- **{result.broker} / {result.scenario}**")
            lines += [f"  - {failure}".replace("\n", "\n    ") for failure in result.failures()]
    lines += ["", "## Notes", ""]
    for result in results:
        notes = "; ".join(result.notes)
        lines.append(
            f"- {result.broker} / {result.scenario} ({result.seconds:.0f} s): jobs {result.job_statuses}; {notes}"
        )
    return "\n".join(lines) + "\n"


def run_broker(broker: str, names: list[str]) -> list[Result]:
    port, modelserver_port = BROKERS[broker]
    stack = Stack(StackConfig(broker=broker, port=port, modelserver_port=modelserver_port))
    results = []
    try:
        stack.start()
        for name in names:
            print(f"chaos: {broker} / {name} ...", flush=True)
            try:
                result = run(stack, BY_NAME[name])
            except Exception as error:  # one broken scenario must not hide the others' results
                result = Result(name, broker)
                result.check("the scenario ran", False, f"{type(error).__name__}: {error}")
            print(f"chaos: {broker} / {name}: {'pass' if result.passed else 'FAIL'}", flush=True)
            for failure in result.failures():
                print(f"    {failure}", flush=True)
            results.append(result)
    finally:
        stack.stop()
        if any(not result.passed for result in results):
            # The stack's own log, next to the report, for whoever reads the failures.
            log = RESULTS / f"{broker}-launcher.log"
            RESULTS.mkdir(parents=True, exist_ok=True)
            log.write_bytes(stack.log_path.read_bytes()[-2_000_000:])
            print(f"chaos: the {broker} stack's log is in {log}", flush=True)
        stack.remove()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults", description=__doc__.splitlines()[0])
    parser.add_argument("--broker", default="redis,rabbitmq", help="comma-separated: redis, rabbitmq")
    parser.add_argument("--only", default="", help="comma-separated scenario names: " + ", ".join(BY_NAME))
    parser.add_argument("--quick", action="store_true", help="only the scenarios `make test` runs")
    parser.add_argument("--output", default=str(RESULTS / "latest"), help="path without extension (.md, .json)")
    args = parser.parse_args(argv)
    only = set(filter(None, args.only.split(",")))
    names = [s.name for s in SCENARIOS if (not only or s.name in only) and (s.quick or not args.quick)]
    unknown = only - set(BY_NAME)
    brokers = [b for b in args.broker.split(",") if b]
    if unknown or not names or set(brokers) - set(BROKERS):
        parser.error(f"unknown scenario or broker: {sorted(unknown) or brokers}")
    started, began = datetime.now(UTC), time.monotonic()
    results = [result for broker in brokers for result in run_broker(broker, names)]
    text = report(results, started=started, seconds=time.monotonic() - began)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".md").write_text(text)
    output.with_suffix(".json").write_text(json.dumps([asdict(result) for result in results], indent=2, default=str))
    print(text)
    return 0 if all(result.passed for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
