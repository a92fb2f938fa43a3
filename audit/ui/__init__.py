"""The ledger's pages: the event browser, one event, and export packs.

Views are small functions that check the role first (`web.access.role_required`), then call one service or
selector and render one template (its named partial when the request comes from htmx).
"""
