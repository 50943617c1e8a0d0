"""The shared core of both edges: domain types, errors, settings, and the concepts below."""
