"""`make bench` / `make bench-quick`: every benchmark, each in its own process, into one table.

Writes bench/results/latest.json and bench/results/latest.md. Figures from a loaded machine are not
comparable with a quiet one: run it alone.

    python -m bench [--quick] [--only router,ledger,pipeline,api]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
RESULTS = BASE_DIR / "bench" / "results"

# name -> (module with run(quick) -> dict, goals: figure path -> (comparison, goal, label))
BENCHES: dict[str, str] = {
    "router": "bench.router_bench",
    "ledger": "bench.ledger_bench",
    "pipeline": "bench.pipeline_bench",
    "api": "bench.api_bench",
}


def _run_module(module: str, quick: bool, timeout: float) -> dict:
    if module == "bench.router_bench":
        command = [sys.executable, "-m", module, "--json", "--repeats", "3" if quick else "7"]
        output = subprocess.run(command, cwd=BASE_DIR, capture_output=True, text=True, timeout=timeout, check=True)
        return {"router": [json.loads(line) for line in output.stdout.splitlines() if line.startswith("{")]}
    code = f"import json, {module} as bench; print('@@' + json.dumps(bench.run(quick={quick})))"
    output = subprocess.run(
        [sys.executable, "-c", code], cwd=BASE_DIR, capture_output=True, text=True, timeout=timeout, check=False
    )
    marked = [line[2:] for line in output.stdout.splitlines() if line.startswith("@@")]
    if output.returncode != 0 or not marked:
        tail = (output.stderr or output.stdout).strip().splitlines()[-3:]
        return {"error": " | ".join(tail)}
    return json.loads(marked[-1])


def _rows(results: dict) -> list[tuple[str, str, str]]:
    """(figure, value, goal) rows for the Markdown table."""
    rows: list[tuple[str, str, str]] = []
    for entry in results.get("router", {}).get("router", []):
        if entry["scenario"] in ("per-application", "mixed"):
            rows.append(
                (f"router decide, {entry['scenario']}, {entry['rules']} rules", f"{entry['decide_us']:.1f} µs", "< 50 µs")
            )
    ledger = results.get("ledger", {})
    for key, value in ledger.items():
        if isinstance(value, int | float):
            goal = "≥ 5,000/s" if "8" in key and "append" in key else "≥ 200,000/s" if "verif" in key else ""
            rows.append((f"ledger {key}", f"{value:,.0f}", goal))
    for entry in results.get("pipeline", {}).get("pipeline", []):
        rows.append((f"pipeline jobs/s, {entry['workers']} worker(s)", f"{entry['jobs_per_s']}", "≥ 200/s"))
        rows.append((f"pipeline queue wait p50/p99, {entry['workers']} worker(s)",
                     f"{entry['queue_wait_p50_ms']} / {entry['queue_wait_p99_ms']} ms", ""))
    api = results.get("api", {})
    for key, value in api.items():
        if isinstance(value, int | float):
            rows.append((f"api {key}", f"{value:,.1f}", ""))
    for name, value in results.items():
        if isinstance(value, dict) and "error" in value:
            rows.append((f"{name}", "FAILED: " + value["error"][:120], ""))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default=",".join(BENCHES))
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    results: dict = {}
    for name in chosen:
        started = time.monotonic()
        print(f"bench: {name} …", flush=True)
        results[name] = _run_module(BENCHES[name], args.quick, timeout=900 if args.quick else 3600)
        print(f"bench: {name} done in {time.monotonic() - started:.0f} s", flush=True)
    meta = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": f"{platform.machine()}, {platform.python_version()}",
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    lines = ["# Benchmarks", "", f"{meta['when']} · {'quick' if args.quick else 'full'} · {meta['machine']}", "",
             "| figure | value | goal |", "| --- | --- | --- |"]
    lines += [f"| {figure} | {value} | {goal} |" for figure, value, goal in _rows(results)]
    (RESULTS / "latest.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
