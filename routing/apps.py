from django.apps import AppConfig


class RoutingConfig(AppConfig):
    name = "routing"
    verbose_name = "Routing"

    def ready(self) -> None:
        # The sign-in log lines (controlplane.signin) are signal receivers: connected once apps are ready.
        # The ledger's pages name applications (audit records their ids and does not import routing).
        from audit import subjects
        from controlplane import signin  # noqa: F401

        subjects.register_applications(_application_names)

        from controlplane import health
        from routing.execute.providers import model_server_check

        health.register("model_server", model_server_check)

        from routing.services import key_cache

        key_cache.connect_signals()


def _application_names() -> list[tuple[str, str]]:
    from routing.models import Application

    return [(str(pk), name) for pk, name in Application.objects.order_by("name").values_list("pk", "name")]
