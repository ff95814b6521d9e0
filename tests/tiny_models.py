"""Tiny random models of the real classes, for tests (built by the engine's own builder)."""

from engine.models.tiny import CORPUS, build_tiny_dialogpt

__all__ = ["CORPUS", "build_tiny_dialogpt"]
