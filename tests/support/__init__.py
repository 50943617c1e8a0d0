"""What the tests share: fixtures (a pytest plugin), processes, API helpers, fakes."""
