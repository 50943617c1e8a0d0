"""The service: the HTTP edge (``http``) and the ``engram`` command with its tools (``ops``)."""
