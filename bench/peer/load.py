"""The load: closed-loop calls from threads, an open-loop HTTP/1.1 generator, the saturation search."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

ONE_HOP = "[task:classification] [confidence:nano=0.95]"
ESCALATING = "[task:classification] [confidence:nano=0.3,mini=0.95]"
PROMPT = "Classify support ticket {n}: my card was charged twice for the same order, please help."
REQUEST_TIMEOUT_S = 30.0
OPEN_LOOP_CONNECTIONS = 256
# The model server's generation pace during the streamed phase (its `token_ms` fault knob): every content token
# of the answer takes this long, streamed or not (~50 tokens/s, a small hosted model's pace).
STREAM_TOKEN_MS = 20
STREAM_OPTIONS = {"include_usage": True}


def consume_stream(chunks: Iterable[Any]) -> dict:
    """Read a stream of `chat.completion.chunk` objects (the openai SDK's, or LiteLLM's) to its end.
    `first_byte_s`: `time.perf_counter()` when the first chunk carrying a role or non-empty content was
    yielded (what "time to first byte" means in this bench: the SDK's first parsed chunk an application can
    act on, after the response headers and that chunk's SSE event arrived); `first_content_s`: the first
    non-empty content; `last_byte_s`: the stream's end ([DONE] read); `chunks`: how many were yielded;
    `usage`: whether a usage chunk came."""
    first_byte = first_content = None
    count, usage = 0, False
    for chunk in chunks:
        count += 1
        usage = usage or getattr(chunk, "usage", None) is not None
        choices = getattr(chunk, "choices", None) or []
        delta = getattr(choices[0], "delta", None) if choices else None
        content = getattr(delta, "content", None) if delta is not None else None
        if first_byte is None and (content or getattr(delta, "role", None)):
            first_byte = time.perf_counter()
        if first_content is None and content:
            first_content = time.perf_counter()
    return {"first_byte_s": first_byte, "first_content_s": first_content, "last_byte_s": time.perf_counter(),
            "chunks": count, "usage": usage}


def closed_loop(call: Callable[[int], dict | None], *, requests: int, concurrency: int, time_limit: float) -> dict:
    """`requests` calls from `concurrency` threads, each starting when its previous call returned.
    Stops early at `time_limit` seconds. Latencies (ms) of the successful calls; errors counted.
    A call that returns `consume_stream`'s dict was a stream: its time to first byte and to first content
    are kept too (ms from the call's start), with its chunk count; a stream without a first chunk is an error."""
    latencies: list[float] = []
    streamed: dict[str, list] = {"ttfb_ms": [], "first_content_ms": [], "chunks": [], "usage": []}
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
                outcome = call(number)
                if outcome is not None and outcome["first_byte_s"] is None:
                    raise ValueError(f"a stream of {outcome['chunks']} chunk(s) without a role or content")
            except Exception as error:  # any failure is a failed request, counted
                with lock:
                    errors.append(f"{type(error).__name__}: {str(error)[:160]}")
                continue
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                latencies.append(elapsed)
                if outcome is not None:
                    streamed["ttfb_ms"].append((outcome["first_byte_s"] - started) * 1000)
                    content = outcome["first_content_s"]
                    streamed["first_content_ms"].append((content - started) * 1000 if content else None)
                    streamed["chunks"].append(outcome["chunks"])
                    streamed["usage"].append(outcome["usage"])

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
        **({"stream": streamed} if streamed["chunks"] else {}),
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
    `start_rate` to bracket it, then bisect; at most plan["max_steps"] rates of plan["step_s"] seconds.

    A rate that answered everything but missed the p99 limit is run once more and judged by the second
    run: one slow stretch of a few seconds (a checkpoint, a full garbage collection) otherwise decides the
    whole figure (2026-12-07: a 33/s step failed at p99 205 ms against 168 with every request answered,
    while 66/s held closed-loop in the same run). The same rule for every system; both runs are in `steps`."""
    limit = 3 * unloaded_p99
    steps: list[dict] = []
    rates: list[float] = []

    def run_step(rate: float) -> dict:
        step = asyncio.run(_open_loop(target, rate, plan["step_s"]))
        step["passed"] = step["failures"] == 0 and step["p99_ms"] <= limit
        steps.append(step)
        time.sleep(0.5)  # let the system drain between steps
        return step

    def passes(rate: float) -> bool:
        rates.append(rate)
        step = run_step(rate)
        if not step["passed"] and step["failures"] == 0:
            step = run_step(rate)
            step["repeated"] = True
        return step["passed"]

    good, bad = 0.0, None
    rate = max(1.0, start_rate)
    while len(rates) < plan["max_steps"]:
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
        if bad is None or not good or len(rates) >= plan["max_steps"]:
            break
        middle = (good + bad) / 2
        if passes(middle):
            good = middle
        else:
            bad = middle
    return {"max_rate_per_s": round(good, 1), "p99_limit_ms": round(limit, 1), "steps": steps}
