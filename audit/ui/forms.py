"""Input validation of the review UI. Forms validate and convert; every decision is taken by a service."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from audit.ui.selectors import QueueFilters
from routing.models import Application, Job, PolicyVersion
from routing.services.erasure import MAX_REFERENCE_LENGTH, MIN_IDENTIFIER_LENGTH, ErasureReason
from routing.tiers import TASK_TYPES, TIER_NAMES

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


class LedgerFilterForm(forms.Form):
    event_type = forms.CharField(max_length=64, required=False,
                                 widget=forms.TextInput(attrs={"placeholder": "event type"}))
    actor_kind = forms.ChoiceField(
        choices=[("", "any actor"), *((k, k) for k in ("user", "application", "worker", "system"))],
        required=False,
    )
    actor_id = forms.CharField(
        max_length=200, required=False, widget=forms.TextInput(attrs={"placeholder": "actor id"})
    )
    job = forms.UUIDField(required=False, widget=forms.TextInput(attrs={"placeholder": "job id"}))
    application = forms.ModelChoiceField(queryset=Application.objects.order_by("name"), required=False,
                                         empty_label="any application")
    policy_version = forms.IntegerField(min_value=1, required=False,
                                        widget=forms.NumberInput(attrs={"placeholder": "policy ver. id"}))
    since = forms.DateField(label="from", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(label="to", required=False, widget=forms.DateInput(attrs={"type": "date"}),
                            help_text="inclusive")

    def filters(self) -> dict[str, Any]:
        data = self.cleaned_data if self.is_valid() else {}
        return {
            "event_type": data.get("event_type") or None,
            "actor_kind": data.get("actor_kind") or None,
            "actor_id": data.get("actor_id") or None,
            "job": data.get("job"),
            "application": data["application"].pk if data.get("application") else None,
            "policy_version": data.get("policy_version"),
            "since": _day_start(data.get("since")),
            "until": _day_start(data.get("until"), plus_days=1),
        }


class ExportForm(forms.Form):
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}),
                            help_text="inclusive")
    application = forms.ModelChoiceField(queryset=Application.objects.order_by("name"), required=False,
                                         empty_label="all applications")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        if since and until and until < since:
            raise ValidationError("The window ends before it starts.")
        if not (since or until or data.get("application")):
            raise ValidationError("Choose a window or an application: a whole-ledger export is a CLI job "
                                  "(manage.py ledger_export).")
        return data

    def describe(self) -> str:
        data = self.cleaned_data
        application = data["application"].name if data.get("application") else "all applications"
        since, until = data.get("since"), data.get("until")
        window = f"{since or 'the start'} to {until or 'now'}" if since or until else "all time"
        return f"{application}, {window}"

    def window(self) -> tuple[datetime | None, datetime | None]:
        return _day_start(self.cleaned_data.get("since")), _day_start(self.cleaned_data.get("until"), plus_days=1)


def _day_start(day, plus_days: int = 0) -> datetime | None:
    if day is None:
        return None
    return datetime.combine(day, time.min, tzinfo=UTC) + timedelta(days=plus_days)


class ErasureForm(forms.Form):
    """What to erase: one job, an application's jobs, or a data subject's (optionally in one application)."""

    job = forms.UUIDField(required=False, widget=forms.TextInput(attrs={"placeholder": "job id"}))
    application = forms.ModelChoiceField(
        queryset=Application.objects.order_by("name"), required=False, empty_label="all applications",
        to_field_name="slug",
    )
    subject = forms.CharField(
        required=False, min_length=MIN_IDENTIFIER_LENGTH, max_length=320, strip=True,
        widget=forms.TextInput(attrs={"placeholder": "e-mail, phone, IBAN…", "autocomplete": "off"}),
    )
    reason = forms.ChoiceField(choices=ErasureReason.choices)
    reference = forms.CharField(required=False, max_length=MAX_REFERENCE_LENGTH,
                                widget=forms.TextInput(attrs={"placeholder": "request ticket (optional)"}))

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.errors:
            return data
        job_id = data.get("job")
        if not (job_id or data.get("application") or data.get("subject")):
            raise ValidationError("Name a job, an application, or a data subject's identifier.")
        if job_id and (data.get("application") or data.get("subject")):
            raise ValidationError("A job is erased on its own: leave the application and identifier empty.")
        data["job_row"] = Job.objects.filter(pk=job_id).first() if job_id else None
        if job_id and data["job_row"] is None:
            self.add_error("job", "No such job.")
        return data
