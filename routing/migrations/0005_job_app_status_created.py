"""The jobs API's status filter walks an index in its own page order: (application, status, created_at,
id). Without it a page of a rare status in a small application read thousands of the application's (or
the status's) jobs to find fifty. Built concurrently: routing_job is the big table."""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("routing", "0004_history_replay_run"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="job",
            index=models.Index(fields=["application", "status", "-created_at", "-id"], name="job_app_status_created"),
        ),
    ]
