"""Webhooks and model deployments never reach cloud metadata, and reach loopback or private addresses only
where a setting allows — whichever way the address is written, IPv6 embeddings of IPv4 included."""

from __future__ import annotations

import pytest
from django.test import override_settings

from routing.execute.addresses import UnsafeAddress
from routing.execute.providers import base_url_check
from routing.execute.webhooks import UnsafeCallbackUrl, callback_url_check

# Each form of 127.0.0.1 an IPv6 host may route to the IPv4 loopback.
LOOPBACK_FORMS = {
    "plain": "127.0.0.1",
    "ipv4-compatible": "[::127.0.0.1]",
    "ipv4-mapped": "[::ffff:127.0.0.1]",
    "ipv4-translated": "[::ffff:0:7f00:1]",
    "nat64": "[64:ff9b::7f00:1]",
    "nat64-local-96": "[64:ff9b:1::7f00:1]",
    "6to4": "[2002:7f00:1::1]",
    "ipv6-loopback": "[::1]",
}
# Each form of 169.254.169.254 (cloud metadata), and the metadata services' own names and addresses.
METADATA_FORMS = {
    "plain": "169.254.169.254",
    "ipv4-compatible": "[::169.254.169.254]",
    "ipv4-mapped": "[::ffff:169.254.169.254]",
    "ipv4-translated": "[::ffff:0:a9fe:a9fe]",
    "nat64": "[64:ff9b::a9fe:a9fe]",
    "nat64-local-96": "[64:ff9b:1::a9fe:a9fe]",
    "nat64-local-48": "[64:ff9b:1:a9fe:a9:fe00::]",
    "6to4": "[2002:a9fe:a9fe::1]",
    # Teredo: server 8.8.8.8, client 169.254.169.254 stored inverted (0x5601_5601).
    "teredo": "[2001:0:808:808::5601:5601]",
    "aws-ipv6": "[fd00:ec2::254]",
    "gcp-name": "metadata.google.internal",
    "ipv6-link-local": "[fe80::1]",
}
# Each form of 10.0.0.1.
PRIVATE_FORMS = {
    "plain": "10.0.0.1",
    "ipv4-compatible": "[::10.0.0.1]",
    "ipv4-mapped": "[::ffff:10.0.0.1]",
    "ipv4-translated": "[::ffff:0:a00:1]",
    "nat64": "[64:ff9b::a00:1]",
    "6to4": "[2002:a00:1::1]",
    "unique-local": "[fd12:3456::1]",
}


def _ids(forms: dict[str, str]) -> dict:
    return {"argvalues": list(forms.values()), "ids": list(forms)}


@pytest.mark.parametrize("host", **_ids(LOOPBACK_FORMS))
def test_no_form_of_loopback_passes_a_webhook_filter_that_refuses_loopback(host):
    with (
        override_settings(ARBITER_WEBHOOK_ALLOW_LOOPBACK=False, ARBITER_WEBHOOK_ALLOW_PRIVATE=False),
        pytest.raises(UnsafeCallbackUrl, match="loopback"),
    ):
        callback_url_check(f"http://{host}:8000/hook")


@pytest.mark.parametrize("host", **_ids(LOOPBACK_FORMS))
def test_no_form_of_loopback_is_a_production_provider_url(host):
    with (
        override_settings(ARBITER_ALLOW_PRIVATE_PROVIDER_URLS=False),
        pytest.raises(UnsafeAddress, match=r"loopback.*ARBITER_ALLOW_PRIVATE_PROVIDER_URLS"),
    ):
        base_url_check(f"http://{host}:8100/v1")


@pytest.mark.parametrize("host", **_ids(METADATA_FORMS))
def test_no_form_of_the_metadata_service_is_ever_reachable(host):
    # Even with every permissive setting on.
    permissive = {
        "ARBITER_WEBHOOK_ALLOW_LOOPBACK": True,
        "ARBITER_WEBHOOK_ALLOW_PRIVATE": True,
        "ARBITER_ALLOW_PRIVATE_PROVIDER_URLS": True,
    }
    with override_settings(**permissive):
        with pytest.raises(UnsafeCallbackUrl, match="never allowed"):
            callback_url_check(f"http://{host}/latest/meta-data/")
        with pytest.raises(UnsafeAddress, match="never allowed"):
            base_url_check(f"http://{host}/v1")


@pytest.mark.parametrize("host", **_ids(PRIVATE_FORMS))
def test_no_form_of_a_private_address_passes_where_private_is_refused(host):
    with (
        override_settings(ARBITER_WEBHOOK_ALLOW_LOOPBACK=True, ARBITER_WEBHOOK_ALLOW_PRIVATE=False),
        pytest.raises(UnsafeCallbackUrl, match="private"),
    ):
        callback_url_check(f"http://{host}/hook")
    with (
        override_settings(ARBITER_ALLOW_PRIVATE_PROVIDER_URLS=False),
        pytest.raises(UnsafeAddress, match="private"),
    ):
        base_url_check(f"http://{host}/v1")


def test_the_local_model_server_is_a_valid_provider_url_in_development():
    with override_settings(ARBITER_ALLOW_PRIVATE_PROVIDER_URLS=True):
        base_url_check("http://127.0.0.1:8100/v1")


@pytest.mark.parametrize(
    "url", ["http://8.8.8.8/v1", "https://[2606:4700:4700::1111]/v1", "http://[::ffff:0:808:808]/v1"]
)
def test_a_public_address_is_a_valid_provider_url_in_production(url):
    with override_settings(ARBITER_ALLOW_PRIVATE_PROVIDER_URLS=False):
        base_url_check(url)


@pytest.mark.django_db
@pytest.mark.parametrize("host", ["[::127.0.0.1]", "[64:ff9b::7f00:1]", "[2002:7f00:1::1]"])
def test_a_job_whose_callback_hides_loopback_in_ipv6_is_400(owner, host):
    with override_settings(ARBITER_WEBHOOK_ALLOW_LOOPBACK=False):
        response = owner.submit(callback_url=f"http://{host}:8000/hook")
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "callback_url"
    assert "loopback" in response.json()["errors"][0]["message"]
    assert owner.job_count() == 0
