"""Client load through the real API while a fault happens: jobs by `POST /api/v1/jobs` (each with an
Idempotency-Key, retried with the same key after a 503 or a dropped connection, as a careful client does)
and synchronous answers by `/v1/chat/completions` through the openai SDK.

Every answer a client gets is recorded, so a scenario can assert what clients saw during the outage:
2xx, 409, or 503 with Retry-After, and never HTML or a 500.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import httpx2 as httpx
import openai

# The two kinds of job the scenarios send. Both settle without a person (confident answers, no personal data,
# no tool): anything other than `completed` at the end is a job the fault cost.
ESCALATING = "[task:classification] [confidence:nano=0.2,mini=0.95] which queue? ticket {n}"
CONFIDENT = "[task:classification] [confidence:nano=0.95] which queue? ticket {n}"
OK_STATUSES = {200, 201, 409}
MAX_WAIT_S = 5.0  # a client honours Retry-After, up to this long, before asking again


@dataclass
class Answer:
    at: float  # time.time()
    client: str  # "jobs" or "chat"
    status: int | str  # an HTTP status, or "connection" / "timeout" when no answer came
    retry_after: str | None = None
    content_type: str = ""

    @property
    def acceptable(self) -> bool:
        """What a client may see during a fault: 2xx, 409, or 503 with a Retry-After; JSON, never HTML."""
        if self.status in OK_STATUSES:
            return "html" not in self.content_type
        if self.status == 503:
            return bool(self.retry_after) and "html" not in self.content_type
        return False

    @property
    def label(self) -> str:
        if self.status == 503:
            return "503+Retry-After" if self.retry_after else "503 without Retry-After"
        if isinstance(self.status, int) and "html" in self.content_type:
            return f"{self.status} (HTML)"
        return str(self.status)


@dataclass
class Load:
    """Job submitters (open loop, `jobs_per_s` in all) and `chat_clients` synchronous callers (closed loop)."""

    base_url: str
    api_key: str
    jobs_per_s: float = 1.5
    job_prompt: str = ESCALATING
    job_task_type: str = "classification"
    chat_clients: int = 1
    chat_prompt: str = CONFIDENT
    policy: str | None = None  # None: the application's default policy
    answers: list[Answer] = field(default_factory=list)
    accepted: dict[str, str] = field(default_factory=dict)  # Idempotency-Key -> job id
    unresolved: set[str] = field(default_factory=set)  # keys never answered 2xx before the clients gave up
    chat_jobs: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _counter: int = 0

    def start(self) -> Load:
        submitters = 2
        for index in range(submitters):
            self._spawn(self._submit_loop, self.jobs_per_s / submitters, f"jobs-{index}")
        for index in range(self.chat_clients):
            self._spawn(self._chat_loop, f"chat-{index}")
        return self

    def stop(self, grace_s: float = 120) -> None:
        """No new requests; those under way keep retrying their key for up to `grace_s` seconds."""
        self._stop.set()
        self._give_up_at = time.monotonic() + grace_s
        for thread in self._threads:
            thread.join(timeout=grace_s + 90)

    def statuses(self) -> Counter[str]:
        with self._lock:
            return Counter(answer.label for answer in self.answers)

    def unacceptable(self) -> list[Answer]:
        with self._lock:
            return [answer for answer in self.answers if not answer.acceptable]

    # Internals ---------------------------------------------------------------------------------

    _give_up_at: float = float("inf")

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _next(self) -> int:
        with self._lock:
            self._counter += 1
            return self._counter

    def _record(self, answer: Answer) -> None:
        with self._lock:
            self.answers.append(answer)

    def _wait(self, answer: Answer) -> None:
        try:
            seconds = float(answer.retry_after or 1)
        except ValueError:
            seconds = 1.0
        time.sleep(min(max(seconds, 0.2), MAX_WAIT_S))

    def _submit_loop(self, rate: float, name: str) -> None:
        interval = 1.0 / rate
        headers = {"Authorization": f"Bearer {self.api_key}"}
        with httpx.Client(base_url=self.base_url, headers=headers, timeout=30) as http:
            next_at = time.monotonic()
            while not self._stop.is_set():
                self._submit_one(http, self._next())
                next_at += interval
                time.sleep(max(0.0, next_at - time.monotonic()))

    def _submit_one(self, http: httpx.Client, n: int) -> None:
        key = f"chaos-{uuid.uuid4()}"
        body = {
            "task_type": self.job_task_type,
            "messages": [{"role": "user", "content": self.job_prompt.format(n=n)}],
            **({"policy": self.policy} if self.policy else {}),
        }
        while time.monotonic() < self._give_up_at:
            try:
                response = http.post("/api/v1/jobs", json=body, headers={"Idempotency-Key": key})
            except httpx.TimeoutException:
                answer = Answer(time.time(), "jobs", "timeout")
            except httpx.TransportError:
                answer = Answer(time.time(), "jobs", "connection")
            else:
                answer = Answer(
                    time.time(),
                    "jobs",
                    response.status_code,
                    response.headers.get("Retry-After"),
                    response.headers.get("Content-Type", ""),
                )
                if response.status_code in (200, 201):
                    with self._lock:
                        self.accepted[key] = response.json()["id"]
                    self._record(answer)
                    return
            self._record(answer)
            self._wait(answer)
        with self._lock:
            self.unresolved.add(key)

    def _chat_loop(self, name: str) -> None:
        # max_retries=0: every answer is seen and recorded here; this loop is the client's retry.
        client = openai.OpenAI(base_url=f"{self.base_url}/v1", api_key=self.api_key, max_retries=0, timeout=120)
        while not self._stop.is_set():
            self._chat_one(client, self._next())

    def _chat_one(self, client: openai.OpenAI, n: int) -> None:
        key = f"chaos-chat-{uuid.uuid4()}"
        messages = [{"role": "user", "content": self.chat_prompt.format(n=n)}]
        while time.monotonic() < self._give_up_at:
            try:
                raw = client.chat.completions.with_raw_response.create(
                    model=f"arbiter/{self.policy}" if self.policy else "auto",
                    messages=messages,  # type: ignore[arg-type]
                    metadata={"task_type": self.job_task_type},
                    extra_headers={"Idempotency-Key": key},
                )
            except openai.APIStatusError as error:
                answer = Answer(
                    time.time(),
                    "chat",
                    error.status_code,
                    error.response.headers.get("Retry-After"),
                    error.response.headers.get("Content-Type", ""),
                )
                job_id = error.response.headers.get("x-arbiter-job-id")
            except openai.APITimeoutError:
                answer, job_id = Answer(time.time(), "chat", "timeout"), None
            except openai.APIConnectionError:
                answer, job_id = Answer(time.time(), "chat", "connection"), None
            else:
                answer = Answer(time.time(), "chat", raw.status_code, None, raw.headers.get("Content-Type", ""))
                job_id = raw.headers.get("x-arbiter-job-id")
                raw.parse()
            self._record(answer)
            if job_id:
                with self._lock:
                    self.chat_jobs.append(job_id)
            if answer.status not in (503, "connection", "timeout"):
                return  # answered, or refused for good (a refusal other than 503 is recorded as unacceptable)
            self._wait(answer)
        with self._lock:
            self.unresolved.add(key)
