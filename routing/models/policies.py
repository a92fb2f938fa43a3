from __future__ import annotations

import pgtrigger
from django.conf import settings
from django.db import models


class PolicyVersionStatus(models.TextChoices):
    DRAFT = "draft"
    PENDING = "pending", "submitted for activation"
    ACTIVE = "active"
    RETIRED = "retired"


class Policy(models.Model):
    name = models.SlugField(max_length=80, unique=True)
    description = models.TextField(blank=True)
    is_default = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=models.Q(is_default=True), name="one_default_policy"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class PolicyVersion(models.Model):
    """An immutable, validated routing document. Only its lifecycle fields may change."""

    policy = models.ForeignKey(Policy, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    source = models.TextField(help_text="The document as written (YAML or JSON).")
    document = models.JSONField(help_text="The parsed, validated document.")
    sha256 = models.CharField(max_length=64)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+"
    )
    comment = models.TextField(blank=True)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(
        max_length=16, choices=PolicyVersionStatus.choices, default=PolicyVersionStatus.DRAFT
    )
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    activated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    activated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["policy", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["policy", "number"], name="policy_version_number_unique"),
            models.UniqueConstraint(
                fields=["policy"], condition=models.Q(status="active"), name="one_active_version_per_policy"
            ),
        ]
        triggers = [
            # A version's content is evidence: the database refuses to change it, whatever the code does.
            pgtrigger.ReadOnly(
                name="policy_version_content_read_only",
                fields=["policy", "number", "source", "document", "sha256", "author", "parent", "created_at"],
            ),
            pgtrigger.Protect(name="policy_version_no_delete", operation=pgtrigger.Delete),
        ]

    def __str__(self) -> str:
        return f"{self.policy.name} v{self.number}"
