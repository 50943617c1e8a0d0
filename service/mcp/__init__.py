"""The MCP edge: a user's memory as tools an agent calls (Model Context Protocol), served by
the API at ``/mcp`` and bound to the caller's Engram key."""
