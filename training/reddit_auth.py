"""A praw client for the scraper, and prawcore's exceptions turned into errors people can act on.

praw talks to any base URL (``TTT_REDDIT_URL`` or ``base_url``), which the tests use to run real
praw against a local fake Reddit. prawcore's own retries (two, with 0-4 s sleeps, on 5xx and
network errors) are switched off in the clients built here so that the scraper's backoff is the
only retry layer: otherwise each of its attempts would hide three requests and up to 6 s.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from training.credentials import RedditCredentials
from training.errors import RedditError

BASE_URL_ENV = "TTT_REDDIT_URL"
# What praw raises when a reply is valid JSON of the wrong shape (it indexes and unpacks freely).
_SHAPE_ERRORS = (KeyError, IndexError, TypeError, ValueError, AttributeError, AssertionError)


def make_reddit(credentials: RedditCredentials, base_url: str | None = None) -> Any:
    """A read-only ``praw.Reddit`` (script login when a username and password are set).

    Args:
        credentials: client id and secret, user agent, optional username and password.
        base_url: serve both the OAuth API and the token endpoint from here (tests); defaults
            to ``$TTT_REDDIT_URL``, else Reddit itself.

    """
    import praw

    kwargs: dict[str, Any] = {
        "client_id": credentials.client_id,
        "client_secret": credentials.client_secret,
        "user_agent": credentials.user_agent,
        "check_for_updates": False,  # no PyPI request at start
        "check_for_async": False,
    }
    if credentials.username and credentials.password:
        kwargs.update(username=credentials.username, password=credentials.password)
    base = base_url or os.environ.get(BASE_URL_ENV)
    if base:
        kwargs.update(oauth_url=base.rstrip("/"), reddit_url=base.rstrip("/"))
    reddit = praw.Reddit(**kwargs)
    _disable_prawcore_retries(reddit)
    return reddit


def _disable_prawcore_retries(reddit: Any) -> None:
    # Private attributes: if a prawcore release renames them this does nothing and scrapes are
    # merely slower to give up, never wrong.
    from prawcore.sessions import FiniteRetryStrategy

    @dataclass(frozen=True)
    class NoRetry(FiniteRetryStrategy):
        retries: int = 0

        def _sleep_seconds(self) -> float | None:
            return None

    for name in ("_read_only_core", "_authorized_core"):
        core = getattr(reddit, name, None)
        if core is not None and hasattr(core, "_retry_strategy_class"):
            core._retry_strategy_class = NoRetry


@dataclass(frozen=True)
class Failure:
    """A prawcore/praw exception, understood: the error to raise and whether to retry first."""

    error: RedditError
    retry: bool = False
    retry_after: float | None = None  # seconds the server asked for (429 Retry-After)
    skip_thread: bool = False  # the one submission is gone; the scrape goes on


def understand(err: BaseException, *, subreddit: str, stage: str) -> Failure | None:
    """Translate an exception raised by praw while fetching ``stage`` ("listing" or "thread").

    Returns None for exceptions that are not Reddit's (bugs stay bugs).
    """
    import praw.exceptions
    import prawcore

    def fail(code: str, message: str, hint: str, **kw: Any) -> Failure:
        return Failure(RedditError(message, hint=hint, code=code), **kw)

    if isinstance(err, prawcore.RequestException):
        return fail("reddit_unreachable", "Reddit could not be reached (network error).",
                    "Check the internet connection, then run the scrape again; it resumes.",
                    retry=True)
    if isinstance(err, prawcore.OAuthException):
        return _auth_failed(fail, 401)
    if isinstance(err, prawcore.BadJSON):
        return fail("reddit_bad_response", "Reddit sent a reply that is not valid JSON.",
                    "Try again later; the scrape resumes where it stopped.", retry=True)
    if isinstance(err, prawcore.ResponseException):
        return _from_status(err, fail, subreddit=subreddit, stage=stage)
    if isinstance(err, (praw.exceptions.PRAWException, *_SHAPE_ERRORS)):
        # praw met a reply of an unexpected shape (valid JSON, wrong fields); the original
        # stays chained as the cause.
        return fail("reddit_bad_response", "Reddit sent a reply of an unexpected shape.",
                    "Try again later; the scrape resumes where it stopped.")
    return None


def _from_status(err: Any, fail: Any, *, subreddit: str, stage: str) -> Failure:
    import prawcore

    response = err.response
    status = response.status_code
    on_token = "/api/v1/access_token" in str(getattr(response, "url", "") or "")
    if isinstance(err, prawcore.TooManyRequests) or status == 429:
        return fail("reddit_rate_limited", "Reddit is limiting requests (HTTP 429).",
                    "Wait a few minutes, then run the scrape again; it resumes.",
                    retry=True, retry_after=_seconds(response.headers.get("retry-after")))
    if status >= 500:
        return fail("reddit_server_error", f"Reddit's servers failed (HTTP {status}).",
                    "Reddit may be down; try again later, the scrape resumes.", retry=True)
    if on_token or status == 401 or isinstance(err, (prawcore.InvalidToken,
                                                      prawcore.InsufficientScope)):
        return _auth_failed(fail, status)
    if isinstance(err, prawcore.Redirect) or status == 404:
        if stage == "thread":
            return fail("reddit_thread_missing", "A submission disappeared while scraping.",
                        "", skip_thread=True)
        return fail("subreddit_not_found", f"The subreddit r/{subreddit} does not exist "
                    "(or was banned).", "Check the name's spelling (without 'r/').")
    if status == 403:
        return fail("reddit_forbidden", f"Reddit refused access to r/{subreddit} (HTTP 403).",
                    "The subreddit is probably private or quarantined; choose a public one.")
    return fail("reddit_bad_response", f"Reddit answered with an unexpected HTTP {status}.",
                "Try again later; if it persists, report it with the subreddit name.")


def _auth_failed(fail: Any, status: int) -> Failure:
    return fail("reddit_auth_failed",
                f"Reddit rejected the app's credentials (HTTP {status}).",
                "Check the client id and secret of your 'script' app at "
                "https://www.reddit.com/prefs/apps and set them again (REDDIT_CLIENT_ID, "
                "REDDIT_CLIENT_SECRET or the keyring).")


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
