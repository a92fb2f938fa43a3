"""The web UI of routing: policies (history, editor, diff, thresholds, activation), the catalog, and
applications with their keys and budgets. Access checks and shared UI pieces come from audit.ui."""
