"""Personas and their models: validation, catalogue, pulling, loading."""
