"""Each approval rule that holds an answer keeps its own group and number of approvers (before, only the
first rule's group and the largest number were kept, so a second rule's group was never checked).
Existing requests get one requirement per rule from the summary columns they had: the best that can be
recovered, and no weaker than what they were decided on until now."""

from django.db import migrations, models


def fill_requirements(apps, schema_editor):
    ApprovalRequest = apps.get_model("routing", "ApprovalRequest")
    for request in ApprovalRequest.objects.filter(requirements=[]).iterator():
        rules = request.rule_ids or [""]
        request.requirements = [
            {"rule": rule, "group": request.eligible_group, "approvers": request.required_approvers} for rule in rules
        ]
        request.save(update_fields=["requirements"])


class Migration(migrations.Migration):
    dependencies = [("routing", "0008_gov_identity")]

    operations = [
        migrations.AddField(
            model_name="approvalrequest",
            name="requirements",
            field=models.JSONField(default=list),
        ),
        migrations.RunPython(fill_requirements, migrations.RunPython.noop),
    ]
