"""Evaluation helpers: recorded-outcomes files with known ground truth, past jobs as the pipeline leaves
them, the policies the replays are run under, and the direct computations the reports are checked against
(written independently of evaluation)."""

from __future__ import annotations

import io
import json
import math
import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.utils import timezone

from audit import ledger, payloads
from audit.ledger import Actor
from modelserver.generate import generate_items
from routing.models import ApprovalRequest, Job, JobStatus, Step, StepOutcome
from tests.support.factories import ApprovalDecisionFactory, ApprovalRequestFactory, JobFactory, StepFactory
from tests.support.governed import POLICY

BASE_DIR = Path(__file__).resolve().parents[2]
GSM8K = BASE_DIR / "evaluation" / "data" / "gsm8k-outcomes.jsonl"
MIXTRAL, GPT4 = "mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"
GSM8K_TIERS = f"mini={MIXTRAL},flagship={GPT4}"
SIM_TIERS = "nano=sim-nano,mini=sim-mini,flagship=sim-flagship"
DEFAULT_POLICY = BASE_DIR / "routing" / "demo" / "default-policy.yaml"
_TOKEN = re.compile(r"\s*\S+|\s+")

# A policy whose cascade a test can walk by hand: no complexity or size conditions.
HAND_POLICY = """
rules:
  - id: small-tasks
    when: {task_type: [classification, extraction, ranking]}
    cascade: [nano, mini, flagship]
    escalate_below: {nano: 0.8, mini: 0.7}
    confidence: logprob
  - id: rest
    cascade: [mini, flagship]
    escalate_below: {mini: 0.75}
    confidence: logprob
approvals:
  - id: unsure
    when: {final_confidence: {lt: 0.5}}
"""
# HAND_POLICY with a lower nano threshold and a stricter mini.
DRAFT_POLICY = HAND_POLICY.replace("{nano: 0.8, mini: 0.7}", "{nano: 0.5, mini: 0.7}").replace(
    "{mini: 0.75}", "{mini: 0.9}"
)
# The governed POLICY with a cap on output tokens (what a full replay's worst case is computed from), and
# the same with a lower nano threshold.
CHEAP_FIRST = "escalate_below: {nano: 0.80, mini: 0.70}\n    confidence: logprob\n"
LIMITED = POLICY.replace(CHEAP_FIRST, CHEAP_FIRST + "    limits: {max_output_tokens: 64}\n", 1)
LOWER = LIMITED.replace("{nano: 0.80, mini: 0.70}", "{nano: 0.70, mini: 0.70}", 1)


def demo_prices() -> dict[str, tuple[float, float]]:
    """The prices the brief names: the demo catalog's nano and mini, the flagship from settings."""
    return {
        "nano": (0.20, 1.25),
        "mini": (0.75, 4.50),
        "flagship": (settings.ARBITER_FLAGSHIP_PRICE_IN, settings.ARBITER_FLAGSHIP_PRICE_OUT),
    }


def synthetic(items: int, seed: int, tiers: tuple[str, ...] = ("nano", "mini", "flagship")) -> list[dict]:
    return list(generate_items(items=items, seed=seed, tiers=tiers))


def write_jsonl(path: Path, items: list[dict]) -> Path:
    path.write_text("".join(json.dumps(item) + "\n" for item in items))
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def direct_answers(items: list[dict], tiers: dict[str, str]) -> dict[str, dict[str, tuple[bool, float]]]:
    """item id -> tier -> (correct, cost): the recorded cost, else the demo price x tokens (recorded, else
    estimated as the model server does: a token per 4 prompt characters, word-sized completion tokens)."""
    prices = demo_prices()
    table = {}
    for item in items:
        row = {}
        for tier, model in tiers.items():
            response = item["responses"][model]
            prompt = response.get("prompt_tokens") or math.ceil(sum(len(m["content"]) for m in item["messages"]) / 4)
            completion = response.get("completion_tokens")
            if completion is None:
                completion = len(_TOKEN.findall(response["content"]))
            cost = response.get("cost_usd")
            if cost is None:
                cost = (prompt * prices[tier][0] + completion * prices[tier][1]) / 1e6
            row[tier] = (response["correct"], cost)
        table[item["id"]] = row
    return table


def run_json(command: str, *args: str) -> dict[str, Any]:
    out = io.StringIO()
    call_command(command, *args, "--json", stdout=out)
    return json.loads(out.getvalue())


def content(index: int, nano: float) -> str:
    """A classification request the model server answers with `nano` confidence at nano."""
    return f"[task:classification] [confidence:nano={nano},mini=0.9,flagship=0.9] ticket {index}: route it"


def make_job(application, version, task_type: str, steps: list[tuple], *, held: list[str] | None = None) -> Job:
    """steps: (tier, confidence, method, accepted, answer, cost)."""
    final = next(step for step in steps if step[3])
    job = Job.objects.create(
        application=application,
        task_type=task_type,
        request={"messages": [{"role": "user", "content": f"a {task_type} request"}]},
        policy_version=version,
        status=JobStatus.AWAITING_APPROVAL if held else JobStatus.COMPLETED,
        final_tier=final[0],
        final_confidence=final[1],
        input_tokens=5,
        complexity=0.1,
        route={"plan": {"steps": [{"tier": s[0], "confidence_method": "logprob"} for s in steps]}},
        escalations=sum(1 for step in steps if not step[3]),
    )
    for index, (tier, confidence, method, accepted, answer, cost) in enumerate(steps):
        Step.objects.create(
            job=job,
            attempt=1,
            index=index,
            tier=tier,
            confidence=confidence,
            confidence_method=method,
            outcome=StepOutcome.ACCEPTED if accepted else StepOutcome.ESCALATED,
            output={"content": f"answer: {answer}", "tool_calls": []},
            cost_usd=Decimal(str(cost)),
        )
    if held:
        ApprovalRequest.objects.create(job=job, rule_ids=held, expires_at=timezone.now() + timedelta(hours=1))
    return job


def past_job(
    application,
    version,
    content: str,
    steps: list[tuple],
    *,
    task_type: str = "classification",
    rule: str = "cheap-first",
    cascade: tuple[str, ...] = ("nano", "mini", "flagship"),
    thresholds: dict[str, float] | None = None,
):
    """A finished job as the pipeline leaves it, its prompt kept as a payload (so it can be erased).
    steps: (tier, confidence, accepted, answer, cost) of the rule's `cascade`; `thresholds` the ones in
    force, per tier."""
    thresholds = thresholds or {}
    final = next(step for step in steps if step[2])
    job = JobFactory(
        application=application,
        policy_version=version,
        task_type=task_type,
        request={"messages": [{"role": "user", "content": content}]},
        final_tier=final[0],
        final_confidence=final[1],
        route={
            "plan": {
                "rule_id": rule,
                "steps": [{"tier": tier, "confidence_method": "logprob"} for tier in cascade],
            }
        },
        escalations=sum(1 for step in steps if not step[2]),
    )
    for index, (tier, confidence, accepted, answer, cost) in enumerate(steps):
        StepFactory(
            job=job,
            index=index,
            tier=tier,
            confidence=confidence,
            outcome=StepOutcome.ACCEPTED if accepted else StepOutcome.ESCALATED,
            output={"content": f"answer: {answer}", "tool_calls": []},
            cost_usd=Decimal(str(cost)),
            threshold=thresholds.get(tier),
            prompt_tokens=10,
            completion_tokens=5,
        )
    payloads.store(job.request, kind="prompt", subject={"job": job.pk, "application": application.pk})
    return job


def shadow_compared(job, step, *, agree: bool, shadow_tier: str = "mini", cost: str = "0.0004") -> None:
    """The ledger event a shadow comparison writes (routing.execute.shadow)."""
    ledger.append(
        "shadow.compared",
        actor=Actor.system("shadow"),
        subject={"job": job.pk, "application": job.application_id, "step": step.pk},
        body={
            "tier": step.tier,
            "confidence": step.confidence,
            "threshold": step.threshold,
            "shadow_tier": shadow_tier,
            "shadow_deployment": f"{shadow_tier}-x",
            "agreement": 1.0 if agree else 0.0,
            "shadow_cost_usd": cost,
        },
    )


def reviewed(job, status: str, *, kind: str | None = None, picked=None) -> None:
    """An approval request on the job's accepted answer, resolved as `status` by one decision."""
    request = ApprovalRequestFactory(job=job, status=status)
    if kind is not None:
        ApprovalDecisionFactory(request=request, kind=kind, override={"step": picked.pk} if picked else None)
