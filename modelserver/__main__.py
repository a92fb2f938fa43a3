"""Command line: ``python -m modelserver [serve options]`` or ``python -m modelserver generate ...``.

Start-up problems (port in use, bad outcomes file, bad fault) print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import errno
import json
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from modelserver.faults import parse_fault_spec
from modelserver.generate import generate_items
from modelserver.recorded import OutcomesFileError
from modelserver.server import MODES, ModelServer


def _fault(spec: str) -> tuple[str, dict[str, Any]]:
    try:
        return parse_fault_spec(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _fail(message: str) -> int:
    print(f"modelserver: {message}", file=sys.stderr)
    return 2


def serve(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m modelserver", description="Local OpenAI-compatible server."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100, help="0 picks a free port (default 8100)")
    parser.add_argument("--mode", choices=MODES, default="synthetic")
    parser.add_argument("--outcomes", help="recorded-outcomes JSON Lines file (recorded mode)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--latency-scale",
        type=float,
        default=None,
        help="multiplies simulated latency (default 1, recorded 0)",
    )
    parser.add_argument(
        "--fault",
        type=_fault,
        action="append",
        default=[],
        metavar="MODEL:KNOB=VALUE,...",
        help="e.g. sim-nano:error_rate=0.5,retry_after=2 (repeatable; MODEL may be *)",
    )
    parser.add_argument("--log-requests", action="store_true", help="write an access log to stderr")
    args = parser.parse_args(argv)
    if args.mode == "recorded" and not args.outcomes:
        parser.error("--mode recorded needs --outcomes FILE")
    try:
        server = ModelServer(
            mode=args.mode,
            seed=args.seed,
            latency_scale=args.latency_scale,
            outcomes=args.outcomes,
            host=args.host,
            port=args.port,
            log_requests=args.log_requests,
        )
    except OutcomesFileError as exc:
        return _fail(str(exc))
    except OSError as exc:
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
        return _fail(f"cannot listen on {args.host}:{args.port}: {reason}")
    for model, knobs in args.fault:
        if model != "*" and not server.app.backend.serves(model):
            server.stop()
            return _fail(f"--fault names model {model!r}, which this server does not serve")
        server.set_faults(model, **knobs)

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server.start()
    print(
        f"modelserver ready at {server.base_url} (mode {args.mode}; models {', '.join(server.models)})",
        flush=True,
    )
    while not stop.wait(0.5):
        pass
    server.stop()
    return 0


def generate(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m modelserver generate",
        description="Write a synthetic recorded-outcomes file to stdout.",
    )
    parser.add_argument("--items", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--tiers", type=_csv, default=None, help="comma-separated, default nano,mini,flagship"
    )
    parser.add_argument("--task-types", type=_csv, default=None, help="comma-separated, default all")
    args = parser.parse_args(argv)
    options: dict[str, Any] = {"items": args.items, "seed": args.seed}
    if args.tiers:
        options["tiers"] = args.tiers
    if args.task_types:
        options["task_types"] = args.task_types
    try:
        for item in generate_items(**options):
            sys.stdout.write(json.dumps(item) + "\n")
    except ValueError as exc:
        return _fail(str(exc))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["generate"]:
        return generate(argv[1:])
    return serve(argv)


if __name__ == "__main__":
    sys.exit(main())
