from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit"

    def ready(self) -> None:
        from celery.signals import beat_init

        from audit import checkpointer

        # Only `celery beat` sends beat_init: the checkpointer runs in that one process.
        beat_init.connect(checkpointer.start_in_beat, dispatch_uid="audit.checkpointer")
