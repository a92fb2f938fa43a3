"""The demo's catalog, policy and application, and the trickle of demo jobs."""

from __future__ import annotations

import random
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.db import transaction

from audit.ledger import Actor
from routing.decide.parameters import DEFAULT_SUPPORTED
from routing.demo.jobs import pick_demo_job
from routing.models import Application, ModelDeployment, Policy
from routing.services.jobs import job_submit
from routing.services.keys import api_key_create
from routing.services.policies import policy_create, policy_version_bootstrap, policy_version_create

SEED_ACTOR = Actor.system("seed")
DEMO_APPLICATION = "demo-agents"
DEFAULT_POLICY_FILE = Path(__file__).with_name("default-policy.yaml")
# The demo's flagship stands for a reasoning model: it takes no sampling settings (as OpenAI's reasoning
# models refuse them), so a caller's `temperature` comes back named in x-arbiter-ignored-params.
SAMPLING = ("temperature", "top_p", "presence_penalty", "frequency_penalty", "logit_bias")
REASONING_MODEL_PARAMETERS = [name for name in DEFAULT_SUPPORTED if name not in SAMPLING]


def demo_catalog() -> list[dict]:
    """Published GPT-5.4 nano and mini prices; the flagship's price is a setting."""
    flagship_in = Decimal(str(settings.ARBITER_FLAGSHIP_PRICE_IN))
    flagship_out = Decimal(str(settings.ARBITER_FLAGSHIP_PRICE_OUT))
    return [
        {
            "name": "nano-local",
            "tier": "nano",
            "model": "sim-nano",
            "price_in": Decimal("0.20"),
            "price_out": Decimal("1.25"),
        },
        {
            "name": "nano-local-b",
            "tier": "nano",
            "model": "sim-nano-b",
            "price_in": Decimal("0.20"),
            "price_out": Decimal("1.25"),
            "priority": 200,
        },
        {
            "name": "mini-local",
            "tier": "mini",
            "model": "sim-mini",
            "price_in": Decimal("0.75"),
            "price_out": Decimal("4.50"),
        },
        {
            "name": "mini-eu",
            "tier": "mini",
            "model": "sim-mini-eu",
            "price_in": Decimal("0.75"),
            "price_out": Decimal("4.50"),
            "region": "eu",
            "priority": 150,
        },
        {
            "name": "flagship-local",
            "parameters": REASONING_MODEL_PARAMETERS,
            "tier": "flagship",
            "model": "sim-flagship",
            "price_in": flagship_in,
            "price_out": flagship_out,
        },
        {
            "name": "flagship-eu",
            "parameters": REASONING_MODEL_PARAMETERS,
            "tier": "flagship",
            "model": "sim-flagship-eu",
            "price_in": flagship_in,
            "price_out": flagship_out,
            "region": "eu",
            "priority": 150,
        },
    ]


def seed_catalog() -> None:
    base_url = settings.ARBITER_MODELSERVER_URL or "http://127.0.0.1:8100/v1"
    for entry in demo_catalog():
        ModelDeployment.objects.update_or_create(
            name=entry["name"],
            defaults={
                "tier": entry["tier"],
                "model": entry["model"],
                "base_url": base_url,
                "price_in_per_mtok": entry["price_in"],
                "price_out_per_mtok": entry["price_out"],
                "region": entry.get("region", "us"),
                "priority": entry.get("priority", 100),
                "parameters": entry.get("parameters", list(DEFAULT_SUPPORTED)),
            },
        )


def seed_policy() -> Policy:
    policy = Policy.objects.filter(name="default").first()
    if policy is None:
        policy = policy_create(
            name="default", actor=SEED_ACTOR, description="The demo's routing policy.", is_default=True
        )
    if not policy.versions.filter(status="active").exists():
        version = policy_version_create(
            policy=policy, source=DEFAULT_POLICY_FILE.read_text(), author=None, comment="demo seed", actor=SEED_ACTOR
        )
        policy_version_bootstrap(version=version, actor=SEED_ACTOR)
    return policy


def seed_application(*, key_owner) -> tuple[Application, str | None]:
    """The demo application; its key's plaintext only when this call created it. The key acts for
    `key_owner` (the demo's policy admin): jobs it submits are theirs, so reviewers can decide them."""
    application, created = Application.objects.get_or_create(
        slug=DEMO_APPLICATION,
        defaults={
            "name": "Demo agents",
            "monthly_soft_limit_usd": Decimal("50"),
            "monthly_hard_limit_usd": Decimal("100"),
        },
    )
    if not created and application.api_keys.filter(revoked_at__isnull=True).exists():
        return application, None
    _, plaintext = api_key_create(
        application=application,
        scopes=["jobs:write", "jobs:read", "grants:redeem"],
        created_by=key_owner,
        actor=SEED_ACTOR,
        name="demo",
    )
    return application, plaintext


def seed_all(*, key_owner) -> str | None:
    with transaction.atomic():
        seed_catalog()
        seed_policy()
        _, plaintext = seed_application(key_owner=key_owner)
    return plaintext


def demo_job_submit(rng: random.Random | None = None) -> None:
    application = Application.objects.filter(slug=DEMO_APPLICATION).first()
    if application is None:
        return
    job = pick_demo_job(rng)
    job_submit(application=application, actor=Actor.application(application.pk), **job)
