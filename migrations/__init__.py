"""Alembic migrations: DDL only, hand-written, no application imports."""
