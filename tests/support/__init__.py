"""What tests of every app share: factories and builders of rows, the governed set-up on the local model
server, real Celery workers, personas (API keys and signed-in users), a live Arbiter over HTTP, the browser.

The modules holding fixtures are registered once for the whole suite by `pytest_plugins` in
tests/conftest.py, so a session-scoped fixture (the model server) is started once, whichever folders run.
Test modules import helpers from here, never from another test folder."""
