"""Repositories: plain async functions that take a connection and hold the SQL of each kind of
row.
"""
