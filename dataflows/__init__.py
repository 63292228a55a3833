"""Bytewax flows and their Redis connectors. Bytewax stays behind this package."""
