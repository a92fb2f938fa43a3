"""The figures: medians over rounds with their spread, added latency over direct, ratios Arbiter / LiteLLM,
the logging tax."""

from __future__ import annotations

import statistics
from typing import Any


def _median_spread(values: list[float | None]) -> dict:
    present = [v for v in values if v is not None and v == v]
    if not present:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": round(statistics.median(present), 3), "min": round(min(present), 3),
            "max": round(max(present), 3), "n": len(present)}


def _ratio(ours: float | None, theirs: float | None) -> float | None:
    """None where a ratio means nothing: a missing figure, or a peer's added figure at or below zero (noise
    in a short run can make a peer's p99 over direct negative)."""
    if ours is None or theirs is None or theirs <= 0:
        return None
    return round(ours / theirs, 2)


# Streamed figures subtracted from direct's: time to first byte and to the last byte, p50 and p99.
STREAM_ADDED = ("ttfb_p50_ms", "ttfb_p99_ms", "p50_ms", "p99_ms")


def _streamed(name: str, rounds: list[dict[str, dict]]) -> dict:
    """`stream_<level>_<stat>` medians over rounds (p50/p99 are to the last byte), the fewest chunks any
    request got, and `stream_<level>_added_<stat>` = system - direct per round, then the median."""
    per_round = [entry[name]["stream"] for entry in rounds if "stream" in entry.get(name, {})]
    figures: dict[str, Any] = {}
    if not per_round:
        return figures
    for level in ("c1", "c16"):
        for stat in (*STREAM_ADDED, "first_content_p50_ms", "per_s"):
            figures[f"stream_{level}_{stat}"] = _median_spread([r[level].get(stat) for r in per_round])
        figures[f"stream_{level}_errors"] = sum(r[level]["errors"] for r in per_round)
        figures[f"stream_{level}_chunks_min"] = min((r[level].get("chunks_min", 0) for r in per_round), default=0)
        figures[f"stream_{level}_without_usage"] = sum(r[level].get("without_usage", 0) for r in per_round)
        if name == "direct":
            continue
        for stat in STREAM_ADDED:
            added = [
                entry[name]["stream"][level][stat] - entry["direct"]["stream"][level][stat]
                for entry in rounds
                if "stream" in entry.get(name, {}) and "stream" in entry.get("direct", {})
            ]
            figures[f"stream_{level}_added_{stat}"] = _median_spread(added)
    return figures


def aggregate(rounds: list[dict[str, dict]], saturations: dict[str, dict]) -> dict:
    """Medians over rounds of each system's figures, the added latency over direct (per round, then the
    median), and the ratios Arbiter / LiteLLM."""
    names = sorted({name for entry in rounds for name in entry})
    systems: dict[str, dict] = {}
    for name in names:
        per_round = [entry[name] for entry in rounds if name in entry]
        figures: dict[str, Any] = {"cpu_ms_per_request": _median_spread([r["cpu_ms_per_request"] for r in per_round])}
        if any(r.get("db_cpu_ms_per_request") is not None for r in per_round):
            figures["db_cpu_ms_per_request"] = _median_spread([r.get("db_cpu_ms_per_request") for r in per_round])
        for level in ("c1", "c16"):
            for stat in ("p50_ms", "p99_ms", "per_s"):
                figures[f"{level}_{stat}"] = _median_spread([r[level][stat] for r in per_round])
            figures[f"{level}_errors"] = sum(r[level]["errors"] for r in per_round)
            if name != "direct":
                for stat in ("p50_ms", "p99_ms"):
                    added = [
                        entry[name][level][stat] - entry["direct"][level][stat]
                        for entry in rounds
                        if name in entry and "direct" in entry
                    ]
                    figures[f"{level}_added_{stat}"] = _median_spread(added)
        figures.update(_streamed(name, rounds))
        if all("escalation" in r for r in per_round) and per_round:
            for stat in ("penalty_p50_ms", "penalty_p99_ms"):
                figures[f"escalation_{stat}"] = _median_spread([r["escalation"][stat] for r in per_round])
            figures["escalation_errors"] = sum(r["escalation"]["escalated"]["errors"] for r in per_round)
        if name in saturations:
            figures["saturation_per_s"] = saturations[name]["max_rate_per_s"]
        systems[name] = figures

    def median(system: str, key: str) -> float | None:
        value = systems.get(system, {}).get(key)
        return value.get("median") if isinstance(value, dict) else value

    ratios: dict[str, dict] = {}
    for peer in ("litellm-proxy", "litellm-router"):
        if peer not in systems or "arbiter" not in systems:
            continue
        keys = [f"{level}_added_{stat}" for level in ("c1", "c16") for stat in ("p50_ms", "p99_ms")]
        keys += [f"stream_{level}_added_{stat}" for level in ("c1", "c16") for stat in STREAM_ADDED]
        keys += ["cpu_ms_per_request", "escalation_penalty_p50_ms", "escalation_penalty_p99_ms", "saturation_per_s"]
        ratios[peer] = {
            key: {"arbiter": median("arbiter", key), "peer": median(peer, key),
                  "ratio": _ratio(median("arbiter", key), median(peer, key))}
            for key in keys
            if median("arbiter", key) is not None and median(peer, key) is not None
        }
    tax: dict[str, Any] = {}
    if "arbiter-noledger" in systems:
        for key in ("saturation_per_s", "c16_per_s", "cpu_ms_per_request", "c1_p50_ms"):
            on, off = median("arbiter", key), median("arbiter-noledger", key)
            if on is not None and off is not None:
                tax[key] = {"ledger_on": on, "ledger_off": off, "on_over_off": _ratio(on, off)}
    return {"systems": systems, "ratios": ratios, "logging_tax": tax}
