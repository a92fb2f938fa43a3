"""One round of one system, and the whole run: start everything, check it routes as expected, measure in
rotating rounds, search saturation, aggregate."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.peer.arbiter import CELERY_CONCURRENCY, DATABASE, GUNICORN, Arbiter, arbiter_setup, job_timings
from bench.peer.litellm_env import RouterProcess, ensure_peer_venv, litellm_config, peer_env
from bench.peer.load import (
    ESCALATING,
    ONE_HOP,
    PROMPT,
    REQUEST_TIMEOUT_S,
    STREAM_OPTIONS,
    STREAM_TOKEN_MS,
    HttpTarget,
    closed_loop,
    consume_stream,
    percentile,
    saturation,
)
from bench.peer.processes import CpuMeter, pin_running, pinned, split_cores, stop_process, wait_http
from bench.peer.report import aggregate

# Per mode: rounds, closed-loop requests at concurrency 1 and 16, escalation requests, saturation step
# seconds, bisection steps after the first failure, systems whose saturation is searched.
PLAN = {
    True: {
        "rounds": 2,
        "c1": 15,
        "c16": 48,
        "escalation": 8,
        "step_s": 1.5,
        "bisect": 0,
        "max_steps": 3,
        "saturation": ("arbiter", "litellm-proxy"),
    },
    False: {
        "rounds": 5,
        "c1": 150,
        "c16": 400,
        "escalation": 60,
        "step_s": 6.0,
        "bisect": 2,
        "max_steps": 10,
        # Not direct: its generator shares a core with the model server, so it would measure the generator.
        "saturation": ("arbiter", "arbiter-noledger", "litellm-proxy"),
    },
}

class System:
    """How to send one request to a system, and whose CPU to count for it."""

    def __init__(self, name: str, *, base_url: str | None, model: str, headers: dict[str, str] | None = None,
                 meter: CpuMeter | None = None, router: RouterProcess | None = None,
                 escalation_model: str | None = None, escalation_marker: str = ONE_HOP, streams: bool = True) -> None:
        self.name = name
        self.streams = streams
        self.base_url = base_url
        self.model = model
        self.headers = headers or {}
        self.meter = meter
        self.router = router
        self.escalation_model = escalation_model
        self.escalation_marker = escalation_marker
        self.c1_windows: list[tuple[datetime, datetime]] = []
        self.escalation_windows: list[tuple[datetime, datetime]] = []
        self.client = None
        if base_url:
            import openai

            self.client = openai.OpenAI(base_url=base_url, api_key=self.headers.pop("x-bench-key", "bench"),
                                        max_retries=0, timeout=REQUEST_TIMEOUT_S)

    def load(self, *, requests: int, concurrency: int, marker: str = ONE_HOP, model: str | None = None,
             time_limit: float = 120, stream: bool = False) -> dict:
        model = model or self.model
        if self.router is not None:
            return self.router.run(model=model, marker=marker, requests=requests, concurrency=concurrency,
                                   time_limit=time_limit, stream=stream)
        offset = int(time.time() * 1000) % 10**9  # distinct prompts across rounds

        def call(number: int) -> dict | None:
            answer = self.client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": f"{marker} {PROMPT.format(n=offset + number)}"}],
                extra_headers=self.headers,
                **({"stream": True, "stream_options": STREAM_OPTIONS} if stream else {}),
            )
            return consume_stream(answer) if stream else None

        cpu = time.process_time()
        result = closed_loop(call, requests=requests, concurrency=concurrency, time_limit=time_limit)
        result["cpu_s"] = time.process_time() - cpu  # the load generator's own CPU
        return result

    def target(self) -> HttpTarget:
        headers = dict(self.headers)
        if self.client is not None:
            headers["Authorization"] = f"Bearer {self.client.api_key}"
        return HttpTarget(self.base_url, self.model, headers)


def _summary(result: dict) -> dict:
    latencies = result.pop("latencies_ms")
    result.update(
        p50_ms=round(percentile(latencies, 0.5), 2),
        p99_ms=round(percentile(latencies, 0.99), 2),
        per_s=round(result["per_s"], 1),
        elapsed_s=round(result["elapsed_s"], 2),
    )
    stream = result.pop("stream", None)
    if stream:  # p50_ms / p99_ms above are to the last byte
        content = [value for value in stream["first_content_ms"] if value is not None]
        result.update(
            ttfb_p50_ms=round(percentile(stream["ttfb_ms"], 0.5), 2),
            ttfb_p99_ms=round(percentile(stream["ttfb_ms"], 0.99), 2),
            first_content_p50_ms=round(percentile(content, 0.5), 2),
            chunks_min=min(stream["chunks"]),
            chunks_median=percentile(stream["chunks"], 0.5),
            without_usage=sum(not seen for seen in stream["usage"]),
        )
    return result


def measure_streamed(system: System, plan: dict, pace: Callable[[int], None]) -> dict:
    """The same prompt streamed at concurrency 1 and 16, the model server generating at STREAM_TOKEN_MS per
    token for the phase (and back to zero after it, for the other phases)."""
    pace(STREAM_TOKEN_MS)
    try:
        one = system.load(requests=plan["c1"], concurrency=1, stream=True)
        sixteen = system.load(requests=plan["c16"], concurrency=16, stream=True)
    finally:
        pace(0)
    return {"c1": _summary(one), "c16": _summary(sixteen)}


def measure_round(system: System, plan: dict, samples: dict, pace: Callable[[int], None]) -> dict:
    """Concurrency 1 and 16 (with CPU of the system under test over both), the escalation pair, then the
    streamed phase."""
    before = system.meter.read() if system.meter else None
    opened = datetime.now(UTC)
    one = system.load(requests=plan["c1"], concurrency=1)
    system.c1_windows.append((opened, datetime.now(UTC)))
    sixteen = system.load(requests=plan["c16"], concurrency=16)
    figures: dict[str, Any] = {}
    if system.meter:
        own, database = CpuMeter.spent(before, system.meter.read())
        done = one["ok"] + sixteen["ok"]
        figures["cpu_ms_per_request"] = round(own * 1000 / done, 3) if done else None
        figures["db_cpu_ms_per_request"] = round(database * 1000 / done, 3) if done and system.meter.database else None
    else:  # the client is the system (direct, in-process Router): its own process CPU
        done = one["ok"] + sixteen["ok"]
        figures["cpu_ms_per_request"] = round((one["cpu_s"] + sixteen["cpu_s"]) * 1000 / done, 3) if done else None
    samples.setdefault(system.name, {}).setdefault("c1", []).extend(one["latencies_ms"])
    samples[system.name].setdefault("c16", []).extend(sixteen["latencies_ms"])
    figures["c1"] = _summary(one)
    figures["c16"] = _summary(sixteen)
    if system.escalation_model or system.escalation_marker != ONE_HOP:
        base = system.load(requests=plan["escalation"], concurrency=1)
        opened = datetime.now(UTC)
        hop = system.load(requests=plan["escalation"], concurrency=1, marker=system.escalation_marker,
                          model=system.escalation_model)
        system.escalation_windows.append((opened, datetime.now(UTC)))
        samples[system.name].setdefault("escalated", []).extend(hop["latencies_ms"])
        figures["escalation"] = {"base": _summary(base), "escalated": _summary(hop)}
        figures["escalation"]["penalty_p50_ms"] = round(hop["p50_ms"] - base["p50_ms"], 2)
        figures["escalation"]["penalty_p99_ms"] = round(hop["p99_ms"] - base["p99_ms"], 2)
    if system.streams:
        figures["stream"] = measure_streamed(system, plan, pace)
    return figures


def run(quick: bool = False) -> dict:
    """{"setup": {...}, "systems": {name: figures}, "ratios": {peer: {figure: {arbiter, peer, ratio}}},
    "logging_tax": {...}, "saturation": {name: steps}, "plots": [files]}."""
    from bench.support import drop_database, free_port, start_modelserver

    plan = PLAN[quick]
    started = time.perf_counter()
    cores = split_cores()
    original_affinity = os.sched_getaffinity(0)
    if cores:
        pin_running(os.getpid(), cores[0])
    sut_cores = cores[1] if cores else None
    peer_python = ensure_peer_venv()
    processes: list[Any] = []
    arbiters: list[Arbiter] = []
    modelserver, model_url = start_modelserver(0.0)
    if cores:
        pin_running(modelserver.pid, cores[0])
    workdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"arbiter-peer-{uuid.uuid4().hex[:8]}"
    workdir.mkdir(parents=True)
    try:
        _admin(model_url, {"model": "sim-nano-b", "error_rate": 1.0})  # LiteLLM's failing first deployment
        config = litellm_config(model_url)
        (workdir / "litellm.json").write_text(json.dumps(config))
        (workdir / "log.json").write_text(json.dumps(
            {"version": 1, "disable_existing_loggers": False,
             "handlers": {"err": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}},
             "root": {"level": "WARNING", "handlers": ["err"]},
             "loggers": {"uvicorn.access": {"level": "WARNING"}}}))
        proxy_port = free_port()
        proxy = subprocess.Popen(
            [str(peer_python.parent / "litellm"), "--config", str(workdir / "litellm.json"), "--host", "127.0.0.1",
             "--port", str(proxy_port), "--num_workers", "1", "--telemetry", "False",
             "--log_config", str(workdir / "log.json")],
            cwd=workdir, env=peer_env(), stdout=subprocess.DEVNULL, stderr=open(workdir / "proxy.log", "w"),  # noqa: SIM115
            start_new_session=True, preexec_fn=pinned(sut_cores),
        )
        processes.append(proxy)
        router = RouterProcess(peer_python, workdir / "litellm.json", cores[0] if cores else None)
        processes.append(router)
        _, keys, env = arbiter_setup(model_url)
        arbiters = [Arbiter(env=env, port=free_port(), ledger=True, cores=sut_cores),
                    Arbiter(env=env, port=free_port(), ledger=False, cores=sut_cores)]
        for arbiter in arbiters:
            if not wait_http(arbiter.base_url + "/models", {401}, timeout=60):
                raise RuntimeError("Arbiter's gunicorn did not come up")
        if not wait_http(f"http://127.0.0.1:{proxy_port}/health/liveliness", {200}, timeout=120):
            raise RuntimeError("the LiteLLM proxy did not come up: " + (workdir / "proxy.log").read_text()[-400:])
        router.wait_ready()
        task_type = {"x-arbiter-task-type": "classification"}
        systems = [
            System("direct", base_url=model_url, model="sim-nano"),
            System("arbiter", base_url=arbiters[0].base_url, model="auto",
                   headers={**task_type, "x-bench-key": keys["arbiter"]},
                   meter=CpuMeter(arbiters[0].pids(), DATABASE), escalation_marker=ESCALATING),
            System("arbiter-noledger", base_url=arbiters[1].base_url, model="auto",
                   headers={**task_type, "x-bench-key": keys["arbiter-noledger"]},
                   meter=CpuMeter(arbiters[1].pids(), DATABASE), streams=False),
            System("litellm-proxy", base_url=f"http://127.0.0.1:{proxy_port}/v1", model="bench-nano",
                   meter=CpuMeter([proxy.pid]), escalation_model="bench-fail"),
            System("litellm-router", base_url=None, model="bench-nano", router=router, escalation_model="bench-fail"),
        ]
        def pace(token_ms: int) -> None:
            _admin(model_url, {"model": "*", "token_ms": token_ms})

        checks = _sanity(systems)
        pace(STREAM_TOKEN_MS)
        try:
            checks["streamed"] = _stream_sanity(systems)
        finally:
            pace(0)
        for system in systems:  # warm-up: connections, imports, caches, the first jobs
            system.load(requests=8, concurrency=4)
            if system.streams:
                system.load(requests=4, concurrency=2, stream=True)
        samples: dict[str, dict[str, list[float]]] = {}
        rounds = []
        for number in range(plan["rounds"]):
            order = systems[number % len(systems):] + systems[: number % len(systems)]
            rounds.append({system.name: measure_round(system, plan, samples, pace) for system in order})
        interim = aggregate(rounds, {})
        saturations = {}
        for system in systems:
            if system.name not in plan["saturation"]:
                continue
            figures = interim["systems"][system.name]
            saturations[system.name] = saturation(
                system.target(),
                unloaded_p99=figures["c1_p99_ms"]["median"],
                start_rate=max(2.0, figures["c16_per_s"]["median"] * 0.5),
                plan=plan,
            )
        summary = aggregate(rounds, saturations)
        for system in systems:
            if system.name in keys:
                summary["systems"][system.name]["inside"] = job_timings(
                    system.name, system.c1_windows, system.escalation_windows
                )
        load = os.getloadavg()
        summary["setup"] = {
            "quick": quick,
            "rounds": plan["rounds"],
            "requests": {k: plan[k] for k in ("c1", "c16", "escalation")},
            "pinning": {"load_generator_and_model_server": sorted(cores[0]), "system_under_test": sorted(sut_cores)}
            if cores else "none (one core)",
            "arbiter": {"gunicorn": GUNICORN, "celery_prefork_concurrency": CELERY_CONCURRENCY,
                        "policy": "demo default, rule cheap-extraction"},
            "litellm": {"version": router.version, "proxy": "uvicorn, 1 worker, no database"},
            "open_loop_client": "raw HTTP/1.1 keep-alive (asyncio), latency from each request's due time",
            "closed_loop_client": "openai SDK (sync), one thread per concurrent request",
            "streamed": {
                "systems": [system.name for system in systems if system.streams],
                "model_server_token_ms": STREAM_TOKEN_MS,
                "request": "stream=True, stream_options={'include_usage': True}, the same prompt",
                "ttfb": "call start -> first chunk the SDK yields with a role or non-empty content",
                "total": "call start -> the stream's end ([DONE] read)",
            },
            "loadavg_at_end": [round(x, 2) for x in load],
            "cpus": os.cpu_count(),
            "elapsed_s": round(time.perf_counter() - started, 1),
            "sanity": checks,
        }
        summary["saturation"] = saturations
        summary["rounds_raw"] = rounds
        try:
            from bench import plots

            summary["plots"] = plots.peer_plots(samples, saturations)
        except Exception as error:  # a missing picture must not lose the figures
            summary["plots"] = [f"failed: {error}"]
        return summary
    finally:
        for arbiter in arbiters:
            arbiter.stop()
        for process in processes:
            process.stop() if isinstance(process, RouterProcess) else stop_process(process)
        modelserver.terminate()
        try:
            from django.db import connections

            connections.close_all()
            from controlplane.redis_client import get_redis

            get_redis().delete(*[arbiter.queue for arbiter in arbiters]) if arbiters else None
        except Exception:  # noqa: S110 - clean-up only; the database is dropped next anyway
            pass
        drop_database(DATABASE)
        pin_running(os.getpid(), original_affinity)


def _admin(model_url: str, knobs: dict) -> None:
    import urllib.request

    request = urllib.request.Request(  # noqa: S310 - the loopback model server's http URL
        model_url.removesuffix("/v1") + "/_admin/faults",
        data=json.dumps(knobs).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
        response.read()


def _sanity(systems: list[System]) -> dict:
    """One request each way, checked: Arbiter answers at nano in one hop and at mini after one escalation;
    the LiteLLM fallback lands on sim-mini."""
    checks: dict[str, Any] = {}
    for system in systems:
        if system.client is None:
            continue
        raw = system.client.chat.completions.with_raw_response.create(
            model=system.model, messages=[{"role": "user", "content": f"{ONE_HOP} {PROMPT.format(n=-1)}"}],
            extra_headers=system.headers)
        checks[system.name] = {"model": raw.parse().model, "tier": raw.headers.get("x-arbiter-final-tier"),
                               "escalations": raw.headers.get("x-arbiter-escalations")}
        if system.name == "arbiter":
            raw = system.client.chat.completions.with_raw_response.create(
                model=system.model, messages=[{"role": "user", "content": f"{ESCALATING} {PROMPT.format(n=-2)}"}],
                extra_headers=system.headers)
            checks["arbiter escalated"] = {"tier": raw.headers.get("x-arbiter-final-tier"),
                                           "escalations": raw.headers.get("x-arbiter-escalations")}
            if checks["arbiter"]["tier"] != "nano" or checks["arbiter escalated"]["tier"] != "mini":
                raise RuntimeError(f"Arbiter did not route as the bench expects: {checks}")
        if system.escalation_model == "bench-fail":
            model = system.client.chat.completions.create(
                model="bench-fail", messages=[{"role": "user", "content": f"{ONE_HOP} {PROMPT.format(n=-3)}"}]).model
            checks[f"{system.name} fallback"] = {"model": model}
    return checks


def _stream_sanity(systems: list[System]) -> dict:
    """One streamed request per streaming system, checked: an event stream of more than one chunk with a
    usage chunk; Arbiter's routed at nano in one hop (its route headers come with the stream's headers)."""
    checks: dict[str, Any] = {}
    for system in systems:
        if not system.streams:
            continue
        if system.client is None:  # the in-process Router: its own driver, same checks on the chunks
            result = system.load(requests=1, concurrency=1, stream=True)
            stream = result.get("stream") or {}
            checks[system.name] = {"chunks": (stream.get("chunks") or [0])[0],
                                   "usage": (stream.get("usage") or [False])[0],
                                   "errors": result["errors"], "first_error": result["first_error"]}
        else:
            raw = system.client.chat.completions.with_raw_response.create(
                model=system.model, messages=[{"role": "user", "content": f"{ONE_HOP} {PROMPT.format(n=-4)}"}],
                extra_headers=system.headers, stream=True, stream_options=STREAM_OPTIONS)
            outcome = consume_stream(raw.parse())
            checks[system.name] = {"content_type": raw.headers.get("content-type"), "chunks": outcome["chunks"],
                                   "usage": outcome["usage"], "tier": raw.headers.get("x-arbiter-final-tier"),
                                   "escalations": raw.headers.get("x-arbiter-escalations")}
            if not (raw.headers.get("content-type") or "").startswith("text/event-stream"):
                raise RuntimeError(f"{system.name} did not answer an event stream: {checks[system.name]}")
        if checks[system.name]["chunks"] <= 1:
            raise RuntimeError(f"{system.name} did not stream (one chunk or none): {checks[system.name]}")
        if system.name == "arbiter" and checks[system.name]["tier"] != "nano":
            raise RuntimeError(f"Arbiter did not route the stream as the bench expects: {checks[system.name]}")
    return checks
