"""Errors of the training stages (each a :class:`engine.errors.TalkError` with a stable code)."""

from __future__ import annotations

from engine.errors import TalkError


class TrainingError(TalkError):
    """A training stage failed or was given an invalid configuration."""

    code = "training_failed"


class RedditError(TrainingError):
    """Reddit could not be scraped; ``code`` tells why (auth, unreachable, rate limit...)."""

    code = "reddit_failed"
