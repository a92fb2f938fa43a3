"""The Celery application. Messages carry ids only; the job row in Postgres is the truth."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")

app = Celery("arbiter")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.task(name="controlplane.ping")
def ping() -> str:
    """A no-op task; the launcher test sends it through the real broker to a real worker."""
    return "pong"
