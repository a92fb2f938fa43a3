"""Arbiter side by side with LiteLLM: per-request overhead, CPU per request, saturation throughput, the
escalation penalty and the logging tax, all against the local model server (synthetic, zero latency).

Systems, each reached with the same prompts:
- direct: the `openai` SDK straight to the model server (the baseline every "added" figure subtracts);
- arbiter: `/v1/chat/completions` on gunicorn with Celery workers, full ledger; the request becomes a job,
  the default policy's `cheap-extraction` rule answers at nano (marker `[confidence:nano=0.95]`): one hop;
- arbiter-noledger: the same processes with `audit.ledger.append` and `audit.payloads.store` replaced by
  no-ops (a bench-only stub: Arbiter has no switch to turn its ledger off) — for the logging tax only;
- litellm-proxy: `litellm --config` (one uvicorn worker, no database), LiteLLM pinned in
  bench/peer-requirements.txt and installed into its own virtualenv bench/.peer-venv (never Arbiter's);
- litellm-router: LiteLLM's in-process `Router`, in a process of the peer virtualenv driven over a pipe.

Placement: the load generator (this process) and the model server on one core, the system under test
on the other (sched_setaffinity; skipped on a one-core machine). Postgres and Redis are the machine's
shared servers and are not pinned. Systems are measured in rounds, A/B/A/B, the order rotating each
round; figures are medians over rounds with their spread (min-max). Every loop is bounded in count and
in time and targets loopback only; the peer's outbound fetches are disabled and any other HTTP(S) is
sent to a dead loopback proxy.

    python bench/peer_bench.py [--quick] [--json]

This file must import only the standard library at the top: the peer virtualenv runs it as the
in-process Router's driver (`--router-driver`).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
PEER_VENV = BASE_DIR / "bench" / ".peer-venv"
PEER_REQUIREMENTS = BASE_DIR / "bench" / "peer-requirements.txt"
DATABASE = "arbiter_bench_peer"

ONE_HOP = "[task:classification] [confidence:nano=0.95]"
ESCALATING = "[task:classification] [confidence:nano=0.3,mini=0.95]"
PROMPT = "Classify support ticket {n}: my card was charged twice for the same order, please help."

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
GUNICORN = {"workers": 2, "threads": 8}  # 16 request threads: concurrency 16 never queues for a thread
CELERY_CONCURRENCY = 4
DEAD_PROXY = "http://127.0.0.1:9"  # nothing listens there: an unexpected outbound call fails at once
REQUEST_TIMEOUT_S = 30.0
OPEN_LOOP_CONNECTIONS = 256


# --- bounded load ---------------------------------------------------------------------------------------


def closed_loop(call: Callable[[int], None], *, requests: int, concurrency: int, time_limit: float) -> dict:
    """`requests` calls from `concurrency` threads, each starting when its previous call returned.
    Stops early at `time_limit` seconds. Latencies (ms) of the successful calls; errors counted."""
    latencies: list[float] = []
    errors: list[str] = []
    counter = iter(range(requests))
    lock = threading.Lock()
    deadline = time.monotonic() + time_limit

    def worker() -> None:
        while time.monotonic() < deadline:
            with lock:
                number = next(counter, None)
            if number is None:
                return
            started = time.perf_counter()
            try:
                call(number)
            except Exception as error:  # any failure is a failed request, counted
                with lock:
                    errors.append(f"{type(error).__name__}: {str(error)[:160]}")
                continue
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                latencies.append(elapsed)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=time_limit + REQUEST_TIMEOUT_S)
    elapsed = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "ok": len(latencies),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "elapsed_s": elapsed,
        "per_s": len(latencies) / elapsed if elapsed else 0.0,
        "latencies_ms": latencies,
    }


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))]


class HttpTarget:
    """An OpenAI-compatible endpoint for the open-loop generator: raw HTTP/1.1 with keep-alive, far cheaper
    per request than the SDK, so that the generator's one core is not what saturates."""

    def __init__(self, base_url: str, model: str, headers: dict[str, str], marker: str = ONE_HOP) -> None:
        rest = base_url.removeprefix("http://")
        hostport, _, prefix = rest.partition("/")
        host, _, port = hostport.partition(":")
        self.host, self.port = host, int(port)
        self.path = f"/{prefix}/chat/completions"
        self.model = model
        self.headers = headers
        self.marker = marker

    def request_bytes(self, number: int) -> bytes:
        body = json.dumps(
            {"model": self.model, "messages": [{"role": "user", "content": f"{self.marker} {PROMPT.format(n=number)}"}]}
        ).encode()
        head = [
            f"POST {self.path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            *(f"{name}: {value}" for name, value in self.headers.items()),
        ]
        return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """(status, keep-alive) of one response, its body read and dropped."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionResetError("connection closed before a response")
    status = int(status_line.split()[1])
    length, chunked, close = 0, False, False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding" and "chunked" in value:
            chunked = True
        elif name == "connection" and value == "close":
            close = True
    if chunked:
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status, not close


class _Connections:
    def __init__(self, target: HttpTarget, limit: int) -> None:
        self.target = target
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.slots = asyncio.Semaphore(limit)
        self.opened = 0

    async def send(self, payload: bytes) -> int:
        async with self.slots:
            for attempt in (0, 1):
                reused = bool(self.idle)
                if reused:
                    reader, writer = self.idle.pop()
                else:
                    reader, writer = await asyncio.open_connection(self.target.host, self.target.port)
                    self.opened += 1
                try:
                    writer.write(payload)
                    await writer.drain()
                    status, keep = await _read_response(reader)
                except (ConnectionError, asyncio.IncompleteReadError):
                    writer.close()
                    if reused and attempt == 0:
                        continue  # the server closed an idle keep-alive connection: once more, fresh
                    raise
                if keep:
                    self.idle.append((reader, writer))
                else:
                    writer.close()
                return status
        raise ConnectionResetError("unreachable")

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()


async def _open_loop(target: HttpTarget, rate: float, seconds: float) -> dict:
    loop = asyncio.get_running_loop()
    connections = _Connections(target, OPEN_LOOP_CONNECTIONS)
    count = max(1, round(rate * seconds))
    latencies: list[float] = []
    failures: list[str] = []
    finished: list[float] = []

    async def one(number: int, due: float) -> None:
        try:
            status = await asyncio.wait_for(connections.send(target.request_bytes(number)), REQUEST_TIMEOUT_S)
        except Exception as error:  # counted as a failure
            failures.append(type(error).__name__)
            return
        now = loop.time()
        if status == 200:
            latencies.append((now - due) * 1000)  # from when it was due: queueing counts (no coordinated omission)
            finished.append(now)
        else:
            failures.append(f"HTTP {status}")

    start = loop.time() + 0.05
    tasks = []
    for number in range(count):
        due = start + number / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(number, due)))
    _, pending = await asyncio.wait(tasks, timeout=REQUEST_TIMEOUT_S + 5)
    for task in pending:
        task.cancel()
        failures.append("unfinished")
    connections.close()
    span = (max(finished) - start) if finished else seconds
    return {
        "offered_per_s": round(rate, 1),
        "sent": count,
        "ok": len(latencies),
        "failures": len(failures),
        "achieved_per_s": round(len(latencies) / max(span, seconds), 1),
        "p50_ms": round(percentile(latencies, 0.5), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "connections": connections.opened,
    }


def saturation(target: HttpTarget, *, unloaded_p99: float, start_rate: float, plan: dict) -> dict:
    """The highest offered rate with 100% success and p99 ≤ 3 x unloaded p99: double (or halve) from
    `start_rate` to bracket it, then bisect; at most plan["max_steps"] steps of plan["step_s"] seconds."""
    limit = 3 * unloaded_p99
    steps: list[dict] = []

    def passes(rate: float) -> bool:
        step = asyncio.run(_open_loop(target, rate, plan["step_s"]))
        step["passed"] = step["failures"] == 0 and step["p99_ms"] <= limit
        steps.append(step)
        time.sleep(0.5)  # let the system drain between steps
        return step["passed"]

    good, bad = 0.0, None
    rate = max(1.0, start_rate)
    while len(steps) < plan["max_steps"]:
        if passes(rate):
            good = rate
            if bad is not None:
                break
            rate *= 2
        else:
            bad = rate
            if good:
                break
            rate /= 2
            if rate < 1.0:
                break
    for _ in range(plan["bisect"]):
        if bad is None or not good or len(steps) >= plan["max_steps"]:
            break
        middle = (good + bad) / 2
        if passes(middle):
            good = middle
        else:
            bad = middle
    return {"max_rate_per_s": round(good, 1), "p99_limit_ms": round(limit, 1), "steps": steps}


# --- processes --------------------------------------------------------------------------------------------


def _cores() -> tuple[set[int], set[int]] | None:
    """(load generator + model server, system under test), or None when there is only one core."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return None
    return {available[0]}, {available[1]}


def _pin_running(pid: int, cores: set[int]) -> None:
    """Pin every thread of a running process (affinity is per thread; new threads inherit their creator's)."""
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(task), cores)
        except ProcessLookupError:
            continue


def _pinned(cores: set[int] | None) -> Callable[[], None] | None:
    if not cores:
        return None
    return lambda: os.sched_setaffinity(0, cores)


def _stop(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


def _wait_http(url: str, accept: set[int], timeout: float) -> bool:
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=2)
            connection.request("GET", parts.path)
            status = connection.getresponse().status
            connection.close()
            if status in accept:
                return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


class CpuMeter:
    """CPU seconds (user + system) of process trees, children included, and of Postgres backends of one
    database, between two readings. A process that exits between readings loses its share; none of the
    measured ones is expected to."""

    def __init__(self, roots: list[int], database: str | None = None) -> None:
        self.roots = roots
        self.database = database

    def _processes(self) -> tuple[list, list]:
        import psutil

        own = []
        for pid in self.roots:
            try:
                root = psutil.Process(pid)
                own += [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
        backends = []
        if self.database:
            for process in psutil.process_iter(["cmdline"]):
                command = " ".join(process.info["cmdline"] or [])
                if command.startswith("postgres:") and f" {self.database} " in command:
                    backends.append(process)
        return own, backends

    def read(self) -> dict[str, dict[int, float]]:
        import psutil

        own, backends = self._processes()
        reading: dict[str, dict[int, float]] = {"own": {}, "db": {}}
        for group, processes in (("own", own), ("db", backends)):
            for process in processes:
                try:
                    times = process.cpu_times()
                    reading[group][process.pid] = times.user + times.system
                except psutil.NoSuchProcess:
                    continue
        return reading

    @staticmethod
    def spent(before: dict, after: dict) -> tuple[float, float]:
        """(own, database) CPU seconds between two readings."""
        return tuple(
            sum(value - before[group].get(pid, 0.0) for pid, value in after[group].items()) for group in ("own", "db")
        )


def _peer_env() -> dict[str, str]:
    """The peer's environment: no database or Redis (a plain proxy), no fetches from the internet."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE")
    }
    env.update(
        LITELLM_MODE="PRODUCTION",
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        LITELLM_LOG="ERROR",
        HTTP_PROXY=DEAD_PROXY,
        HTTPS_PROXY=DEAD_PROXY,
        http_proxy=DEAD_PROXY,
        https_proxy=DEAD_PROXY,
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        **{name: f"{DEAD_PROXY}/disabled" for name in (
            "LITELLM_MODEL_COST_MAP_URL",
            "LITELLM_BLOG_POSTS_URL",
            "LITELLM_ANTHROPIC_BETA_HEADERS_URL",
            "LITELLM_AUTOROUTER_PRESETS_URL",
        )},
    )
    return env


def ensure_peer_venv() -> Path:
    """bench/.peer-venv with the pinned LiteLLM (created on first use; git-ignored)."""
    python = PEER_VENV / "bin" / "python"
    digest = hashlib.sha256(PEER_REQUIREMENTS.read_bytes()).hexdigest()[:12]
    stamp = PEER_VENV / f".installed-{digest}"
    if python.exists() and stamp.exists():
        return python
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", str(PEER_REQUIREMENTS)],
        check=True,
        timeout=1200,
    )
    for old in PEER_VENV.glob(".installed-*"):
        old.unlink()
    stamp.touch()
    return python


def litellm_config(model_url: str) -> dict:
    """Three model groups on the model server: nano, mini, and a nano whose only deployment fails (a fault
    knob on `sim-nano-b`) and falls back to mini: LiteLLM's nearest thing to one escalation hop."""

    def deployment(group: str, model: str) -> dict:
        return {"model_name": group, "litellm_params": {"model": f"openai/{model}", "api_base": model_url,
                                                        "api_key": "bench"}}

    return {
        "model_list": [
            deployment("bench-nano", "sim-nano"),
            deployment("bench-mini", "sim-mini"),
            deployment("bench-fail", "sim-nano-b"),
        ],
        "router_settings": {"num_retries": 0, "disable_cooldowns": True, "fallbacks": [{"bench-fail": ["bench-mini"]}]},
        "litellm_settings": {"telemetry": False, "num_retries": 0, "request_timeout": REQUEST_TIMEOUT_S},
    }


# --- the in-process Router, driven from the peer virtualenv ----------------------------------------------


def router_driver(config_path: str) -> None:
    """Runs in bench/.peer-venv: one JSON command per stdin line, one JSON result per stdout line."""
    import litellm
    from litellm import Router

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    config = json.loads(Path(config_path).read_text())
    settings = config["router_settings"]
    router = Router(
        model_list=config["model_list"],
        num_retries=settings["num_retries"],
        disable_cooldowns=settings["disable_cooldowns"],
        fallbacks=settings["fallbacks"],
        timeout=REQUEST_TIMEOUT_S,
    )
    print(json.dumps({"ready": True, "litellm": getattr(litellm, "__version__", None) or _version("litellm")}),
          flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        model, marker = command["model"], command["marker"]

        def call(number: int, model: str = model, marker: str = marker) -> None:
            content = f"{marker} {PROMPT.format(n=number)}"
            router.completion(model=model, messages=[{"role": "user", "content": content}])

        cpu = time.process_time()
        result = closed_loop(call, requests=command["requests"], concurrency=command["concurrency"],
                             time_limit=command["time_limit"])
        result["cpu_s"] = time.process_time() - cpu
        print(json.dumps(result), flush=True)


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


class RouterProcess:
    def __init__(self, python: Path, config_path: Path, cores: set[int] | None) -> None:
        self.process = subprocess.Popen(
            [str(python), str(Path(__file__).resolve()), "--router-driver", str(config_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=_peer_env(),
            cwd=str(config_path.parent),
            preexec_fn=_pinned(cores),
            start_new_session=True,
        )
        self.version: str | None = None

    def wait_ready(self, timeout: float = 120) -> None:
        ready: list[str] = []
        reader = threading.Thread(target=lambda: ready.append(self.process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not ready or not ready[0].startswith("{"):
            raise RuntimeError("the LiteLLM Router driver did not start")
        self.version = json.loads(ready[0]).get("litellm")

    def run(self, *, model: str, marker: str, requests: int, concurrency: int, time_limit: float) -> dict:
        command = {"model": model, "marker": marker, "requests": requests, "concurrency": concurrency,
                   "time_limit": time_limit}
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        answer: list[str] = []
        reader = threading.Thread(target=lambda: answer.append(self.process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(time_limit + REQUEST_TIMEOUT_S + 10)
        if not answer or not answer[0].startswith("{"):
            raise RuntimeError("the LiteLLM Router driver did not answer")
        return json.loads(answer[0])

    def stop(self) -> None:
        _stop(self.process)


# --- Arbiter -----------------------------------------------------------------------------------------------


def _ledger_stub() -> None:
    """Replace the ledger's two writers with no-ops in this process (bench only; Arbiter has no switch)."""
    from audit import ledger, payloads
    from audit.models import LedgerEvent

    def append(event_type: str, *, actor, subject: dict | None = None, body: dict | None = None) -> LedgerEvent:
        return LedgerEvent(event_type=event_type, actor_kind=actor.kind, actor_id=actor.id)

    def store(content: object, *, kind: str, subject: dict | None = None) -> str:
        return hashlib.sha256(repr(content).encode()).hexdigest()

    ledger.append = append
    payloads.store = store


def noledger_application():
    """gunicorn factory (`bench.peer_bench:noledger_application()`): Arbiter's WSGI app, ledger stubbed."""
    from controlplane.wsgi import application

    _ledger_stub()
    return application


def noledger_worker(argv: list[str]) -> None:
    """A Celery worker whose ledger writes are stubbed (the stub is inherited by the prefork children)."""
    import django

    django.setup()
    _ledger_stub()
    from controlplane.celery import app

    app.worker_main(argv)


class Arbiter:
    """gunicorn + Celery worker on a private queue, both pinned to the system-under-test core."""

    def __init__(self, *, env: dict[str, str], port: int, ledger: bool, cores: set[int] | None) -> None:
        queue = f"arbiter-bench-peer-{uuid.uuid4().hex[:8]}"
        self.queue = queue
        self.env = {**env, "ARBITER_QUEUE": queue}
        self.port = port
        self.ledger = ledger
        app = "controlplane.wsgi:application" if ledger else "bench.peer_bench:noledger_application()"
        worker_args = ["worker", "--pool", "prefork", "--concurrency", str(CELERY_CONCURRENCY), "--queues", queue,
                       "--loglevel", "WARNING", "--hostname", f"bench-peer-{uuid.uuid4().hex[:6]}@%h",
                       "--without-gossip", "--without-mingle", "--without-heartbeat"]
        if ledger:
            worker = [sys.executable, "-m", "celery", "-A", "controlplane", *worker_args]
        else:
            code = f"from bench.peer_bench import noledger_worker; noledger_worker({worker_args!r})"
            worker = [sys.executable, "-c", code]
        common = {"cwd": BASE_DIR, "env": self.env, "start_new_session": True, "preexec_fn": _pinned(cores),
                  "stdout": subprocess.DEVNULL}
        self.web = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", app, "--bind", f"127.0.0.1:{port}", "--workers",
             str(GUNICORN["workers"]), "--threads", str(GUNICORN["threads"]), "--worker-class", "gthread",
             "--log-level", "warning", "--keep-alive", "30"],
            **common,
        )
        self.worker = subprocess.Popen(worker, **common)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def pids(self) -> list[int]:
        return [self.web.pid, self.worker.pid]

    def stop(self) -> None:
        _stop(self.web)
        _stop(self.worker)


def _arbiter_setup(model_url: str) -> tuple[str, dict[str, str], dict[str, str]]:
    """Scratch database, seeded: (database url, {application slug: key}, environment for Arbiter's processes).
    One application per Arbiter variant, so that each one's jobs can be read back apart."""
    from bench.support import scratch_database, server_urls

    _, redis_url = server_urls()
    url = scratch_database(DATABASE)
    os.environ.update(DATABASE_URL=url, REDIS_URL=redis_url, DJANGO_SETTINGS_MODULE="controlplane.settings",
                      ARBITER_QUEUE=f"arbiter-bench-peer-seed-{uuid.uuid4().hex[:6]}")
    import django

    django.setup()
    from django.conf import settings

    from audit.ledger import Actor
    from routing.demo.seed import seed_catalog, seed_policy
    from routing.models import Application
    from routing.services.keys import api_key_create

    settings.ARBITER_MODELSERVER_URL = model_url
    seed_catalog()
    seed_policy()
    keys = {}
    for slug in ("arbiter", "arbiter-noledger"):
        application = Application.objects.create(slug=slug, name=slug)
        _, keys[slug] = api_key_create(application=application, scopes=["jobs:write", "jobs:read"],
                                       actor=Actor.system("bench"))
    from django.db import connections

    connections.close_all()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "REDIS_URL": redis_url,
        "ARBITER_RATE_LIMIT_PER_MINUTE": "0",
        "DJANGO_SETTINGS_MODULE": "controlplane.settings",
        "PYTHONPATH": str(BASE_DIR),
    }
    return url, keys, env


# --- one system, one round ---------------------------------------------------------------------------------


class System:
    """How to send one request to a system, and whose CPU to count for it."""

    def __init__(self, name: str, *, base_url: str | None, model: str, headers: dict[str, str] | None = None,
                 meter: CpuMeter | None = None, router: RouterProcess | None = None,
                 escalation_model: str | None = None, escalation_marker: str = ONE_HOP) -> None:
        self.name = name
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
             time_limit: float = 120) -> dict:
        model = model or self.model
        if self.router is not None:
            return self.router.run(model=model, marker=marker, requests=requests, concurrency=concurrency,
                                   time_limit=time_limit)
        offset = int(time.time() * 1000) % 10**9  # distinct prompts across rounds

        def call(number: int) -> None:
            self.client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": f"{marker} {PROMPT.format(n=offset + number)}"}],
                extra_headers=self.headers,
            )

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
    return result


def measure_round(system: System, plan: dict, samples: dict) -> dict:
    """Concurrency 1 and 16 (with CPU of the system under test over both), and the escalation pair."""
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
    return figures


# --- the whole benchmark -----------------------------------------------------------------------------------


def _median_spread(values: list[float | None]) -> dict:
    present = [v for v in values if v is not None and v == v]
    if not present:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": round(statistics.median(present), 3), "min": round(min(present), 3),
            "max": round(max(present), 3), "n": len(present)}


def _ratio(ours: float | None, theirs: float | None) -> float | None:
    if ours is None or theirs is None or theirs == 0:
        return None
    return round(ours / theirs, 2)


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


def run(quick: bool = False) -> dict:
    """{"setup": {...}, "systems": {name: figures}, "ratios": {peer: {figure: {arbiter, peer, ratio}}},
    "logging_tax": {...}, "saturation": {name: steps}, "plots": [files]}."""
    from bench.support import drop_database, free_port, start_modelserver

    plan = PLAN[quick]
    started = time.perf_counter()
    cores = _cores()
    original_affinity = os.sched_getaffinity(0)
    if cores:
        _pin_running(os.getpid(), cores[0])
    sut_cores = cores[1] if cores else None
    peer_python = ensure_peer_venv()
    processes: list[Any] = []
    arbiters: list[Arbiter] = []
    modelserver, model_url = start_modelserver(0.0)
    if cores:
        _pin_running(modelserver.pid, cores[0])
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
            cwd=workdir, env=_peer_env(), stdout=subprocess.DEVNULL, stderr=open(workdir / "proxy.log", "w"),  # noqa: SIM115
            start_new_session=True, preexec_fn=_pinned(sut_cores),
        )
        processes.append(proxy)
        router = RouterProcess(peer_python, workdir / "litellm.json", cores[0] if cores else None)
        processes.append(router)
        _, keys, env = _arbiter_setup(model_url)
        arbiters = [Arbiter(env=env, port=free_port(), ledger=True, cores=sut_cores),
                    Arbiter(env=env, port=free_port(), ledger=False, cores=sut_cores)]
        for arbiter in arbiters:
            if not _wait_http(arbiter.base_url + "/models", {401}, timeout=60):
                raise RuntimeError("Arbiter's gunicorn did not come up")
        if not _wait_http(f"http://127.0.0.1:{proxy_port}/health/liveliness", {200}, timeout=120):
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
                   meter=CpuMeter(arbiters[1].pids(), DATABASE)),
            System("litellm-proxy", base_url=f"http://127.0.0.1:{proxy_port}/v1", model="bench-nano",
                   meter=CpuMeter([proxy.pid]), escalation_model="bench-fail"),
            System("litellm-router", base_url=None, model="bench-nano", router=router, escalation_model="bench-fail"),
        ]
        checks = _sanity(systems)
        for system in systems:  # warm-up: connections, imports, caches, the first jobs
            system.load(requests=8, concurrency=4)
        samples: dict[str, dict[str, list[float]]] = {}
        rounds = []
        for number in range(plan["rounds"]):
            order = systems[number % len(systems):] + systems[: number % len(systems)]
            rounds.append({system.name: measure_round(system, plan, samples) for system in order})
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
            process.stop() if isinstance(process, RouterProcess) else _stop(process)
        modelserver.terminate()
        try:
            from django.db import connections

            connections.close_all()
            from routing.redis_client import get_redis

            get_redis().delete(*[arbiter.queue for arbiter in arbiters]) if arbiters else None
        except Exception:  # noqa: S110 - clean-up only; the database is dropped next anyway
            pass
        drop_database(DATABASE)
        _pin_running(os.getpid(), original_affinity)


def job_timings(slug: str, windows: list[tuple[datetime, datetime]],
                escalation_windows: list[tuple[datetime, datetime]]) -> dict:
    """What the jobs of the concurrency-1 phases took inside Arbiter, from their own rows: submit → claimed by
    a worker, submit → finished; and the same for the escalated jobs. Set beside the HTTP latency, the
    difference is the time the view spends noticing that the job has finished (it polls the row)."""
    from django.db.models import Q

    from routing.models import Job

    def finished_ms(spans: list[tuple[datetime, datetime]], escalations: int) -> tuple[list[float], list[float]]:
        if not spans:
            return [], []
        during = Q()
        for start, end in spans:
            during |= Q(created_at__gte=start, created_at__lt=end)
        rows = Job.objects.filter(
            during, application__slug=slug, status="completed", escalations=escalations
        ).values_list("created_at", "started_at", "finished_at")
        claimed = [(started - created).total_seconds() * 1000 for created, started, _ in rows if started]
        return claimed, [(done - created).total_seconds() * 1000 for created, _, done in rows if done]

    claimed, finished = finished_ms(windows, 0)
    _, escalated = finished_ms(escalation_windows, 1)
    timings = {
        "jobs": len(finished),
        "submit_to_claimed_p50_ms": round(percentile(claimed, 0.5), 1),
        "submit_to_finished_p50_ms": round(percentile(finished, 0.5), 1),
        "submit_to_finished_p99_ms": round(percentile(finished, 0.99), 1),
    }
    if escalated and finished:
        timings["escalated_jobs"] = len(escalated)
        timings["escalation_penalty_inside_p50_ms"] = round(percentile(escalated, 0.5) - percentile(finished, 0.5), 1)
    return timings


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--router-driver", metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.router_driver:
        router_driver(args.router_driver)
        return
    sys.path.insert(0, str(BASE_DIR))
    result = run(quick=args.quick)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for peer, figures in result["ratios"].items():
        print(f"Arbiter vs {peer}")
        for key, value in figures.items():
            print(f"  {key:<32} {value['arbiter']:>10} {value['peer']:>10}  ratio {value['ratio']}")
    print("logging tax:", json.dumps(result["logging_tax"]))
    print("setup:", json.dumps(result["setup"]))


if __name__ == "__main__":
    main()
