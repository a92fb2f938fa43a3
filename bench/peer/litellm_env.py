"""LiteLLM, the peer: its own virtualenv, an environment that cannot reach the internet, the proxy's
configuration, and the in-process Router's driver (run in the peer virtualenv:
`python -m bench.peer.litellm_env CONFIG`)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.peer.load import PROMPT, REQUEST_TIMEOUT_S, STREAM_OPTIONS, closed_loop, consume_stream
from bench.peer.processes import pinned, stop_process

BASE_DIR = Path(__file__).resolve().parents[2]
PEER_VENV = BASE_DIR / "bench" / ".peer-venv"
PEER_REQUIREMENTS = BASE_DIR / "bench" / "peer-requirements.txt"
DEAD_PROXY = "http://127.0.0.1:9"  # nothing listens there: an unexpected outbound call fails at once


def peer_env() -> dict[str, str]:
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
        model, marker, stream = command["model"], command["marker"], command.get("stream", False)

        def call(number: int, model: str = model, marker: str = marker, stream: bool = stream) -> dict | None:
            messages = [{"role": "user", "content": f"{marker} {PROMPT.format(n=number)}"}]
            if stream:
                return consume_stream(router.completion(model=model, messages=messages, stream=True,
                                                        stream_options=STREAM_OPTIONS))
            router.completion(model=model, messages=messages)
            return None

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
            [str(python), "-m", "bench.peer.litellm_env", str(config_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**peer_env(), "PYTHONPATH": str(BASE_DIR)},
            cwd=str(config_path.parent),
            preexec_fn=pinned(cores),
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

    def run(self, *, model: str, marker: str, requests: int, concurrency: int, time_limit: float,
            stream: bool = False) -> dict:
        command = {"model": model, "marker": marker, "requests": requests, "concurrency": concurrency,
                   "time_limit": time_limit, "stream": stream}
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
        stop_process(self.process)


if __name__ == "__main__":
    router_driver(sys.argv[1])
