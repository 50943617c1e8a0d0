"""The background edge: a dramatiq worker that embeds pending items, fills spaces and sweeps."""
