"""The in-process API: start a model server in a background thread, steer its faults, stop it."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from modelserver.faults import FaultBoard
from modelserver.http import Application, Backend, ModelHTTPServer
from modelserver.recorded import RecordedBackend, load_outcomes
from modelserver.stats import RequestStats
from modelserver.synthetic import SyntheticBackend

MODES = ("synthetic", "recorded")


def build_backend(
    *,
    mode: str,
    seed: int,
    latency_scale: float | None,
    outcomes: str | Path | Iterable[Mapping[str, Any]] | None,
) -> Backend:
    if mode == "synthetic":
        return SyntheticBackend(seed=seed, latency_scale=1.0 if latency_scale is None else latency_scale)
    if mode == "recorded":
        if outcomes is None:
            raise ValueError("recorded mode needs an outcomes file")
        # Recorded latencies are real ones; replaying them is opt-in, evaluation wants speed.
        return RecordedBackend(load_outcomes(outcomes), latency_scale=latency_scale or 0.0)
    raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")


class ModelServer:
    """A local OpenAI-compatible server on loopback.

    >>> with ModelServer(latency_scale=0) as server:
    ...     client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)

    ``port=0`` (the default) binds a free port. Construction binds the socket, so a port in use raises
    ``OSError`` here; ``start()`` begins serving.
    """

    def __init__(
        self,
        *,
        mode: str = "synthetic",
        seed: int = 0,
        latency_scale: float | None = None,
        outcomes: str | Path | Iterable[Mapping[str, Any]] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: Mapping[str, Mapping[str, Any]] | None = None,
        log_requests: bool = False,
    ) -> None:
        backend = build_backend(mode=mode, seed=seed, latency_scale=latency_scale, outcomes=outcomes)
        board = FaultBoard(seed=seed)
        for model, knobs in (faults or {}).items():
            board.set(model, **knobs)
        fingerprint = "fp_" + hashlib.sha256(f"{mode}:{seed}".encode()).hexdigest()[:10]
        self.app = Application(
            backend=backend,
            faults=board,
            stats=RequestStats(),
            fingerprint=fingerprint,
            stopping=threading.Event(),
            log_requests=log_requests,
        )
        self._httpd = ModelHTTPServer((host, port), self.app)
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What the OpenAI SDK wants as ``base_url``."""
        return f"{self.url}/v1"

    @property
    def models(self) -> list[str]:
        return self.app.backend.model_ids()

    def start(self) -> ModelServer:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": 0.1},
                name="modelserver",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        self.app.stopping.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.close_connections()
        self._httpd.server_close()

    def set_faults(self, model: str, **knobs: Any) -> None:
        """Change knobs: ``error_rate``, ``rate_limit_rate``, ``retry_after``, ``slow_ms``, ``hang``, ``token_ms``."""
        self.app.faults.set(model, **knobs)

    def reset_faults(self, model: str = "*") -> None:
        self.app.faults.reset(model)

    def faults(self) -> dict[str, dict[str, Any]]:
        return self.app.faults.snapshot()

    def stats(self) -> dict[str, Any]:
        return self.app.stats.snapshot()

    def reset_stats(self) -> None:
        self.app.stats.reset()

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
