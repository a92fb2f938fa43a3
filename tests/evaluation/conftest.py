"""Evaluation fixtures: a catalog a calibrated document validates against."""

from __future__ import annotations

import pytest

from tests.support.factories import DeploymentFactory


@pytest.fixture
def catalog(db) -> None:
    """Deployments for every tier, in the default region and in the EU (the default policy has an EU rule),
    so that a calibrated document passes validation against the catalog."""
    for tier in ("nano", "mini", "flagship"):
        DeploymentFactory(tier=tier)
        DeploymentFactory(tier=tier, region="eu")

