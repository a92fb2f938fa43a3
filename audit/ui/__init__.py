"""The web UI of oversight: dashboard, review queue, job pages, reviewer actions and the ledger browser.

Views are small functions that check the role first (`access.role_required`), then call one service or
selector and render one template (its named partial when the request comes from htmx).
"""
