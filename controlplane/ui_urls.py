"""The web UI's URLs (sign-in, dashboard, review queue, jobs, policies, catalog, ledger)."""

urlpatterns: list = []
