"""Security tests: one module per finding, named after what it protects (issue 12).

The API and UI personas and the real model server and workers come from the existing fixtures."""

from tests.api.conftest import *  # noqa: F403  (personas and fixtures)
from tests.ui.conftest import *  # noqa: F403
