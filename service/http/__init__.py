"""The HTTP edge: the Litestar app, guards, errors, observability, rate limits and the routes."""
