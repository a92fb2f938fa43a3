from __future__ import annotations

from decimal import Decimal

from django.contrib.postgres.fields import ArrayField
from django.db import models

JOBS_WRITE = "jobs:write"
JOBS_READ = "jobs:read"
GRANTS_REDEEM = "grants:redeem"
APP_ADMIN = "app:admin"
PLATFORM_ADMIN = "platform:admin"

# Two levels of administration: an application administers itself (its own keys, its own budget and
# usage, read-only); the platform administers everything (policies, the catalog, every application,
# key and budget). A key acts for the person who minted it and never holds more than that person does.
SCOPE_DESCRIPTIONS = {
    JOBS_WRITE: "submit and cancel this application's jobs",
    JOBS_READ: "read this application's jobs",
    GRANTS_REDEEM: "redeem this application's approval grants (once each) before executing an approved tool call",
    APP_ADMIN: "this application only: its keys (no wider than this key's scopes), its budget and usage (read)",
    PLATFORM_ADMIN: "the whole installation: policies, the catalog, every application, key and budget "
    "(only for a person with the policy-admin role)",
}
KEY_SCOPES = list(SCOPE_DESCRIPTIONS)
ADMIN_SCOPES = (APP_ADMIN, PLATFORM_ADMIN)


class Application(models.Model):
    """A tenant: every query of its data is filtered by it."""

    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=80, unique=True)
    is_active = models.BooleanField(default=True)
    monthly_soft_limit_usd = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    monthly_hard_limit_usd = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    review_notify_url = models.URLField(
        max_length=2000,
        blank=True,
        help_text="Where reviewers are told that a job of this application is held (e.g. a chat tool's incoming "
        "webhook): a signed `review.requested` event with a link to the job, never the held answer.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def has_budget(self) -> bool:
        return self.monthly_hard_limit_usd is not None or self.monthly_soft_limit_usd is not None

    def hard_limit(self) -> Decimal | None:
        return self.monthly_hard_limit_usd


class ApiKey(models.Model):
    """Shown once; stored as a hash; looked up by its prefix and compared in constant time."""

    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=120, blank=True)
    prefix = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)
    scopes = ArrayField(models.CharField(max_length=32), default=list)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        "auth.User",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The person who minted the key. The key acts for them: what it submits or authors is theirs.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.application})"
