"""Requests per second of the local model server at zero latency, driven by the real openai SDK.

    python bench/modelserver_throughput.py [--requests 3000] [--concurrency 1,16] [--logprobs]

The server runs as its own process (as in ``make run``) so client and server do not share a GIL.
The SDK spends ~2 ms of client CPU per call, which caps one client process near 500 requests/s
whatever the server does; the ``raw`` client (keep-alive ``http.client``) shows the server's own ceiling.
"""

from __future__ import annotations

import argparse
import http.client
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import openai

ROOT = Path(__file__).resolve().parent.parent


def start_server() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "modelserver", "--port", "0", "--latency-scale", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    ready = process.stdout.readline()
    url = next(word for word in ready.split() if word.startswith("http://"))
    return process, url


def _messages(number: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"[task:classification] Classify ticket {number}."}]


def sdk_call(url: str, *, logprobs: bool) -> Callable[[int], None]:
    client = openai.OpenAI(base_url=url, api_key="bench", max_retries=0)

    def call(number: int) -> None:
        client.chat.completions.create(model="sim-nano", messages=_messages(number), logprobs=logprobs)

    return call


def raw_call(url: str, *, logprobs: bool) -> Callable[[int], None]:
    parts = urlsplit(url)
    per_thread = threading.local()

    def call(number: int) -> None:
        if not hasattr(per_thread, "connection"):
            per_thread.connection = http.client.HTTPConnection(parts.hostname, parts.port)
        body = json.dumps({"model": "sim-nano", "messages": _messages(number), "logprobs": logprobs})
        per_thread.connection.request(
            "POST", f"{parts.path}/chat/completions", body, {"Content-Type": "application/json"}
        )
        response = per_thread.connection.getresponse()
        response.read()
        assert response.status == 200, response.status

    return call


def measure(call: Callable[[int], None], *, requests: int, concurrency: int) -> float:
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(call, range(min(200, requests))))  # warm the connection pool
        started = time.perf_counter()
        list(pool.map(call, range(requests)))
        return requests / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--logprobs", action="store_true")
    parser.add_argument("--client", choices=("sdk", "raw", "both"), default="both")
    args = parser.parse_args()
    clients = {"sdk": sdk_call, "raw": raw_call}
    chosen = list(clients) if args.client == "both" else [args.client]
    process, url = start_server()
    try:
        for name in chosen:
            for concurrency in (int(value) for value in args.concurrency.split(",")):
                call = clients[name](url, logprobs=args.logprobs)
                rate = measure(call, requests=args.requests, concurrency=concurrency)
                print(f"{name:>3} client, concurrency {concurrency:>3}: {rate:,.0f} requests/s")
    finally:
        process.terminate()
        process.wait(timeout=10)


if __name__ == "__main__":
    main()
