"""Input validation of the review pages. Forms validate and convert; every decision is taken by a service."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from review.selectors import QueueFilters
from routing.decide.tiers import TASK_TYPES, TIER_NAMES
from routing.models import PolicyVersion

AGES = {"15m": timedelta(minutes=15), "1h": timedelta(hours=1), "4h": timedelta(hours=4), "24h": timedelta(days=1)}


def _choices(values, blank: str) -> list[tuple[str, str]]:
    return [("", blank), *((value, value.replace("_", " ")) for value in values)]


class QueueFilterForm(forms.Form):
    task_type = forms.ChoiceField(choices=_choices(TASK_TYPES, "any task"), required=False)
    tier = forms.ChoiceField(choices=_choices(TIER_NAMES, "any tier"), required=False)
    rule = forms.SlugField(max_length=80, required=False, widget=forms.TextInput(attrs={"placeholder": "rule id"}))
    application = forms.SlugField(
        max_length=80, required=False, widget=forms.TextInput(attrs={"placeholder": "application"})
    )
    age = forms.ChoiceField(
        choices=[("", "any age"), *((key, f"older than {key}") for key in AGES)], required=False
    )
    min_confidence = forms.FloatField(min_value=0, max_value=1, required=False,
                                      widget=forms.NumberInput(attrs={"step": "0.05", "placeholder": "conf. ≥"}))
    max_confidence = forms.FloatField(min_value=0, max_value=1, required=False,
                                      widget=forms.NumberInput(attrs={"step": "0.05", "placeholder": "conf. ≤"}))

    def filters(self) -> QueueFilters:
        data = self.cleaned_data if self.is_valid() else {}
        return QueueFilters(
            task_type=data.get("task_type", ""),
            tier=data.get("tier", ""),
            rule=data.get("rule", ""),
            application=data.get("application", ""),
            older_than=AGES.get(data.get("age", "")),
            min_confidence=data.get("min_confidence"),
            max_confidence=data.get("max_confidence"),
        )


class DecisionForm(forms.Form):
    """The page's view of the job (`expected_version`) travels with every decision."""

    expected_version = forms.IntegerField(min_value=0, widget=forms.HiddenInput)
    reason = forms.CharField(max_length=4000, required=False, widget=forms.Textarea(attrs={"rows": 2}))


class ReasonRequiredForm(DecisionForm):
    reason = forms.CharField(max_length=4000, widget=forms.Textarea(attrs={"rows": 2}),
                             error_messages={"required": "Give a reason: it is kept in the ledger."})


class OverrideForm(ReasonRequiredForm):
    """Either an edited output (content and tool-call arguments) or another step's output."""

    source = forms.ChoiceField(choices=[("edit", "edit the output"), ("step", "take another step's output")])
    content = forms.CharField(required=False, strip=False, widget=forms.Textarea(attrs={"rows": 6}))
    step = forms.IntegerField(required=False)

    def __init__(self, *args, tool_calls: list[dict[str, Any]] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.tool_calls = tool_calls or []
        for index, call in enumerate(self.tool_calls):
            self.fields[f"arguments_{index}"] = forms.CharField(
                label=f"arguments of {call.get('name', 'tool call')}",
                required=False,
                strip=False,
                initial=json.dumps(call.get("arguments"), indent=2, sort_keys=True, ensure_ascii=False),
                widget=forms.Textarea(attrs={"rows": 4, "class": "mono"}),
            )

    def argument_fields(self):
        return [self[f"arguments_{index}"] for index in range(len(self.tool_calls))]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("source") == "step" and data.get("step") is None:
            raise ValidationError("Pick the step whose output to take.")
        for index in range(len(self.tool_calls)):
            text = data.get(f"arguments_{index}") or ""
            try:
                data[f"arguments_{index}"] = json.loads(text) if text.strip() else {}
            except ValueError as error:
                self.add_error(f"arguments_{index}", f"Not valid JSON: {error}")
        return data

    def edited_output(self, previous: dict[str, Any]) -> dict[str, Any]:
        """The previous output with the edited content and arguments (ids and names unchanged)."""
        calls = [
            {**call, "arguments": self.cleaned_data[f"arguments_{index}"]}
            for index, call in enumerate(self.tool_calls)
        ]
        output = {**previous, "content": self.cleaned_data.get("content", "")}
        if calls or "tool_calls" in previous:
            output["tool_calls"] = calls
        return output


class ReplayForm(forms.Form):
    policy_version = forms.ModelChoiceField(
        queryset=PolicyVersion.objects.select_related("policy").order_by("policy__name", "-number"),
        required=False,
        empty_label="the same version",
    )


class BulkForm(forms.Form):
    decision = forms.ChoiceField(choices=[("approve", "approve"), ("reject", "reject")])
    reason = forms.CharField(max_length=4000, required=False, widget=forms.Textarea(attrs={"rows": 2}))
    jobs = forms.MultipleChoiceField(choices=(), error_messages={"required": "Select at least one job."})

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Values are "<job id>:<version the page showed>"; any well-formed pair is a valid choice.
        self.fields["jobs"].valid_value = lambda value: _job_and_version(value) is not None

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("decision") == "reject" and not (data.get("reason") or "").strip():
            self.add_error("reason", "A rejection needs a reason: it is kept in the ledger.")
        return data

    def selected(self) -> list[tuple[uuid.UUID, int]]:
        return [_job_and_version(value) for value in self.cleaned_data["jobs"][:200]]


def _job_and_version(value: str) -> tuple[uuid.UUID, int] | None:
    job_id, _, version = value.partition(":")
    try:
        return uuid.UUID(job_id), int(version)
    except ValueError:
        return None


class PersonalTokenForm(forms.Form):
    name = forms.CharField(max_length=120, help_text="where it will be used, e.g. “review bot in #refunds”")
    scopes = forms.MultipleChoiceField(
        choices=[
            ("reviews:read", "reviews:read — list held jobs and read them"),
            ("reviews:decide", "reviews:decide — also approve, reject, override and escalate"),
        ],
        widget=forms.CheckboxSelectMultiple,
        initial=["reviews:read"],
        error_messages={"required": "Give the token at least one scope."},
    )
    days = forms.IntegerField(min_value=1, initial=30, label="Expires after (days)")
