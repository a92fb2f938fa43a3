from django.apps import AppConfig


class RoutingConfig(AppConfig):
    name = "routing"
    verbose_name = "Routing"

    def ready(self) -> None:
        # The sign-in log lines (controlplane.signin) are signal receivers: connected once apps are ready.
        from controlplane import signin  # noqa: F401
