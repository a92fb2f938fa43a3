from __future__ import annotations

from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models

from routing.decide.parameters import DEFAULT_SUPPORTED


def default_parameters() -> list[str]:
    return list(DEFAULT_SUPPORTED)


TIER_CHOICES = [("nano", "nano"), ("mini", "mini"), ("flagship", "flagship")]


class ModelDeployment(models.Model):
    """One callable model endpoint. The secret is never stored: only the name of its env variable."""

    name = models.SlugField(max_length=80, unique=True)
    tier = models.CharField(max_length=16, choices=TIER_CHOICES)
    base_url = models.URLField(max_length=500)
    model = models.CharField(max_length=200, help_text="The provider's model id.")
    api_key_env = models.CharField(
        max_length=100, blank=True, help_text="Name of the environment variable holding the API key."
    )
    price_in_per_mtok = models.DecimalField(
        max_digits=12, decimal_places=6, validators=[MinValueValidator(Decimal(0))]
    )
    price_out_per_mtok = models.DecimalField(
        max_digits=12, decimal_places=6, validators=[MinValueValidator(Decimal(0))]
    )
    context_window = models.PositiveIntegerField(default=128_000)
    region = models.CharField(max_length=32, default="us")
    supports_tools = models.BooleanField(default=True)
    supports_logprobs = models.BooleanField(default=True)
    supports_json_schema = models.BooleanField(default=True)
    parameters = models.JSONField(
        default=default_parameters,
        blank=True,
        help_text="The Chat Completions parameters this deployment takes (routing.decide.parameters); a caller's "
        "other parameters are not sent to it, and the answer names them in x-arbiter-ignored-params.",
    )
    enabled = models.BooleanField(default=True)
    priority = models.PositiveSmallIntegerField(
        default=100, help_text="Order among deployments of the same tier: lower is tried first."
    )
    timeout_s = models.FloatField(default=30.0, validators=[MinValueValidator(0.1)])
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tier", "priority", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.tier})"

    @property
    def capabilities(self) -> frozenset[str]:
        flags = {
            "tools": self.supports_tools,
            "logprobs": self.supports_logprobs,
            "json_schema": self.supports_json_schema,
        }
        return frozenset(name for name, on in flags.items() if on)

    def cost_usd(self, prompt_tokens: int, completion_tokens: int) -> Decimal:
        return (
            self.price_in_per_mtok * prompt_tokens + self.price_out_per_mtok * completion_tokens
        ) / Decimal(1_000_000)
