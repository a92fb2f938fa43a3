"""The HTTP layer: a threaded HTTP/1.1 keep-alive server and the request handler.

Speed matters because benchmarks subtract this server's time from Arbiter's: each response is written
with a single ``sendall`` (status line, headers and body together) on a TCP_NODELAY socket, which avoids
the 40 ms Nagle/delayed-ACK stall that split header and body writes cause on keep-alive connections.
"""

from __future__ import annotations

import contextlib
import json
import math
import secrets
import select
import socket
import socketserver
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import urlsplit

from modelserver.completions import Reply, completion_body
from modelserver.faults import WILDCARD, FaultBoard, FaultKnobError
from modelserver.protocol import ApiError, ChatRequest, model_not_found, parse_chat_request
from modelserver.stats import CLIENT_CLOSED, RequestStats
from modelserver.streaming import completion_chunks, event, generated_pieces, http_chunk

HANG_LIMIT_S = 300.0
MAX_BODY_BYTES = 16 * 1024 * 1024
MODELS_CREATED = 1_700_000_000


class Backend(Protocol):
    mode: str

    def model_ids(self) -> list[str]: ...

    def serves(self, model: str) -> bool: ...

    def reply(self, request: ChatRequest) -> Reply: ...


@dataclass
class Application:
    """What every handler thread shares."""

    backend: Backend
    faults: FaultBoard
    stats: RequestStats
    fingerprint: str
    stopping: threading.Event
    log_requests: bool = False


class _ClientGone(Exception):
    """The client hung up while its request was held; there is no one left to answer."""


# A None payload: the handler has written the response itself (a stream).
Response = tuple[int, dict[str, Any] | None, dict[str, str]]


def _json_body(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        raise ApiError(
            400,
            "We could not parse the JSON body of your request: it is not valid JSON.",
            code="invalid_json",
        ) from None


class ModelRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "arbiter-modelserver/0.1"
    disable_nagle_algorithm = True
    server: ModelHTTPServer

    @property
    def app(self) -> Application:
        return self.server.app

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    def _dispatch(self) -> None:
        path = urlsplit(self.path).path
        try:
            raw = self._read_body()
            status, payload, headers = self._route(path)(raw)
        except ApiError as exc:
            status, payload, headers = exc.status, exc.body(), exc.headers
        except _ClientGone:
            self.close_connection = True
            return
        except Exception:
            traceback.print_exc(file=sys.stderr)
            error = ApiError(500, "The model server failed on this request.", error_type="server_error")
            status, payload, headers = 500, error.body(), {}
        if payload is not None:
            self._write(status, payload, headers)

    def _route(self, path: str) -> Callable[[bytes], Response]:
        routes: dict[str, dict[str, Callable[[bytes], Response]]] = {
            "/v1/chat/completions": {"POST": self._chat_completions},
            "/v1/models": {"GET": self._models},
            "/healthz": {"GET": self._healthz},
            "/_admin/faults": {"GET": self._faults_get, "POST": self._faults_post},
            "/_admin/stats": {"GET": self._stats_get, "POST": self._stats_post},
        }
        methods = routes.get(path)
        if methods is None and path.startswith("/v1/models/"):
            methods = {"GET": lambda raw: self._model(path.removeprefix("/v1/models/"))}
        if methods is None:
            raise ApiError(404, f"Unknown path {path}.", code="unknown_url")
        if self.command not in methods:
            allowed = ", ".join(methods)
            raise ApiError(
                405,
                f"Method {self.command} is not allowed on {path}; use {allowed}.",
                code="method_not_allowed",
                headers={"Allow": allowed},
            )
        return methods[self.command]

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            # Without a length the request cannot be delimited; drop the connection rather than desync it.
            self.close_connection = True
            raise ApiError(411, "Send the body with a Content-Length header.", code="length_required")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            raise ApiError(400, "Content-Length is not a number.", code="invalid_header") from None
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            raise ApiError(413, f"The body exceeds {MAX_BODY_BYTES} bytes.", code="body_too_large")
        return self.rfile.read(length) if length > 0 else b""

    def _write(
        self, status: int, payload: dict[str, Any], headers: dict[str, str], *, body: bool = True
    ) -> None:
        content = json.dumps(payload).encode()
        lines = [
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
            f"Server: {self.server_version}",
            "Content-Type: application/json",
            f"Content-Length: {len(content)}",
            f"x-request-id: req_{secrets.token_hex(16)}",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head + content if body else head)
        if self.app.log_requests:
            self.log_request(status)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors raised by the HTTP parser itself (bad request line, oversized headers) in OpenAI's shape."""
        self.close_connection = True
        error = ApiError(code, message or HTTPStatus(code).phrase, code=None)
        self._write(code, error.body(), {}, body=self.command != "HEAD")

    def log_message(self, format: str, *args: Any) -> None:
        if self.app.log_requests:
            super().log_message(format, *args)

    def _chat_completions(self, raw: bytes) -> Response:
        model: str | None = None
        status = 500
        try:
            body = _json_body(raw)
            if isinstance(body, dict) and isinstance(body.get("model"), str):
                model = body["model"]
            request = parse_chat_request(body)
            if not self.app.backend.serves(request.model):
                raise model_not_found(request.model)
            self._apply_faults(request.model)
            reply = self.app.backend.reply(request)
            if reply.latency_s > 0:
                self.app.stopping.wait(reply.latency_s)
            body = completion_body(request, reply, fingerprint=self.app.fingerprint)
            token_s = self.app.faults.get(request.model).token_ms / 1000
            if request.stream:
                self._stream(body, include_usage=request.include_usage, token_s=token_s)
                status = 200
                return 200, None, {}
            if token_s:
                self.app.stopping.wait(token_s * generated_pieces(body))
            status = 200
            return 200, body, {}
        except ApiError as exc:
            status = exc.status
            raise
        except _ClientGone:
            status = CLIENT_CLOSED
            raise
        finally:
            self.app.stats.record(model, status)

    def _stream(self, body: dict[str, Any], *, include_usage: bool, token_s: float) -> None:
        """``body`` as server-sent events over chunked transfer encoding (the connection stays open), each
        generated chunk after ``token_s``. A client that leaves mid-stream ends it (counted as 499)."""
        head = "\r\n".join(
            [
                "HTTP/1.1 200 OK",
                f"Server: {self.server_version}",
                "Content-Type: text/event-stream; charset=utf-8",
                "Cache-Control: no-cache",
                "Transfer-Encoding: chunked",
                f"x-request-id: req_{secrets.token_hex(16)}",
            ]
        ).encode("latin-1") + b"\r\n\r\n"
        pending = head
        try:
            for generated, chunk in completion_chunks(body, include_usage=include_usage):
                if generated and token_s:
                    if pending:
                        self.wfile.write(pending)
                        pending = b""
                    self.app.stopping.wait(token_s)
                pending += http_chunk(event(chunk))
            self.wfile.write(pending + http_chunk(event(None)) + http_chunk(b""))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            raise _ClientGone from None
        if self.app.log_requests:
            self.log_request(200)

    def _apply_faults(self, model: str) -> None:
        faults = self.app.faults.get(model)
        if faults.hang:
            self._hold(model)
            faults = self.app.faults.get(model)
        if faults.slow_ms:
            self.app.stopping.wait(faults.slow_ms / 1000)
        if faults.rate_limit_rate and self.app.faults.draw() < faults.rate_limit_rate:
            wait = faults.retry_after
            raise ApiError(
                429,
                f"Rate limit reached for {model} (simulated fault). Please try again in {wait:g}s.",
                error_type="rate_limit_exceeded",
                code="rate_limit_exceeded",
                headers={"Retry-After": str(math.ceil(wait)), "retry-after-ms": str(round(wait * 1000))},
            )
        if faults.error_rate and self.app.faults.draw() < faults.error_rate:
            raise ApiError(
                500,
                "The server had an error while processing your request (simulated fault).",
                error_type="server_error",
                code="server_error",
            )

    def _hold(self, model: str) -> None:
        """Hold the request while the hang knob is on: until the client leaves, the knob clears, or 300 s."""
        deadline = time.monotonic() + HANG_LIMIT_S
        while self.app.faults.get(model).hang:
            if self.app.stopping.is_set():
                raise _ClientGone
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ApiError(
                    504,
                    "The request was held for 300 s by a simulated hang.",
                    error_type="server_error",
                    code="timeout",
                )
            readable, _, _ = select.select([self.connection], [], [], min(0.1, remaining))
            if readable:
                try:
                    peeked = self.connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
                except BlockingIOError:
                    continue
                except OSError:
                    peeked = b""
                if not peeked:
                    raise _ClientGone
                # A pipelined request is waiting; keep holding without spinning on it.
                time.sleep(0.1)

    def _models(self, raw: bytes) -> Response:
        data = [self._model_object(model) for model in self.app.backend.model_ids()]
        return 200, {"object": "list", "data": data}, {}

    def _model(self, model: str) -> Response:
        if not self.app.backend.serves(model):
            raise model_not_found(model)
        return 200, self._model_object(model), {}

    @staticmethod
    def _model_object(model: str) -> dict[str, Any]:
        return {"id": model, "object": "model", "created": MODELS_CREATED, "owned_by": "arbiter-modelserver"}

    def _healthz(self, raw: bytes) -> Response:
        backend = self.app.backend
        return 200, {"status": "ok", "mode": backend.mode, "models": backend.model_ids()}, {}

    def _faults_get(self, raw: bytes) -> Response:
        return 200, {"faults": self.app.faults.snapshot()}, {}

    def _faults_post(self, raw: bytes) -> Response:
        body = _json_body(raw)
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            raise ApiError(400, "Send {'model': <id or '*'>, <knob>: <value>, ...}.", param="model")
        knobs = {key: value for key, value in body.items() if key not in ("model", "reset")}
        model = body["model"]
        if model != WILDCARD and not self.app.backend.serves(model):
            raise model_not_found(model)
        if body.get("reset"):
            self.app.faults.reset(model)
        try:
            self.app.faults.set(model, **knobs)
        except FaultKnobError as exc:
            raise ApiError(400, f"Invalid fault: {exc}.", param=exc.knob) from None
        return self._faults_get(raw)

    def _stats_get(self, raw: bytes) -> Response:
        return 200, self.app.stats.snapshot(), {}

    def _stats_post(self, raw: bytes) -> Response:
        if _json_body(raw) != {"reset": True}:
            raise ApiError(400, "Send {'reset': true} to clear the counts.", param="reset")
        self.app.stats.reset()
        return self._stats_get(raw)


class ModelHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], app: Application) -> None:
        self.app = app
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, ModelRequestHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, a DNS lookup that can stall on an offline box.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Wake handler threads parked on idle keep-alive connections so stopping leaves none behind."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)
