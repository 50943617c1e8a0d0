"""One controller per resource; each route is thin and calls the core."""
