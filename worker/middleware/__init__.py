"""dramatiq middleware of the worker: one file each."""
