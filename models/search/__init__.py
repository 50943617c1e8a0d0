"""Per-user search: the query, the planner and its SQL, re-ranking, filters, and context for a
prompt.
"""
