"""Input validation of the ledger pages. Forms validate and convert; the ledger is only read here."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from audit.subjects import application_choices, application_name


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
    application = forms.ChoiceField(choices=lambda: application_choices("any application"), required=False)
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
            "application": data.get("application") or None,
            "policy_version": data.get("policy_version"),
            "since": _day_start(data.get("since")),
            "until": _day_start(data.get("until"), plus_days=1),
        }


class ExportForm(forms.Form):
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}),
                            help_text="inclusive")
    application = forms.ChoiceField(choices=lambda: application_choices("all applications"), required=False)

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
        application = application_name(data["application"]) if data.get("application") else "all applications"
        since, until = data.get("since"), data.get("until")
        window = f"{since or 'the start'} to {until or 'now'}" if since or until else "all time"
        return f"{application}, {window}"

    def window(self) -> tuple[datetime | None, datetime | None]:
        return _day_start(self.cleaned_data.get("since")), _day_start(self.cleaned_data.get("until"), plus_days=1)


def _day_start(day, plus_days: int = 0) -> datetime | None:
    if day is None:
        return None
    return datetime.combine(day, time.min, tzinfo=UTC) + timedelta(days=plus_days)
