"""Retrieval and side-effecting tools the graph nodes call."""
