"""Turning uploaded text into chunks that fit a model: extraction, token counting, chunking."""
