"""Embedding work in Postgres (the outbox, space fills, status) and the wake-ups that announce
it.
"""
