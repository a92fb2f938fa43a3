"""Input validation of the evaluation pages: the report filters and the history replay form."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django import forms

from evaluation.history_runs import history_cost_cap
from evaluation.recorded.outcomes import EvaluationError
from routing.models import Application, EvaluationKind, HistoryReplayMode


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
