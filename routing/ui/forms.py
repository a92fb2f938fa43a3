"""Forms of the routing UI: the policy editor, the thresholds form, keys, budgets, history replays."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django import forms

from routing.evaluation.outcomes import EvaluationError
from routing.evaluation.services import history_cost_cap
from routing.models import Application, EvaluationKind, HistoryReplayMode
from routing.models.applications import SCOPE_DESCRIPTIONS
from routing.ui.thresholds import Threshold


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
        initial=["jobs:write", "jobs:read"],
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


class HistoryReplayForm(forms.Form):
    application = forms.ModelChoiceField(
        queryset=Application.objects.order_by("name"),
        to_field_name="slug",
        required=False,
        empty_label="all applications",
    )
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}),
                            help_text="UTC day, inclusive")
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}),
                            help_text="UTC day, inclusive")
    limit = forms.IntegerField(min_value=1, max_value=10_000, initial=1000, help_text="newest jobs first",
                               widget=forms.NumberInput(attrs={"class": "num"}))
    mode = forms.ChoiceField(choices=HistoryReplayMode.choices, initial=HistoryReplayMode.ROUTING,
                             widget=forms.RadioSelect)
    cost_cap_usd = forms.DecimalField(
        label="Cost cap (USD)",
        required=False,
        max_digits=10,
        decimal_places=2,
        help_text="full re-execution only: the replay stops when its model calls have cost this much",
        widget=forms.NumberInput(attrs={"step": "0.01", "min": "0.01", "class": "num"}),
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        if since and until and until < since:
            self.add_error("until", "The window ends before it starts.")
        if "mode" in data and "cost_cap_usd" not in self.errors:
            # The service's own rule, so that the form and the command refuse the same things.
            try:
                history_cost_cap(data["mode"], data.get("cost_cap_usd"))
            except EvaluationError as error:
                self.add_error("cost_cap_usd", str(error)[:1].upper() + str(error)[1:] + ".")
        return data

    def replay_arguments(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "application": data["application"].slug if data.get("application") else None,
            "since": _day_start(data.get("since")),
            "until": _day_start(data.get("until"), plus_days=1),
            "limit": data["limit"],
            "mode": data["mode"],
            "cost_cap_usd": data.get("cost_cap_usd"),
        }


def _day_start(day: date | None, plus_days: int = 0) -> datetime | None:
    return datetime.combine(day, time.min, tzinfo=UTC) + timedelta(days=plus_days) if day else None


class EvaluationFilterForm(forms.Form):
    kind = forms.ChoiceField(choices=[("", "any kind"), *EvaluationKind.choices], required=False)
    version = forms.IntegerField(min_value=1, required=False, widget=forms.HiddenInput)

    def filters(self) -> dict[str, Any]:
        data = self.cleaned_data if self.is_valid() else {}
        return {"kind": data.get("kind") or None, "version_id": data.get("version")}
