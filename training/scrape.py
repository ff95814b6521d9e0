"""Stage 1: a subreddit's threads (submission + flat comment list) into ``raw/threads.jsonl``.

Each thread is appended, flushed and fsync'd as soon as it is complete, and its id recorded in
``raw/scrape_state.json`` (written atomically), so a killed scrape loses at most the thread in
progress. Running the same scrape again reads the ids already in ``threads.jsonl`` (dropping a
half-written last line) and skips them: a resumed scrape has no duplicates. Rate limits, server
errors and network faults are retried with exponential backoff (the server's Retry-After wins);
then a :class:`training.errors.RedditError` says what went wrong and what to do.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from engine.cancel import CancelToken
from training.credentials import RedditCredentials, reddit_credentials
from training.errors import TrainingError
from training.reddit_auth import make_reddit, understand

log = logging.getLogger(__name__)

THREADS_FILE = "threads.jsonl"
STATE_FILE = "scrape_state.json"
SORTS = ("top", "hot", "new")
TIME_FILTERS = ("all", "year", "month", "week", "day", "hour")  # only "top" uses one
COMMENT_SORT = "top"  # best replies first, so comment_limit keeps the best ones
MAX_WAIT_S = 900.0  # longest single backoff, even if the server asks for more
_NAME = re.compile(r"^[A-Za-z0-9_]{2,21}$")  # Reddit's subreddit name rule
_SKIP = object()
T = TypeVar("T")

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class ScrapeResult:
    """What one run of :func:`scrape` did."""

    path: Path  # raw/threads.jsonl
    written: int  # threads this run added
    skipped: int  # listed threads already on disk from an earlier run
    comments: int  # comments in the threads this run added
    total: int  # threads in the file now
    complete: bool  # the listing was read to its end (or to ``limit``)
    cancelled: bool = False


class _Cancelled(Exception):
    pass


def scrape(
    subreddit: str,
    out_dir: Path | str,
    *,
    sort: str = "top",
    time_filter: str = "all",
    limit: int = 100,
    comment_limit: int = 500,
    more_expand_limit: int | None = 32,
    credentials: RedditCredentials | None = None,
    reddit: Any = None,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
    max_retries: int = 5,
    backoff_s: float = 2.0,
) -> ScrapeResult:
    """Scrape up to ``limit`` threads of ``subreddit`` into ``out_dir/raw/threads.jsonl``.

    Args:
        subreddit: name, with or without a leading ``r/``.
        out_dir: the run folder; ``raw/`` is created in it.
        sort: listing order, "top", "hot" or "new".
        time_filter: period of a "top" listing ("all", "year", ..., "hour").
        limit: listing entries to visit (threads already on disk count, and are skipped).
        comment_limit: most comments kept per thread (breadth-first, so parents come first).
        more_expand_limit: most "load more comments" links expanded per thread (one request
            each); None expands them all, 0 none.
        credentials: used to build the client when ``reddit`` is not given; default: the
            keyring, environment or praw.ini (:func:`training.credentials.reddit_credentials`).
        reddit: a ready ``praw.Reddit`` to use as is (its own retry settings apply).
        progress: called as ``progress(done, limit, title)`` after each listed thread.
        cancel: stops the scrape cleanly between threads (and during backoff waits).
        max_retries: retries of one request on 429, 5xx, network errors and bad JSON.
        backoff_s: first wait before a retry; doubles each time.

    Raises:
        TrainingError: bad options, ``reddit_credentials_missing``, a damaged threads file, or
            a :class:`~training.errors.RedditError` (``reddit_rate_limited``,
            ``reddit_server_error``, ``reddit_unreachable``, ``reddit_auth_failed``,
            ``reddit_forbidden``, ``subreddit_not_found``, ``reddit_bad_response``).

    """
    name = _check_options(subreddit, sort, time_filter, limit, comment_limit)
    raw = Path(out_dir) / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    path = raw / THREADS_FILE
    done = existing_thread_ids(path)
    seen = set(done)
    state = {"version": 1, "subreddit": name, "sort": sort, "time_filter": time_filter,
             "limit": limit, "comment_limit": comment_limit,
             "more_expand_limit": more_expand_limit, "done": done, "cursor": None,
             "complete": False}
    if reddit is None:
        creds = credentials or reddit_credentials()
        log.info("Reddit credentials from %s", creds.source)  # the source only, never values
        reddit = make_reddit(creds)
    retry = _Retrier(name, max_retries, backoff_s, cancel)
    listing = _listing(reddit, name, sort, time_filter, limit)
    written = skipped = comments = position = 0
    cancelled = False
    with open(path, "ab") as out:
        try:
            while True:
                if cancel is not None and cancel.cancelled:
                    raise _Cancelled
                item = retry.call(lambda: next(listing, None), stage="listing")
                if item is None:
                    state["complete"] = True
                    break
                position += 1
                state["cursor"] = {"position": position, "after": f"t3_{item.id}"}
                if item.id in seen:
                    skipped += 1
                else:
                    fetch = partial(_fetch_thread, reddit, item.id, comment_limit,
                                    more_expand_limit)
                    record = retry.call(fetch, stage="thread")
                    if record is not _SKIP:
                        _append(out, record)
                        seen.add(item.id)
                        done.append(item.id)
                        written += 1
                        comments += len(record["comments"])
                    _write_json_atomic(raw / STATE_FILE, state)
                if progress is not None:
                    progress(position, limit, str(item.title))
        except _Cancelled:
            cancelled = True
        finally:
            _write_json_atomic(raw / STATE_FILE, state)
    log.info("Scraped r/%s: %d new threads, %d already on disk", name, written, skipped)
    return ScrapeResult(path=path, written=written, skipped=skipped, comments=comments,
                        total=len(done), complete=bool(state["complete"]), cancelled=cancelled)


def existing_thread_ids(path: Path) -> list[str]:
    """Ids of the threads in a ``threads.jsonl``, in order; a half-written last line is cut off.

    Raises:
        TrainingError: code ``scrape_file_damaged`` when a line other than the last is broken.

    """
    if not path.exists():
        return []
    ids: list[str] = []
    good_end = 0  # byte offset just past the last complete, valid line
    broken: int | None = None  # line number of a broken line
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            if broken is not None:
                if line.strip():
                    raise TrainingError(
                        f"Line {broken} of {path} is damaged (not one JSON object).",
                        hint="Delete the file to scrape again from the start.",
                        code="scrape_file_damaged")
                continue
            if not line.strip():
                good_end += len(line)
                continue
            try:
                if not line.endswith(b"\n"):
                    raise ValueError("no newline: the write was cut short")
                ids.append(str(json.loads(line)["id"]))
            except (ValueError, KeyError, TypeError):
                broken = number
                continue
            good_end += len(line)
    if broken is not None:
        log.warning("Dropping the half-written last line of %s; it is scraped again", path)
        with open(path, "r+b") as f:
            f.truncate(good_end)
            os.fsync(f.fileno())
    return ids


def _check_options(subreddit: str, sort: str, time_filter: str, limit: int,
                   comment_limit: int) -> str:
    name = subreddit.strip().strip("/")
    for prefix in ("r/", "R/"):
        name = name.removeprefix(prefix)
    problems = []
    if not _NAME.match(name):
        problems.append(f"'{subreddit}' is not a subreddit name (2-21 letters, digits or _)")
    if sort not in SORTS:
        problems.append(f"sort must be one of {', '.join(SORTS)}")
    if time_filter not in TIME_FILTERS:
        problems.append(f"time filter must be one of {', '.join(TIME_FILTERS)}")
    if limit < 1 or comment_limit < 1:
        problems.append("limit and comment limit must be at least 1")
    if problems:
        raise TrainingError("; ".join(problems).capitalize() + ".",
                            hint="Fix the scrape options and run it again.",
                            code="scrape_options_invalid")
    return name


def _listing(reddit: Any, name: str, sort: str, time_filter: str, limit: int) -> Any:
    subreddit = reddit.subreddit(name)
    if sort == "top":
        return subreddit.top(time_filter=time_filter, limit=limit)
    return getattr(subreddit, sort)(limit=limit)


def _fetch_thread(reddit: Any, submission_id: str, comment_limit: int,
                  more_expand_limit: int | None) -> dict[str, Any]:
    """One thread in the raw format; a fresh Submission, so a retry starts clean."""
    from praw.models import Comment

    submission = reddit.submission(id=submission_id)
    submission.comment_sort = COMMENT_SORT
    submission.comment_limit = comment_limit
    forest = submission.comments  # fetched here: GET /comments/ID
    forest.replace_more(limit=more_expand_limit)
    flat = [c for c in forest.list() if isinstance(c, Comment)][:comment_limit]
    return {
        "id": submission.id,
        "subreddit": str(submission.subreddit.display_name),
        "title": str(submission.title),
        "selftext": str(submission.selftext or ""),
        "author": _author(submission),
        "score": int(submission.score),
        "created_utc": float(submission.created_utc),
        "permalink": str(submission.permalink),
        "comments": [
            {"id": c.id, "parent_id": c.parent_id, "author": _author(c), "body": str(c.body),
             "score": int(c.score), "created_utc": float(c.created_utc)}
            for c in flat
        ],
    }


def _author(thing: Any) -> str | None:
    author = thing.author  # praw gives None for "[deleted]"
    return None if author is None else str(author.name)


def _append(out: Any, record: dict[str, Any]) -> None:
    out.write(json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n")
    out.flush()
    os.fsync(out.fileno())


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    from engine.fsutil import atomic_write_text

    atomic_write_text(path, json.dumps({**data, "updated_utc": time.time()}, indent=1))


class _Retrier:
    """Runs one request, retrying what is worth retrying with exponential backoff."""

    def __init__(self, subreddit: str, max_retries: int, backoff_s: float,
                 cancel: CancelToken | None):
        self.subreddit = subreddit
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.cancel = cancel

    def call(self, fn: Callable[[], T], *, stage: str) -> T | Any:
        attempt = 0
        while True:
            try:
                return fn()
            except Exception as err:
                failure = understand(err, subreddit=self.subreddit, stage=stage)
                if failure is None:
                    raise
                if failure.skip_thread:
                    log.warning("%s Skipping it.", failure.error.message)
                    return _SKIP
                if not failure.retry or attempt >= self.max_retries:
                    raise failure.error from err
                wait = failure.retry_after
                if wait is None:
                    wait = self.backoff_s * 2**attempt
                wait = min(wait, MAX_WAIT_S)
                attempt += 1
                log.warning("%s Retry %d of %d in %.1f s.", failure.error.message, attempt,
                            self.max_retries, wait)
                self._sleep(wait)

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if self.cancel is not None and self.cancel.cancelled:
                raise _Cancelled
            time.sleep(min(left, 0.1))
        if self.cancel is not None and self.cancel.cancelled:
            raise _Cancelled
