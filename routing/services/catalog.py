"""The catalog, applications and budgets: each write one transaction with its ledger event.
The admin API and the web UI call these same functions."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import transaction

from audit import ledger
from audit.ledger import Actor
from routing.execute.addresses import UnsafeAddress
from routing.execute.providers import base_url_check, key_env_refusal
from routing.execute.webhooks import callback_url_check
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
    "parameters",
    "enabled",
    "priority",
    "timeout_s",
)


# The fields that decide where prompts go and which secret goes with them.
ENDPOINT_FIELDS = ("base_url", "api_key_env")


class DeploymentInvalid(ValueError):
    """A deployment may not be written as given; `field` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def deployment_endpoint_check(*, base_url: str, api_key_env: str) -> None:
    """Raises DeploymentInvalid unless the URL's addresses and the key's variable are allowed."""
    refusal = key_env_refusal(api_key_env)
    if refusal:
        raise DeploymentInvalid("api_key_env", refusal)
    try:
        base_url_check(base_url)
    except UnsafeAddress as refused:
        raise DeploymentInvalid("base_url", str(refused)) from None


def _record(deployment: ModelDeployment) -> dict[str, Any]:
    values = {field: getattr(deployment, field) for field in DEPLOYMENT_FIELDS}
    return {key: str(value) if isinstance(value, Decimal) else value for key, value in values.items()}


def deployment_create(*, actor: Actor, name: str, **fields: Any) -> ModelDeployment:
    deployment_endpoint_check(base_url=fields.get("base_url", ""), api_key_env=fields.get("api_key_env", ""))
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
        if any(field in changes for field in ENDPOINT_FIELDS):
            deployment_endpoint_check(base_url=locked.base_url, api_key_env=locked.api_key_env)
        locked.save()
        after = _record(locked)
        changed = {
            field: {"from": before[field], "to": after[field]} for field in after if before[field] != after[field]
        }
        if changed:
            event = "deployment.updated"
            body: dict[str, Any] = {"name": locked.name, "changes": changed}
            if set(changed) == {"enabled"}:
                event = "deployment.enabled" if locked.enabled else "deployment.disabled"
            elif set(changed) & set(ENDPOINT_FIELDS):
                # Its own event type, so an auditor can list every redirection of prompts and keys. Names
                # of variables only: the secret's value is never read here.
                event = "deployment.endpoint_changed"
                body["before"] = {field: before[field] for field in ENDPOINT_FIELDS}
                body["after"] = {field: after[field] for field in ENDPOINT_FIELDS}
            ledger.append(event, actor=actor, body=body)
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



def application_review_notify_set(*, application: Application, actor: Actor, url: str) -> Application:
    """Where reviewers hear of this application's held jobs ("" for nowhere); the address is checked now
    and again at each delivery (routing.execute.webhooks). Raises UnsafeAddress."""
    if url:
        callback_url_check(url)
    with transaction.atomic():
        locked = Application.objects.select_for_update().get(pk=application.pk)
        before, locked.review_notify_url = locked.review_notify_url, url
        locked.save(update_fields=["review_notify_url"])
        ledger.append(
            "application.review_notify_set",
            actor=actor,
            subject={"application": locked.pk},
            body={"before": before, "url": url},
        )
    return locked
