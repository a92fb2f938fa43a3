"""Where a request's milliseconds go (issue #15): Arbiter as the peer bench runs it (gunicorn gthread 2x8 and
a Celery worker, pinned to the system-under-test core, full ledger), sampled by py-spy while closed-loop load
runs at concurrency 1 and 16 against `POST /v1/chat/completions` (inline job) and `POST /api/v1/jobs`; then
each request's SQL and Redis round trips, counted in this process through Django's test client.

    .venv/bin/python -m bench.peer.profile [--py-spy /tmp/prof-venv/bin/py-spy] [--seconds 8] [--out DIR]

py-spy is not one of Arbiter's dependencies: install it anywhere (`python -m venv /tmp/prof-venv &&
/tmp/prof-venv/bin/pip install py-spy`). It samples wall clock (`--idle`) without stopping the process
(`--nonblocking`); only samples inside a request (a gunicorn `handle_request` frame) are counted. Each is
charged to the innermost stage on its stack (STAGES), and separately to what it was doing at its leaf:
waiting on Postgres, on Redis, on the model server, or running Python."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

from bench.peer.arbiter import DATABASE, Arbiter, arbiter_setup
from bench.peer.load import ONE_HOP, PROMPT, closed_loop, percentile
from bench.peer.processes import CpuMeter, pin_running, split_cores, wait_http

# (stage, a substring of a frame "function (file)"): the innermost match on a stack names the stage.
STAGES = [
    ("gunicorn + Django (request in, response out)", "handle_request (gunicorn/workers/gthread.py)"),
    ("DRF dispatch (request wrapping, negotiation)", "dispatch (rest_framework/views.py)"),
    ("key authentication", "authenticate (routing/api/authentication.py)"),
    ("rate limit / sync-call slot", "routing/api/ratelimit.py"),
    ("body parsing", "_parse (rest_framework/request.py)"),
    ("input serializer", "is_valid (rest_framework/serializers.py)"),
    ("job submit (policy, catalog, job row, events)", "job_submit (routing/services/jobs.py)"),
    ("job run (claim, route, call, score, govern)", "job_run (routing/execute/run.py)"),
    ("model server call (HTTP)", "routing/execute/providers.py"),
    ("ledger append", "append (audit/ledger.py)"),
    ("payload store", "store (audit/payloads.py)"),
    ("ledger sealing", "audit/sealer.py"),
    ("answer read (job_wait)", "job_wait (routing/api/openai.py)"),
    ("answer read (job detail)", "job_get_for_application (routing/selectors.py)"),
    ("answer render (chat.completion / job_detail)", "chat_completion (routing/api/openai.py)"),
    ("answer render (chat.completion / job_detail)", "job_detail (routing/api/serializers/jobs.py)"),
    ("response rendering (JSON)", "finalize_response (rest_framework/views.py)"),
    ("response rendering (JSON)", "rendered_content (rest_framework/response.py)"),
]
# What the leaf frame was doing, by a substring of it (first match wins); anything else is Python running.
WAITS = [
    ("in a libpq call or waiting on Postgres", ("psycopg/", "wait_c")),
    ("waiting on Redis", ("redis/connection.py", "redis/_parsers", "kombu/")),
    ("waiting on the model server", ("http/client.py", "httpcore/", "httpx/", "ssl.py", "socket.py")),
    ("idle in a lock or queue", ("threading.py", "queue.py")),
]
REQUEST_FRAME = "handle_request (gunicorn/workers/gthread.py)"
CHAT_BODY = {"model": "auto", "messages": [{"role": "user", "content": ""}]}
JOBS_BODY = {"task_type": "classification", "messages": [{"role": "user", "content": ""}]}


def _body(path: str, number: int) -> bytes:
    body = json.loads(json.dumps(CHAT_BODY if path.endswith("chat/completions") else JOBS_BODY))
    body["messages"][0]["content"] = f"{ONE_HOP} {PROMPT.format(n=number)}"
    return json.dumps(body).encode()


def http_load(port: int, path: str, key: str, *, requests: int, concurrency: int, offset: int) -> dict:
    """Closed loop over raw HTTP/1.1 keep-alive connections, one per thread (cheap for the generator)."""
    import http.client

    local = threading.local()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json",
               "x-arbiter-task-type": "classification"}

    def call(number: int) -> None:
        if getattr(local, "connection", None) is None:
            local.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            local.connection.request("POST", path, body=_body(path, offset + number), headers=headers)
            answer = local.connection.getresponse()
            answer.read()
        except Exception:
            local.connection.close()
            local.connection = None
            raise
        if answer.status not in (200, 201):
            raise RuntimeError(f"HTTP {answer.status}")

    return closed_loop(call, requests=requests, concurrency=concurrency, time_limit=120)


def classify(raw: str) -> dict:
    """{samples, stages: Counter, waits: Counter, functions: Counter (inclusive, own code and libraries)}."""
    stages: Counter = Counter()
    waits: Counter = Counter()
    functions: Counter = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if REQUEST_FRAME not in stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        stage = "other"
        for frame in frames:
            for name, marker in STAGES:
                if marker in frame:
                    stage = name
        stages[stage] += count
        leaf = frames[-1]
        waits[next((name for name, markers in WAITS if any(m in leaf for m in markers)), "running Python")] += count
        seen = set()
        for frame in frames[frames.index(next(f for f in frames if REQUEST_FRAME in f)) + 1:]:
            name = frame.split(" (")[0] + " (" + _short(frame) + ")"
            if name not in seen:
                seen.add(name)
                functions[name] += count
    return {"samples": total, "stages": stages, "waits": waits, "functions": functions}


def _short(frame: str) -> str:
    location = frame.partition(" (")[2].rstrip(")")
    for marker in ("site-packages/", "/lib/python3.11/"):
        if marker in location:
            return location.split(marker)[-1]
    return location.split("/bench/", 1)[-1] if "/wt/" in location else location


def record(py_spy: str, pid: int, out: Path, run) -> tuple[str, dict]:
    """py-spy over `pid` and its children while `run()` runs: (raw collapsed stacks, run's result).
    Without `py_spy`, just the run (for timings without the sampler)."""
    if not py_spy:
        return "", run()
    spy = subprocess.Popen(
        [py_spy, "record", "--pid", str(pid), "--subprocesses", "--idle", "--nonblocking", "--rate", "250",
         "--format", "raw", "--nolineno", "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    time.sleep(1.5)  # py-spy attaches
    try:
        result = run()
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=30)
    return out.read_text() if out.exists() else "", result


def cprofiled(key: str, requests: int, out: Path, *, cpu: bool = False) -> dict:
    """Each path's requests under cProfile, in this process through Django's test client (the WSGI handler
    and everything under it; no socket, no gunicorn): {path: (ms per request, top functions by cumulative
    time)}. Without py-spy this is the profile; its timings carry cProfile's own overhead."""
    import cProfile
    import io
    import pstats

    from django.test import Client

    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}", HTTP_X_ARBITER_TASK_TYPE="classification")
    figures = {}
    for path in ("/v1/chat/completions", "/api/v1/jobs"):
        bodies = [_body(path, 2 * 10**9 + number) for number in range(requests)]
        client.post(path, _body(path, 3 * 10**9), content_type="application/json")  # warm-up
        profiler = cProfile.Profile(time.process_time) if cpu else cProfile.Profile()
        started = time.perf_counter()
        profiler.enable()
        for body in bodies:
            answer = client.post(path, body, content_type="application/json")
            assert answer.status_code in (200, 201), answer.content[:300]
        profiler.disable()
        wall_ms = (time.perf_counter() - started) * 1000 / requests
        name = path.strip("/").replace("/", "_")
        profiler.dump_stats(out / f"{name}.prof")
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(40)
        (out / f"{name}.txt").write_text(text.getvalue())
        stats = pstats.Stats(profiler).stats
        rows = sorted(
            [(cumulative, total, calls, _where(where)) for where, (_, calls, total, cumulative, _) in stats.items()],
            reverse=True,
        )
        figures[path] = {"ms_per_request": wall_ms, "top": [
            {"function": where, "cumulative_ms": cumulative * 1000 / requests, "own_ms": total * 1000 / requests,
             "calls": calls / requests}
            for cumulative, total, calls, where in rows[:40]
        ]}
    return figures


def _where(function: tuple[str, int, str]) -> str:
    filename, _, name = function
    for marker in ("site-packages/", "/lib/python3.11/", "/wt/perf/"):
        if marker in filename:
            filename = filename.split(marker)[-1]
    return f"{name} ({filename})"


def round_trips(arbiter: Arbiter, key: str, repeats: int = 5) -> dict:
    """SQL statements and Redis round trips of one request, in this process (Django's test client) against
    the same database, model server and queue; the median over `repeats` requests after one warm-up."""
    import redis.connection
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from controlplane.celery import app

    app.conf.task_default_queue = arbiter.queue  # its worker takes the queued jobs
    redis_calls = Counter()
    original = redis.connection.AbstractConnection.send_packed_command

    def counted(self, command, check_health=True):
        redis_calls["n"] += 1
        packed = b"".join(command) if isinstance(command, list) else command
        names = [part for part in packed.split(b"\r\n")[2::2] if part.isalpha() and part.isupper()]
        redis_calls["+".join(name.decode() for name in names[:3]) or "?"] += 1
        return original(self, command, check_health)

    redis.connection.AbstractConnection.send_packed_command = counted
    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}", HTTP_X_ARBITER_TASK_TYPE="classification")
    figures = {}
    try:
        for path in ("/v1/chat/completions", "/api/v1/jobs"):
            sql, sends, shapes, commands = [], [], Counter(), Counter()
            for number in range(repeats + 1):
                redis_calls.clear()
                with CaptureQueriesContext(connection) as captured:
                    answer = client.post(path, _body(path, 10**9 + number), content_type="application/json")
                assert answer.status_code in (200, 201), answer.content[:300]
                if number:
                    sql.append(len(captured.captured_queries))
                    sends.append(redis_calls["n"])
                    if number == 1:
                        for query in captured.captured_queries:
                            shapes[_statement_shape(query["sql"])] += 1
                        statements = [" ".join(query["sql"].split())[:160] for query in captured.captured_queries]
                        commands.update({name: n for name, n in redis_calls.items() if name != "n"})
            figures[path] = {"sql_median": percentile(sql, 0.5), "redis_median": percentile(sends, 0.5),
                             "sql_by_kind": dict(shapes.most_common()), "redis_by_command": dict(commands),
                             "statements": statements}
    finally:
        redis.connection.AbstractConnection.send_packed_command = original
    return figures


def _statement_shape(sql: str) -> str:
    words = sql.split()
    verb = words[0].upper() if words else "?"
    if verb in ("SAVEPOINT", "RELEASE", "ROLLBACK", "BEGIN", "COMMIT"):
        return verb
    table = next((words[i + 1] for i, w in enumerate(words[:-1]) if w.upper() in ("FROM", "INTO", "UPDATE")), "?")
    return f"{verb} {table.strip(chr(34))}"


def report(phases: dict, trips: dict, load: tuple[float, float, float]) -> str:
    lines = [f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", ""]
    for name, phase in phases.items():
        profile, result = phase["profile"], phase["result"]
        total = profile["samples"] or 1
        lines.append(f"### {name}: {result['ok']} ok / {result['errors']} errors, p50 {result['p50_ms']:.1f} ms, "
                     f"p99 {result['p99_ms']:.1f} ms, {result['per_s']:.1f}/s, gunicorn+worker CPU "
                     f"{phase['cpu_ms']:.2f} ms/request, Postgres CPU {phase['db_cpu_ms']:.2f} ms/request "
                     f"({profile['samples']} samples)")
        lines += ["", "| stage (innermost on the stack) | share of request wall time |", "| --- | --- |"]
        lines += [f"| {stage} | {count / total:.1%} |" for stage, count in profile["stages"].most_common()]
        lines += ["", "| what the leaf frame was doing | share |", "| --- | --- |"]
        lines += [f"| {wait} | {count / total:.1%} |" for wait, count in profile["waits"].most_common()]
        lines += ["", "| function (inclusive) | share |", "| --- | --- |"]
        lines += [f"| `{fn}` | {count / total:.1%} |" for fn, count in profile["functions"].most_common(25)]
        lines.append("")
    for path, figures in trips.items():
        lines.append(f"### round trips per request, {path}: {figures['sql_median']} SQL statements, "
                     f"{figures['redis_median']} Redis round trips")
        lines.append("")
        lines.append(", ".join(f"{kind} x{n}" for kind, n in figures["sql_by_kind"].items()))
        lines.append("")
        lines.append("Redis: " + ", ".join(f"{name} x{n}" for name, n in figures["redis_by_command"].items()))
        lines.append("")
        lines += [f"{number}. `{statement}`" for number, statement in enumerate(figures["statements"], 1)]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    from bench.support import free_port, start_modelserver

    parser = argparse.ArgumentParser()
    parser.add_argument("--py-spy", default="/tmp/prof-venv/bin/py-spy", help="empty: no profile, timings only")
    parser.add_argument("--requests", type=int, default=300, help="per phase at concurrency 16 (a fifth at 1)")
    parser.add_argument("--out", default="/tmp/arbiter-profile")
    parser.add_argument("--cprofile", type=int, default=0,
                        help="also run this many requests per path under cProfile in this process (no py-spy needed)")
    parser.add_argument("--cpu", action="store_true", help="--cprofile counts CPU time (process_time), not wall")
    parser.add_argument("--only", default="", help="comma-separated phase names to run (chat-c1, chat-c16, ...)")
    options = parser.parse_args()
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    cores = split_cores()
    if cores:
        pin_running(os.getpid(), cores[0])
    modelserver, model_url = start_modelserver(0.0)
    if cores:
        pin_running(modelserver.pid, cores[0])
    arbiter = None
    try:
        _, keys, env = arbiter_setup(model_url)
        arbiter = Arbiter(env=env, port=free_port(), ledger=True, cores=cores[1] if cores else None)
        if not wait_http(arbiter.base_url + "/models", {401}, timeout=60):
            raise RuntimeError("Arbiter's gunicorn did not come up")
        key = keys["arbiter"]
        meter = CpuMeter(arbiter.pids(), DATABASE)
        for path in ("/v1/chat/completions", "/api/v1/jobs"):  # warm-up
            http_load(arbiter.port, path, key, requests=16, concurrency=4, offset=0)
        phases = {}
        offset = int(time.time() * 1000) % 10**8
        for label, path in (("chat", "/v1/chat/completions"), ("jobs", "/api/v1/jobs")):
            for concurrency in (1, 16):
                name = f"{label}-c{concurrency}"
                if options.only and name not in options.only.split(","):
                    continue
                requests = options.requests if concurrency > 1 else options.requests // 5
                offset += 10_000
                before = meter.read()

                def run(path=path, concurrency=concurrency, requests=requests, start=offset):
                    return http_load(arbiter.port, path, key, requests=requests, concurrency=concurrency,
                                     offset=start)

                raw, result = record(options.py_spy, arbiter.web.pid, out / f"{name}.txt", run)
                own, database = CpuMeter.spent(before, meter.read())
                latencies = result.pop("latencies_ms")
                result.update(p50_ms=percentile(latencies, 0.5), p99_ms=percentile(latencies, 0.99))
                done = max(result["ok"], 1)
                phases[f"{name} ({path})"] = {"profile": classify(raw), "result": result,
                                              "cpu_ms": own * 1000 / done, "db_cpu_ms": database * 1000 / done}
                time.sleep(2 if label == "jobs" else 0)  # let the worker drain the queued jobs
        trips = round_trips(arbiter, key) if options.py_spy or options.cprofile else {}
        text = report(phases, trips, load)
        if options.cprofile:
            for path, figures in cprofiled(key, options.cprofile, out, cpu=options.cpu).items():
                text += f"\n### cProfile, {path}: {figures['ms_per_request']:.1f} ms per request (under cProfile)\n\n"
                text += "| function | cumulative ms / request | own ms / request | calls / request |\n"
                text += "| --- | --- | --- | --- |\n"
                text += "".join(f"| `{row['function']}` | {row['cumulative_ms']:.2f} | {row['own_ms']:.2f} | "
                                f"{row['calls']:g} |\n" for row in figures["top"])
        (out / "report.md").write_text(text)
        print(text)
    finally:
        if arbiter:
            arbiter.stop()
        modelserver.terminate()
        modelserver.wait(timeout=10)


if __name__ == "__main__":
    main()
