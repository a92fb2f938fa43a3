"""The catalog, applications and budgets: each write one transaction with its ledger event.
The admin API and the web UI call these same functions."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction

from audit import ledger
from audit.ledger import Actor
from routing.models import Application, ModelDeployment

DEPLOYMENT_FIELDS = (
    "tier",
    "base_url",
    "model",
    "api_key_env",
    "price_in_per_mtok",
    "price_out_per_mtok",
    "context_window",
    "region",
    "supports_tools",
    "supports_logprobs",
    "supports_json_schema",
    "enabled",
    "priority",
    "timeout_s",
)


def _record(deployment: ModelDeployment) -> dict[str, Any]:
    values = {field: getattr(deployment, field) for field in DEPLOYMENT_FIELDS}
    return {key: str(value) if isinstance(value, Decimal) else value for key, value in values.items()}


def deployment_create(*, actor: Actor, name: str, **fields: Any) -> ModelDeployment:
    with transaction.atomic():
        deployment = ModelDeployment.objects.create(name=name, **fields)
        ledger.append("deployment.created", actor=actor, body={"name": name, **_record(deployment)})
    return deployment


def deployment_update(*, deployment: ModelDeployment, actor: Actor, **changes: Any) -> ModelDeployment:
    with transaction.atomic():
        locked = ModelDeployment.objects.select_for_update().get(pk=deployment.pk)
        before = _record(locked)
        for field, value in changes.items():
            setattr(locked, field, value)
        locked.save()
        after = _record(locked)
        changed = {
            field: {"from": before[field], "to": after[field]} for field in after if before[field] != after[field]
        }
        if changed:
            event = "deployment.updated"
            if set(changed) == {"enabled"}:
                event = "deployment.enabled" if locked.enabled else "deployment.disabled"
            ledger.append(event, actor=actor, body={"name": locked.name, "changes": changed})
    return locked


def application_create(*, actor: Actor, name: str, slug: str) -> Application:
    with transaction.atomic():
        application = Application.objects.create(name=name, slug=slug)
        ledger.append(
            "application.created",
            actor=actor,
            subject={"application": application.pk},
            body={"name": name, "slug": slug},
        )
    return application


def application_budget_set(
    *, application: Application, actor: Actor, soft_limit_usd: Decimal | None, hard_limit_usd: Decimal | None
) -> Application:
    with transaction.atomic():
        locked = Application.objects.select_for_update().get(pk=application.pk)
        before = {"soft": locked.monthly_soft_limit_usd, "hard": locked.monthly_hard_limit_usd}
        locked.monthly_soft_limit_usd = soft_limit_usd
        locked.monthly_hard_limit_usd = hard_limit_usd
        locked.save(update_fields=["monthly_soft_limit_usd", "monthly_hard_limit_usd"])
        ledger.append(
            "application.budget_set",
            actor=actor,
            subject={"application": locked.pk},
            body={
                "before": {k: None if v is None else str(v) for k, v in before.items()},
                "soft_limit_usd": None if soft_limit_usd is None else str(soft_limit_usd),
                "hard_limit_usd": None if hard_limit_usd is None else str(hard_limit_usd),
            },
        )
    return locked


def application_principal(*, application: Application):
    """The user that stands for an application's admin key where a service records a user (a policy
    version's author, its submitter). It is inactive and has no usable password: nobody logs in as it,
    and it is never anyone's second pair of eyes (see routing/api/admin.py)."""
    username = f"app:{application.slug}"[:150]
    user, created = get_user_model().objects.get_or_create(username=username, defaults={"is_active": False})
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user
