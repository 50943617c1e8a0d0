"""The suite's fixtures come from the ``support.fixtures`` plugin (tests/support/)."""

pytest_plugins = ["support.fixtures"]
