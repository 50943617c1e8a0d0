"""Reaching PostgreSQL: the pool, transactions scoped to one user, one-write batches, rows, the
schema.
"""
