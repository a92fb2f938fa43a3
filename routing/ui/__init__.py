"""Routing's pages: the dashboard, policies (history, editor, diff, thresholds, activation), the catalog,
applications with their keys and budgets, and erasure. The shared UI kit (access, pagination, diffs,
template tags, charts) is `web`."""
