"""`make bench` / `make bench-quick`: every benchmark, each in its own process, into one table.

Writes bench/results/latest.json and bench/results/latest.md. Figures from a loaded machine are not
comparable with a quiet one: run it alone.

    python -m bench [--quick] [--only router,ledger,pipeline,api,calibration]
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
    "peer": "bench.peer.runner",
    "scale": "bench.scale_bench",
    "calibration": "bench.calibration_bench",
}
PEER_FIGURES = {
    "c1_added_p50_ms": ("added latency p50, concurrency 1", "ms"),
    "c1_added_p99_ms": ("added latency p99, concurrency 1", "ms"),
    "c16_added_p50_ms": ("added latency p50, concurrency 16", "ms"),
    "c16_added_p99_ms": ("added latency p99, concurrency 16", "ms"),
    "stream_c1_added_ttfb_p50_ms": ("streamed: added time to first byte p50, concurrency 1", "ms"),
    "stream_c1_added_ttfb_p99_ms": ("streamed: added time to first byte p99, concurrency 1", "ms"),
    "stream_c16_added_ttfb_p50_ms": ("streamed: added time to first byte p50, concurrency 16", "ms"),
    "stream_c16_added_ttfb_p99_ms": ("streamed: added time to first byte p99, concurrency 16", "ms"),
    "stream_c1_added_p50_ms": ("streamed: added latency to the last byte p50, concurrency 1", "ms"),
    "stream_c1_added_p99_ms": ("streamed: added latency to the last byte p99, concurrency 1", "ms"),
    "stream_c16_added_p50_ms": ("streamed: added latency to the last byte p50, concurrency 16", "ms"),
    "stream_c16_added_p99_ms": ("streamed: added latency to the last byte p99, concurrency 16", "ms"),
    "cpu_ms_per_request": ("CPU per request, system under test", "ms"),
    "escalation_penalty_p50_ms": ("escalation penalty p50 (LiteLLM: fallback on error)", "ms"),
    "escalation_penalty_p99_ms": ("escalation penalty p99 (LiteLLM: fallback on error)", "ms"),
    "saturation_per_s": ("saturation throughput (100% ok, p99 ≤ 3x unloaded)", "/s"),
}
PEER_NAMES = {"litellm-proxy": "LiteLLM proxy", "litellm-router": "LiteLLM Router (in-process)"}


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


def _spread(figure: dict | float | None, unit: str) -> str:
    """A median with its spread over rounds: "12.3 ms (11.0-14.1)"."""
    if isinstance(figure, dict):
        if figure.get("median") is None:
            return "—"
        spread = f" ({figure['min']:,.1f}-{figure['max']:,.1f})" if figure["n"] > 1 else ""
        return f"{figure['median']:,.1f} {unit}{spread}"
    return "—" if figure is None else f"{figure:,.1f} {unit}"


def _peer_rows(peer: dict) -> list[tuple[str, ...]]:
    """Arbiter beside LiteLLM: (figure, Arbiter's value, goal, the peer's value, ratio Arbiter / peer)."""
    rows: list[tuple[str, ...]] = []
    systems = peer.get("systems", {})
    for name, figures in peer.get("ratios", {}).items():
        for key, (label, unit) in PEER_FIGURES.items():
            if key not in figures:
                continue
            ratio = figures[key]["ratio"]
            rows.append(
                (
                    f"{label} — vs {PEER_NAMES.get(name, name)}",
                    _spread(systems["arbiter"].get(key), unit),
                    "",
                    _spread(systems[name].get(key), unit),
                    "—" if ratio is None else f"{ratio:.2f}",
                )
            )
    labels = {
        "saturation_per_s": ("saturation throughput", "/s"),
        "c16_per_s": ("throughput at concurrency 16", "/s"),
        "cpu_ms_per_request": ("CPU per request", "ms"),
        "c1_p50_ms": ("latency p50, concurrency 1", "ms"),
    }
    for key, tax in peer.get("logging_tax", {}).items():
        label, unit = labels.get(key, (key, ""))
        rows.append(
            (
                f"logging tax: {label}, ledger on (off: bench stub)",
                f"{tax['ledger_on']:,.1f} {unit}",
                "",
                f"off: {tax['ledger_off']:,.1f} {unit}",
                f"on/off {tax['on_over_off']:.2f}",
            )
        )
    for name in ("arbiter", "arbiter-noledger"):
        inside = systems.get(name, {}).get("inside") or {}
        if inside.get("jobs"):
            rows.append(
                (
                    f"{name}, concurrency 1: job submit → finished p50 / p99 (its own rows) vs HTTP p50",
                    f"{inside['submit_to_finished_p50_ms']:,.1f} / {inside['submit_to_finished_p99_ms']:,.1f} ms",
                    "",
                    f"HTTP p50 {_spread(systems[name].get('c1_p50_ms'), 'ms')}",
                    "",
                )
            )
        if "escalation_penalty_inside_p50_ms" in inside:
            rows.append(
                (
                    f"{name}: escalation penalty p50 inside the job (its own rows), one hop nano → mini",
                    f"{inside['escalation_penalty_inside_p50_ms']:,.1f} ms",
                    "",
                    "",
                    "",
                )
            )
    direct = systems.get("direct", {})
    if direct:
        baseline = f"{_spread(direct.get('c1_p50_ms'), 'ms')} / {_spread(direct.get('c1_p99_ms'), 'ms')}"
        rows.append(("direct to the model server p50 / p99, concurrency 1 (baseline)", baseline, "", "", ""))
    rows += _streamed_rows(systems, peer.get("setup", {}).get("streamed", {}))
    setup = peer.get("setup", {})
    if setup:
        version = setup.get("litellm", {}).get("version")
        rows.append(
            (
                "peer bench: rounds, load average at the end",
                f"{setup.get('rounds')} rounds, load {setup.get('loadavg_at_end')}",
                "",
                f"LiteLLM {version}",
                "",
            )
        )
    return rows


def _streamed_rows(systems: dict, setup: dict) -> list[tuple[str, ...]]:
    """The streamed phase's absolute p50s: first byte / first content / last byte, at concurrency 1 and 16,
    and the fewest chunks a request got (each system really streamed)."""
    rows: list[tuple[str, ...]] = []

    def triple(name: str, level: str) -> str:
        figures = systems.get(name, {})
        values = [(figures.get(f"stream_{level}_{stat}") or {}).get("median")
                  for stat in ("ttfb_p50_ms", "first_content_p50_ms", "p50_ms")]
        text = " / ".join("—" if value is None else f"{value:,.1f}" for value in values)
        return f"{text} ms, ≥ {figures.get(f'stream_{level}_chunks_min', '—')} chunks"

    pace = setup.get("model_server_token_ms")
    for level, label in (("c1", "concurrency 1"), ("c16", "concurrency 16")):
        if "stream_c1_p50_ms" not in systems.get("arbiter", {}):
            break
        peers = "; ".join(f"{PEER_NAMES.get(name, name)} {triple(name, level)}"
                          for name in ("litellm-proxy", "litellm-router") if name in systems)
        rows.append((f"streamed p50 first byte / first content / last byte, {label}: arbiter (direct)",
                     f"{triple('arbiter', level)} (direct {triple('direct', level)})", "", peers, ""))
    if rows:
        rows.append((f"streamed: model server paced at {pace} ms per token (the same for non-streamed calls "
                     "in this phase); first byte = first chunk with a role or content", "", "", "", ""))
    return rows


def _scale_rows(scale: dict) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    setup = scale.get("setup", {})
    jobs = setup.get("jobs", 0)
    for page in scale.get("pages", []):
        goal = f"< {page['goal_ms']:g} ms" + ("" if page["meets_goal"] else " — MISSED")
        rows.append(
            (
                f"{page['page']} p95 server time, {jobs:,} jobs",
                f"{page['p95_ms']:,.1f} ms (p50 {page['p50_ms']:,.1f}; {page['queries']} queries)",
                goal,
                "",
                "",
            )
        )
    if setup:
        generated = scale.get("generated", {})
        sizes = f"{jobs:,} / {generated.get('events', 0):,} / {generated.get('held', 0):,}"
        rows.append(
            (
                "scale data: jobs / ledger events / held, load average",
                f"{sizes}, load {setup.get('loadavg')}",
                "",
                "",
                "",
            )
        )
    return rows


def _calibration_rows(calibration: dict) -> list[tuple[str, ...]]:
    """Per item set and target: miss rate against delta, tightness median / p90 against 1.2 / 1.4."""
    rows: list[tuple[str, ...]] = []
    for row in calibration.get("rows", []):
        label = f"certified thresholds, {row['population']} ({row['items']} items), target {row['target']:g}"
        tight = row["tightness_median"], row["tightness_p90"]
        tightness = "—" if tight[0] is None else f"{tight[0]:.2f} / {tight[1]:.2f}"
        # The miss rate on the fresh half, then on the whole set and on an independent sample (drawn sets):
        # evaluation.calibration.study says why the fresh half over-counts.
        others = [
            f"{name} {row[key]:.3f}"
            for name, key in (("whole set", "population_miss_rate"), ("independent", "independent_miss_rate"))
            if row.get(key) is not None
        ]
        rows.append(
            (
                f"{label}: miss rate over {row['splits']} splits · tightness median / p90",
                f"{row['miss_rate']:.3f}{' (' + ', '.join(others) + ')' if others else ''} · {tightness} "
                f"({row['certified']} certified, "
                f"{row['calibration_items']} calibrate / {row['fresh_items']} fresh)",
                f"≤ {row['delta']:g} · ≤ 1.2 / 1.4",
            )
        )
    return rows


def _rows(results: dict) -> list[tuple[str, ...]]:
    """(figure, value, goal[, peer, ratio]) rows for the Markdown table."""
    rows: list[tuple[str, ...]] = []
    for entry in results.get("router", {}).get("router", []):
        if entry["scenario"] in ("per-application", "mixed"):
            rows.append(
                (
                    f"router decide, {entry['scenario']}, {entry['rules']} rules",
                    f"{entry['decide_us']:.1f} µs",
                    "< 50 µs",
                )
            )
    ledger = results.get("ledger", {})
    for key, value in ledger.items():
        if isinstance(value, int | float):
            goal = "≥ 5,000/s" if "8" in key and "append" in key else "≥ 200,000/s" if "verif" in key else ""
            rows.append((f"ledger {key}", f"{value:,.0f}", goal))
    for entry in results.get("pipeline", {}).get("pipeline", []):
        rows.append((f"pipeline jobs/s, {entry['workers']} worker(s)", f"{entry['jobs_per_s']}", "≥ 200/s"))
        rows.append(
            (
                f"pipeline queue wait p50/p99, {entry['workers']} worker(s)",
                f"{entry['queue_wait_p50_ms']} / {entry['queue_wait_p99_ms']} ms",
                "",
            )
        )
    api = results.get("api", {})
    for key, value in api.items():
        if isinstance(value, int | float):
            rows.append((f"api {key}", f"{value:,.1f}", ""))
    if "error" not in results.get("peer", {"error": ""}):
        rows += _peer_rows(results["peer"])
    if "error" not in results.get("scale", {"error": ""}):
        rows += _scale_rows(results["scale"])
    if "error" not in results.get("calibration", {"error": ""}):
        rows += _calibration_rows(results["calibration"])
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
    lines = [
        "# Benchmarks",
        "",
        f"{meta['when']} · {'quick' if args.quick else 'full'} · {meta['machine']}",
        "",
        "| figure | value (Arbiter) | goal | peer (LiteLLM) | ratio Arbiter / peer |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += ["| " + " | ".join((*row, "", "")[:5]) + " |" for row in _rows(results)]
    (RESULTS / "latest.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
