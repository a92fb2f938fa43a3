"""Security tests: one module per finding, named after what it protects (issue 12), and the stateful
governance invariant. The personas, the model server and the workers come from tests/support."""
