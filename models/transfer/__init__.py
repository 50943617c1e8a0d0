"""A user's data moved as NDJSON: the export format, the export, and checked, idempotent imports."""
