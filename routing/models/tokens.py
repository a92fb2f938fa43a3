from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models

# What a person's token may do. Reading the review queue, and deciding held jobs — always as that person,
# under the roles and four-eyes rules they hold at the moment of use.
REVIEWS_READ = "reviews:read"
REVIEWS_DECIDE = "reviews:decide"
PERSONAL_SCOPES = [REVIEWS_READ, REVIEWS_DECIDE]


class PersonalToken(models.Model):
    """A person's token for the review API (`arbp_<prefix>_<secret>`): a reviewer deciding from a chat tool
    or a script. Shown once; stored as the SHA-256 of its secret; it acts as its person, never as an
    application, and stops when it expires, is revoked or its person is deactivated."""

    user = models.ForeignKey("auth.User", on_delete=models.PROTECT, related_name="personal_tokens")
    name = models.CharField(max_length=120)
    prefix = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)
    scopes = ArrayField(models.CharField(max_length=32), default=list)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"arbp_{self.prefix}… ({self.user_id})"
