"""Four-eyes is no longer a per-policy switch (one admin could turn it off), and the all-powerful
`policies:admin` scope is split: existing keys become `app:admin` — their own application only, the
least privilege that keeps them working for their application. Platform administration needs a new
`platform:admin` key minted by (and for) a policy admin."""

from django.db import migrations

OLD, APP, PLATFORM = "policies:admin", "app:admin", "platform:admin"


def split_admin_scope(apps, schema_editor):
    ApiKey = apps.get_model("routing", "ApiKey")
    for key in ApiKey.objects.filter(scopes__contains=[OLD]):
        key.scopes = sorted({APP if scope == OLD else scope for scope in key.scopes})
        key.save(update_fields=["scopes"])


def merge_admin_scopes(apps, schema_editor):
    ApiKey = apps.get_model("routing", "ApiKey")
    for key in ApiKey.objects.filter(scopes__overlap=[APP, PLATFORM]):
        key.scopes = sorted({OLD if scope in (APP, PLATFORM) else scope for scope in key.scopes})
        key.save(update_fields=["scopes"])


class Migration(migrations.Migration):

    dependencies = [
        ("routing", "0007_governance_identity_purpose_erasure"),
    ]

    operations = [
        migrations.RemoveField(model_name="policy", name="four_eyes"),
        migrations.RunPython(split_admin_scope, merge_admin_scopes),
    ]
