"""Embedding spaces and the providers that fill them: the local model and OpenAI-compatible
servers.
"""
