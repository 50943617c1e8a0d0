"""The suite's fixtures (tests/support/fixtures.py): real servers, a real worker, the model."""

pytest_plugins = ["support.fixtures"]
