"""Governance of an accepted result: which tool calls are blocked outright, which approval rules hold it.

Pure: the pipeline passes the facts of the result and turns the decision into approval requests.
- A tool call is *blocked* when its name is not among the tools the job offered (or the explicitly
  allowed ones), or when the policy lists it in `blocked_tools`. Blocked is final; no approver can lift it.
- An approval rule *holds* the result when its conditions hold. Conditions on `tool` and `args.*` are
  read from one tool call at a time: a rule with `tool: issue_refund` and `args.amount: {gt: 100}`
  matches when a single call satisfies both, never one call's name with another call's amount. Such a
  rule does not match a result without tool calls. Every matching rule holds, each with its own
  approvers, group, deadline and default on expiry.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from routing.policy.conditions import show, tool_names
from routing.policy.document import ApprovalRule, PolicyDocument
from routing.router import JobFacts


@dataclass(frozen=True, slots=True)
class ToolCall:
    name: str
    args: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ResultFacts:
    job: JobFacts
    tool_calls: tuple[ToolCall | tuple[str, Mapping[str, Any] | str], ...] = ()
    allowed_tools: tuple[str, ...] | None = None  # None: the tools the job offered
    final_confidence: float | None = None
    final_tier: str | None = None
    cost_usd: float | None = None


@dataclass(frozen=True, slots=True)
class BlockedCall:
    tool_call_index: int
    tool: str
    reason: str


@dataclass(frozen=True, slots=True)
class Hold:
    rule_id: str
    approvers: int
    group: str
    expires_after_s: int
    on_expiry: str
    reason: str
    tool_call_index: int | None = None


@dataclass(frozen=True, slots=True)
class GovernanceDecision:
    blocked: tuple[BlockedCall, ...]
    holds: tuple[Hold, ...]
    policy_sha256: str

    @property
    def outcome(self) -> str:
        return "blocked" if self.blocked else "hold" if self.holds else "pass"

    def to_record(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "policy_sha256": self.policy_sha256,
            "blocked": [
                {"tool_call_index": b.tool_call_index, "tool": b.tool, "reason": b.reason}
                for b in self.blocked
            ],
            "holds": [
                {
                    "rule": hold.rule_id,
                    "approvers": hold.approvers,
                    "group": hold.group,
                    "expires_after_s": hold.expires_after_s,
                    "on_expiry": hold.on_expiry,
                    "reason": hold.reason,
                    "tool_call_index": hold.tool_call_index,
                }
                for hold in self.holds
            ],
        }


@dataclass(frozen=True, slots=True)
class _Context:
    """What approval conditions read (see `conditions._approval_getter`)."""

    job: JobFacts
    call: ToolCall | None
    final_confidence: object
    final_tier: object
    cost_usd: object


def evaluate_approvals(document: PolicyDocument, facts: ResultFacts) -> GovernanceDecision:
    calls = [_tool_call(item) for item in facts.tool_calls]
    allowed = tool_names(facts.allowed_tools if facts.allowed_tools is not None else facts.job.tools)
    blocked = []
    for index, call in enumerate(calls):
        if call.name not in allowed:
            offered = f"[{', '.join(allowed)}]" if allowed else "none"
            reason = f"tool call #{index} {show(call.name)} is not among the job's allowed tools ({offered})"
            blocked.append(BlockedCall(index, call.name, reason))
        if call.name in document.blocked_tools:
            blocked.append(BlockedCall(index, call.name, f"tool {show(call.name)} is blocked by the policy"))
    holds = [hold for rule in document.approvals if (hold := _hold(rule, facts, calls)) is not None]
    return GovernanceDecision(tuple(blocked), tuple(holds), document.sha256)


def _tool_call(item: object) -> ToolCall:
    """Tool calls arrive as ToolCall or (name, args); args may still be the provider's JSON string."""
    name, args = (item.name, item.args) if isinstance(item, ToolCall) else tuple(item)  # type: ignore[arg-type]
    if isinstance(args, str | bytes):
        try:
            args = json.loads(args)
        except ValueError:
            args = {}
    return ToolCall(str(name), args if isinstance(args, Mapping) else {})


def _hold(rule: ApprovalRule, facts: ResultFacts, calls: list[ToolCall]) -> Hold | None:
    def context(call: ToolCall | None) -> _Context:
        return _Context(facts.job, call, facts.final_confidence, facts.final_tier, facts.cost_usd)

    condition = rule.condition
    if condition.per_call:
        for index, call in enumerate(calls):
            held, reason = condition.explain(context(call))
            if held:
                return _make_hold(rule, f"tool call #{index} {show(call.name)}: {reason}", index)
        return None
    held, reason = condition.explain(context(None))
    return _make_hold(rule, reason, None) if held else None


def _make_hold(rule: ApprovalRule, reason: str, index: int | None) -> Hold:
    return Hold(rule.id, rule.approvers, rule.group, rule.expires_after_s, rule.on_expiry, reason, index)
