"""The fault scenarios: each runs under client load on a live stack, injects one fault, lets it heal, and checks
what the issue promises — no accepted job lost, nothing done or paid twice, recovery within one lease, clients
answered only 2xx/409 or 503 with Retry-After, totals that count every attempt, a ledger that verifies."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from tests.faults.load import CONFIDENT, ESCALATING, Load
from tests.faults.observe import SETTLED, Sampler, account, connect, wait_settled
from tests.faults.stack import Stack, rabbitmq_queue_types

HEALTHY_WITHIN_S = 30  # issue 16: any single process killed, /healthz green again within 30 s
PROVIDER_FAULT_S = 20  # how long a provider fault lasts


@dataclass
class Fault:
    """When the fault began and ended, and how its recovery is measured."""

    started: float
    ended: float
    kills: list[float] = field(default_factory=list)  # moments of SIGKILL (process scenarios)
    recovery: str = "reclaim"  # reclaim | outage | latency | backlog
    notes: list[str] = field(default_factory=list)


@dataclass
class Result:
    scenario: str
    broker: str
    jobs: int = 0
    lost: int = 0
    duplicates: int = 0
    repaid: int = 0
    recovery_s: float | None = None
    recovery_kind: str = ""
    lease_s: float = 0.0
    client_statuses: dict[str, int] = field(default_factory=dict)
    job_statuses: dict[str, int] = field(default_factory=dict)
    checks: list[tuple[str, bool, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(ok for _, ok, _ in self.checks)

    def failures(self) -> list[str]:
        return [f"{name}: {detail}" for name, ok, detail in self.checks if not ok]

    def check(self, name: str, ok: bool, detail: str = "") -> None:
        self.checks.append((name, bool(ok), detail))


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    inject: Callable[[Stack, Sampler], Fault]
    job_prompt: str = ESCALATING
    job_task_type: str = "classification"
    chat_prompt: str = CONFIDENT
    quick: bool = False  # part of `make test`'s short run
    prepare: Callable[[Stack], tuple[str | None, list[str]]] | None = None  # -> the policy to use, notes


# The faults --------------------------------------------------------------------------------------


def _kill(stack: Stack, kind: str) -> list[int]:
    pids = stack.pids(kind)
    assert pids, f"no {kind} process under the launcher: {sorted(stack.processes())}"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    return pids


def _worker_children(stack: Stack, sampler: Sampler) -> Fault:
    kills, notes = [], []
    for _ in range(3):
        # Wait for the worker to be busy and its pool complete again (prefork replaces a killed child).
        _wait(lambda: len(stack.pids("worker-child")) >= stack.config.worker_concurrency, 60, "a full worker pool")
        # Killed between two paid steps of a job's cascade, so that resuming (not paying again) is tried.
        with connect(sampler.database_url) as connection:
            paid = _wait(
                lambda: sampler.paid_and_running(connection),
                60,
                "a job in flight with a paid step behind it",
                interval=0.02,
            )
        pids = _kill(stack, "worker-child")
        kills.append(time.time())
        notes.append(f"SIGKILL worker children {pids} (job {paid[0][:8]} had paid for a step)")
        time.sleep(8)
    return Fault(started=kills[0], ended=kills[-1], kills=kills, notes=notes)


def _worker_main(stack: Stack, sampler: Sampler) -> Fault:
    _wait(lambda: sampler.running_at(time.time()), 60, "a job in flight")
    pids = _kill(stack, "worker-main")
    at = time.time()
    return Fault(started=at, ended=at, kills=[at], notes=[f"SIGKILL worker main {pids}"])


def _service_crash(kind: str, signum: signal.Signals, how: str) -> Callable[[Stack, Sampler], Fault]:
    """An embedded service down the way a crash takes it; the suite does nothing to bring it back: the
    launcher's supervision must (the fault ends when a new one runs, its recovery is timed from there)."""

    def inject(stack: Stack, sampler: Sampler) -> Fault:
        started = time.time()
        back, after_s = stack.crash_service(kind, signum, back_within_s=HEALTHY_WITHIN_S)
        return Fault(
            started=started,
            ended=back,
            recovery="outage",
            notes=[f"{how}; the supervision started it after {after_s} s"],
        )

    return inject


def _provider(models: tuple[str, ...] = ("sim-nano",), **knobs) -> Callable[[Stack, Sampler], Fault]:
    """One deployment's model (the tier has another to fall back on) or a whole tier's, faulty for a while."""

    def inject(stack: Stack, sampler: Sampler) -> Fault:
        for model in models:
            stack.faults(model, **knobs)
        started = time.time()
        time.sleep(PROVIDER_FAULT_S)
        stack.clear_faults()
        settings = ", ".join(f"{name}={value}" for name, value in knobs.items())
        return Fault(
            started=started,
            ended=time.time(),
            recovery="latency" if len(models) == 1 else "backlog",
            notes=[f"{', '.join(models)}: {settings} for {PROVIDER_FAULT_S} s"],
        )

    return inject


def _tier_down_policy(stack: Stack) -> tuple[str | None, list[str]]:
    """The policy choice for a tier that is down: wait for the breakers' cooldown and try again (issue 16). A
    build whose policy language has no `tier_down` runs the scenario on the demo's rules and says so."""
    waits = stack.add_policy("chaos-tier-down-wait", "tier_down: {action: wait, wait_up_to: 2m}\n")
    if waits.returncode == 0:
        return "chaos-tier-down-wait", ["policy tier_down: wait (up to 2m)"]
    refused = (waits.stderr.strip().splitlines() or ["?"])[-1][:200]
    plain = stack.add_policy("chaos-tier-down-plain")
    assert plain.returncode == 0, plain.stderr[-500:]
    return "chaos-tier-down-plain", [f"this build refuses a tier_down policy ({refused}): the demo's rules"]


SCENARIOS = [
    Scenario("worker-children", "SIGKILL of the worker's pool children (3 times)", _worker_children),
    Scenario("provider-hang", "a provider that hangs (sim-nano)", _provider(hang=True)),
    Scenario(
        "provider-429",
        "429s with Retry-After 3600 s (sim-nano)",
        _provider(rate_limit_rate=1.0, retry_after=3600),
        quick=True,
    ),
    Scenario(
        "tier-down",
        "a whole tier down (every flagship deployment answers 500)",
        _provider(("sim-flagship", "sim-flagship-eu"), error_rate=1.0),
        job_prompt="[task:reasoning] [confidence:flagship=0.95] plan step {n}",
        job_task_type="reasoning",
        chat_prompt="[task:reasoning] [confidence:flagship=0.95] plan step {n}",
        prepare=_tier_down_policy,
    ),
    Scenario(
        "redis-restart",
        "Redis killed (SIGKILL), restarted by the supervision",
        _service_crash("redis", signal.SIGKILL, "SIGKILL redis-server"),
    ),
    Scenario(
        "postgres-restart",
        "PostgreSQL shut down (immediate), restarted by the supervision",
        _service_crash("postgres", signal.SIGQUIT, "SIGQUIT to the postmaster (immediate shutdown)"),
    ),
    # Last: without supervision it takes the whole stack down (the runner starts it again for the next broker).
    Scenario("worker-main", "SIGKILL of the worker's main process", _worker_main),
]
BY_NAME = {scenario.name: scenario for scenario in SCENARIOS}


# Running one -------------------------------------------------------------------------------------


def _wait(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _database_now(database_url: str) -> datetime:
    with connect(database_url) as connection:
        return connection.execute("SELECT now()").fetchone()[0]  # type: ignore[index]


def _database_url(stack: Stack) -> str:
    return stack.python("-m", "controlplane.embedded", "urls").stdout.split('"DATABASE_URL": "')[1].split('"')[0]


def run(stack: Stack, scenario: Scenario, *, warmup_jobs: int = 3, after_s: float = 10) -> Result:
    """One scenario on `stack` (started again first if a previous scenario left it down)."""
    began = time.monotonic()
    result = Result(scenario.name, stack.config.broker)
    if not stack.alive():
        result.notes.append("the stack was down after the previous scenario: started again")
        stack.stop()
        stack.start()
    _wait(stack.healthy, 120, "/healthz green before the scenario")
    stack.clear_faults()
    policy = None
    if scenario.prepare is not None:
        policy, notes = scenario.prepare(stack)
        result.notes += notes
    database_url = _database_url(stack)
    result.lease_s = lease_s = stack.lease_s
    since = _database_now(database_url)
    sampler = Sampler(database_url, since, stack.healthy).start()
    load = Load(
        stack.base_url,
        stack.api_key,
        job_prompt=scenario.job_prompt,
        job_task_type=scenario.job_task_type,
        chat_prompt=scenario.chat_prompt,
        policy=policy,
    ).start()
    fault = None
    try:
        _wait(
            lambda: sum(1 for s in list(sampler.timeline.values()) if s and s[-1].status == "completed") >= warmup_jobs,
            120,
            f"{warmup_jobs} jobs completed before the fault",
        )
        fault = scenario.inject(stack, sampler)
        result.notes += fault.notes
        time.sleep(after_s)
    except AssertionError as error:
        result.check("the fault was injected", False, str(error))
    finally:
        survived = stack.alive()
        if not survived:
            # What a person would do: start it again, so the jobs it had accepted can still be counted.
            result.notes.append("the launcher exited: the suite started it again")
            log = stack.log_tail(15)
            stack.stop()
            stack.start()
        load.stop(grace_s=lease_s * 3)
    # Every job the clients were told about, and every one they were not (created, answer lost), settles.
    with connect(database_url) as connection:
        created = {
            row[0] for row in connection.execute("SELECT id::text FROM routing_job WHERE created_at >= %s", (since,))
        }
    accepted = set(load.accepted.values()) | set(load.chat_jobs)
    unsettled = wait_settled(database_url, accepted | created, timeout=lease_s * 3 + 60)
    sampler.stop()
    books = account(database_url, since=since, accepted=accepted, unsettled=unsettled)

    result.jobs, result.lost = books.jobs, len(books.lost)
    result.duplicates, result.repaid = len(books.duplicates), len(books.repaid)
    result.client_statuses = dict(sorted(load.statuses().items()))
    result.job_statuses = dict(sorted(books.statuses.items()))
    result.check("the stack took load", books.jobs >= warmup_jobs, f"{books.jobs} jobs")
    result.check("0 lost jobs (every accepted job settles)", not books.lost, ", ".join(books.lost[:5]))
    result.check(
        "every job completed (a fault costs seconds, never a job)",
        set(books.statuses) <= {"completed"},
        str(dict(books.statuses)),
    )
    result.check("0 duplicate jobs, results or ledger events", not books.duplicates, "; ".join(books.duplicates[:5]))
    result.check("0 paid steps paid again by a later attempt", not books.repaid, "; ".join(books.repaid[:5]))
    result.check("job totals include every attempt", not books.totals_wrong, "; ".join(books.totals_wrong[:5]))
    bad = load.unacceptable()
    result.check(
        "clients saw only 2xx, 409, or 503 with Retry-After",
        not bad,
        ", ".join(sorted({f"{a.client} {a.label}" for a in bad})),
    )
    result.check("every client request was answered in the end", not load.unresolved, f"{len(load.unresolved)} not")
    if fault is not None:
        result.recovery_s, result.recovery_kind = _recovery(sampler, fault)
        if fault.recovery == "latency":
            # A slow provider loses no lease (the heartbeat renews it while a call is in flight): what it may
            # cost is one step's time budget (a hang: one timeout, then the tier's next deployment), and no job
            # may be taken over by a second attempt because of it.
            budget_s = stack.step_budget_s
            result.check(
                "the slowest job within one step's time budget",
                result.recovery_s is not None and result.recovery_s <= budget_s,
                f"{_seconds(result.recovery_s)} ({result.recovery_kind}), step budget {budget_s:g} s",
            )
            reclaimed = sampler.reclaimed()
            result.check("no lease lost to a slow provider (no job re-claimed)", not reclaimed, ", ".join(reclaimed))
        else:
            result.check(
                "recovery within one lease",
                result.recovery_s is not None and result.recovery_s <= lease_s,
                f"{_seconds(result.recovery_s)} ({result.recovery_kind}), lease {lease_s:g} s",
            )
        green = sampler.healthy_after(fault.ended)
        result.check(
            f"/healthz green within {HEALTHY_WITHIN_S} s of the fault's end",
            green is not None and green - fault.ended <= HEALTHY_WITHIN_S,
            "never" if green is None else f"after {green - fault.ended:.1f} s",
        )
    if stack.config.broker == "rabbitmq":
        types = rabbitmq_queue_types()
        classic = sorted(name for name, kind in types.items() if kind != "quorum")
        result.check(
            "every RabbitMQ queue is a quorum queue (the recovery queue too)",
            bool(types) and not classic and any(name.endswith(".recovery") for name in types),
            f"not quorum: {classic}" if classic else f"queues: {sorted(types)[:8]}",
        )
    result.check("the stack stayed up (no person needed)", survived, "" if survived else "launcher exited:\n" + log)
    if stack.alive():
        verify = _ledger_verify(stack)
        result.check("ledger_verify passes", verify.returncode == 0, (verify.stderr or verify.stdout).strip()[-300:])
    result.seconds = time.monotonic() - began
    return result


def _recovery(sampler: Sampler, fault: Fault) -> tuple[float | None, str]:
    """How long the fault cost, the way that fits it (the report says which)."""
    if fault.recovery == "latency":
        worst = _worst_latency(sampler, fault)
        return worst, "slowest job submitted during the fault, submit to settle"
    if fault.recovery == "backlog":
        waits = [
            settled - fault.ended
            for job_id in _unsettled_at(sampler, fault.ended)
            if (settled := _settled_at(sampler, job_id)) is not None
        ]
        stuck = len(waits) < len(_unsettled_at(sampler, fault.ended))
        return (None if stuck else max(waits, default=0.0)), "fault's end to the last job then waiting settled"
    moments = fault.kills or [fault.started]
    spans = []
    for moment in moments:
        # A kill's cost runs from the kill; an outage's from the service's return (nothing can move before).
        counted_from = moment if fault.kills else fault.ended
        for job_id, attempt in sampler.running_at(moment).items():
            progressed = sampler.progressed_after(job_id, attempt, moment)
            if progressed is None:
                return None, "a job in flight at the fault never re-claimed or settled"
            spans.append(max(0.0, progressed - counted_from))
    green = sampler.healthy_after(fault.ended)
    spans.append(float("inf") if green is None else green - fault.ended)
    if fault.recovery == "outage":
        first = sampler.first_completion_after(fault.ended)
        spans.append(float("inf") if first is None else first - fault.ended)
        kind = "service back to: /healthz green, a job completed, jobs in flight re-claimed or settled"
    else:
        kind = "SIGKILL to: jobs in flight re-claimed or settled, /healthz green"
    worst = max(spans)
    return (None if worst == float("inf") else worst), kind


def _unsettled_at(sampler: Sampler, moment: float) -> list[str]:
    found = []
    for job_id, samples in list(sampler.timeline.items()):
        before = [sample for sample in samples if sample.at <= moment]
        if before and before[-1].status not in SETTLED:
            found.append(job_id)
    return found


def _settled_at(sampler: Sampler, job_id: str) -> float | None:
    return next((s.at for s in sampler.timeline.get(job_id, []) if s.status in SETTLED), None)


def _worst_latency(sampler: Sampler, fault: Fault) -> float | None:
    worst = 0.0
    for _, samples in list(sampler.timeline.items()):
        first = samples[0].at
        if not fault.started <= first <= fault.ended:
            continue
        settled = next((s.at for s in samples if s.status in SETTLED), None)
        if settled is None:
            return None
        worst = max(worst, settled - first)
    return worst


def _ledger_verify(stack: Stack):
    # The sealer runs every second (beat): give it a moment to seal the scenario's last events.
    time.sleep(3)
    return stack.python("manage.py", "ledger_verify", timeout=300, check=False)


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"
