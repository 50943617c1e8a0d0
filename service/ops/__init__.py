"""The ``engram`` command: run everything, migrate, back up, ingest folders, report status."""
