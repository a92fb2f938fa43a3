"""Forms of the routing UI: the policy editor, the thresholds form, keys, budgets, history replays."""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from routing.decide.thresholds import Threshold
from routing.models import Application, Job
from routing.models.applications import SCOPE_DESCRIPTIONS
from routing.services.erasure import MAX_REFERENCE_LENGTH, MIN_IDENTIFIER_LENGTH, ErasureReason


class PolicySourceForm(forms.Form):
    source = forms.CharField(
        max_length=256 * 1024,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 28, "spellcheck": "false", "wrap": "off", "class": "code"}),
    )
    comment = forms.CharField(max_length=2000, required=False,
                              widget=forms.TextInput(attrs={"placeholder": "what changed and why"}))


class ThresholdsForm(forms.Form):
    comment = forms.CharField(max_length=2000, required=False,
                              widget=forms.TextInput(attrs={"placeholder": "why these thresholds"}))

    def __init__(self, *args, thresholds: list[Threshold], **kwargs):
        super().__init__(*args, **kwargs)
        self.thresholds = thresholds
        for threshold in thresholds:
            self.fields[threshold.name] = forms.FloatField(
                min_value=0,
                max_value=1,
                initial=threshold.value,
                label=f"{threshold.rule_id} · {threshold.tier}",
                widget=forms.NumberInput(attrs={"step": "0.01", "min": "0", "max": "1", "class": "num"}),
            )

    def rows(self):
        return [(threshold, self[threshold.name]) for threshold in self.thresholds]

    def clean(self):
        data = super().clean()
        if not self.errors and not self.changed_thresholds():
            raise forms.ValidationError("No threshold changed.")
        return data

    def changed_thresholds(self) -> list[tuple[Threshold, float]]:
        return [
            (threshold, round(self.cleaned_data[threshold.name], 4))
            for threshold in self.thresholds
            if abs(self.cleaned_data[threshold.name] - threshold.value) > 1e-9
        ]

    def changes(self) -> dict[tuple[int, str], float]:
        """(rule index, tier) -> new threshold, for the rewrite."""
        return {(threshold.rule_index, threshold.tier): value for threshold, value in self.changed_thresholds()}

    def version_comment(self) -> str:
        """The admin's comment, else what changed ("thresholds: cheap-first.nano=0.6")."""
        return self.cleaned_data["comment"] or "thresholds: " + ", ".join(
            f"{threshold.rule_id}.{threshold.tier}={value:g}" for threshold, value in self.changed_thresholds()
        )


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=120, required=False)
    scopes = forms.MultipleChoiceField(
        choices=[(scope, f"{scope} — {description}") for scope, description in SCOPE_DESCRIPTIONS.items()],
        widget=forms.CheckboxSelectMultiple,
        initial=["jobs:write", "jobs:read", "grants:redeem"],
        error_messages={"required": "Give the key at least one scope."},
    )
    expires_on = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}),
                                 help_text="optional; the key stops working at the start of this day (UTC)")

    def expires_at(self) -> datetime | None:
        day = self.cleaned_data.get("expires_on")
        return datetime.combine(day, time.min, tzinfo=UTC) if day else None

    def clean_expires_on(self):
        day = self.cleaned_data.get("expires_on")
        if day and datetime.combine(day, time.min, tzinfo=UTC) <= datetime.now(UTC):
            raise forms.ValidationError("An expiry must be in the future.")
        return day


class BudgetForm(forms.Form):
    monthly_soft_limit_usd = forms.DecimalField(min_value=0, max_digits=12, decimal_places=2, required=False,
                                                label="Soft limit (USD / month)")
    monthly_hard_limit_usd = forms.DecimalField(min_value=0, max_digits=12, decimal_places=2, required=False,
                                                label="Hard limit (USD / month)")

    def clean(self):
        data = super().clean()
        soft, hard = data.get("monthly_soft_limit_usd"), data.get("monthly_hard_limit_usd")
        if soft is not None and hard is not None and soft > hard:
            raise forms.ValidationError("The soft limit must not be above the hard limit.")
        return data


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


class ReviewNotifyForm(forms.Form):
    review_notify_url = forms.URLField(
        max_length=2000,
        required=False,
        assume_scheme="https",
        label="Tell reviewers at (blank: nowhere)",
        help_text="a chat tool's incoming webhook, or any HTTPS receiver: a signed review.requested event with "
        "a link to the job, never the held answer",
    )
