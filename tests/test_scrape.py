"""Stage 1, scrape: real praw over real HTTP against a fake Reddit (tests/fake_reddit.py)."""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path

import keyring
import pytest

from engine.cancel import CancelToken
from tests.fake_reddit import SAMPLE_THREADS, FakeReddit, flat_threads
from tests.keyrings import MemoryKeyring
from training import credentials as creds_mod
from training.credentials import (
    RedditCredentials,
    clear_reddit_credentials,
    find_reddit_credentials,
    reddit_credentials,
    store_reddit_credentials,
)
from training.errors import TrainingError
from training.reddit_auth import make_reddit
from training.scrape import existing_thread_ids, scrape

SECRET = "s3cr3t-DO-NOT-LEAK-7f1d"
CREDS = RedditCredentials(client_id="test-client-id", client_secret=SECRET)
TOP_ORDER = ["abc101", "abc102", "abc105", "abc103", "abc104"]  # by score


@pytest.fixture
def server():
    with FakeReddit(client_secret=SECRET) as srv:
        yield srv


@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    """No keyring entries, no env vars, no praw.ini anywhere praw looks."""
    import praw.config

    backend = MemoryKeyring()
    previous = keyring.get_keyring()
    keyring.set_keyring(backend)
    for var in [*creds_mod.ENV_VARS.values(), "praw_client_id", "praw_client_secret",
                "praw_site", "APPDATA", "TTT_REDDIT_URL"]:
        monkeypatch.delenv(var, raising=False)
    config_home = tmp_path / "config"
    config_home.mkdir()
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config_home))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(praw.config.Config, "CONFIG", None)  # re-read praw.ini files
    yield backend
    keyring.set_keyring(previous)


def run(server: FakeReddit, out: Path, **kwargs):
    kwargs.setdefault("backoff_s", 0.01)
    kwargs.setdefault("max_retries", 2)
    return scrape("berkeley", out, reddit=make_reddit(CREDS, server.url), **kwargs)


def read_threads(out: Path) -> list[dict]:
    text = (out / "raw" / "threads.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


def read_state(out: Path) -> dict:
    return json.loads((out / "raw" / "scrape_state.json").read_text(encoding="utf-8"))


def expected(ids=TOP_ORDER) -> list[dict]:
    by_id = {t["id"]: t for t in flat_threads()}
    return [by_id[i] for i in ids]


def test_listing_and_comment_trees_in_the_documented_shape(server, tmp_path):
    calls = []

    def progress(done, total, title):
        # Each thread is on disk (flushed) before its progress report.
        lines = (tmp_path / "raw" / "threads.jsonl").read_bytes().count(b"\n")
        calls.append((done, total, title, lines))

    result = run(server, tmp_path, progress=progress)
    threads = read_threads(tmp_path)
    assert threads == expected()
    assert (result.written, result.skipped, result.total, result.complete) == (5, 0, 5, True)
    assert result.comments == sum(len(t["comments"]) for t in threads)
    # Pagination: 2 per page, so three listing requests with `after`.
    assert server.count("GET /r/berkeley/top") == 3
    assert [(c[0], c[1], c[3]) for c in calls] == [(i, 100, i) for i in range(1, 6)]
    assert calls[0][2] == "Best place to study on campus during finals?"
    for thread in threads:
        assert set(thread) == {"id", "subreddit", "title", "selftext", "author", "score",
                               "created_utc", "permalink", "comments"}
        assert thread["subreddit"] == "berkeley" and isinstance(thread["created_utc"], float)
        seen = {f"t3_{thread['id']}"}
        for comment in thread["comments"]:
            assert set(comment) == {"id", "parent_id", "author", "body", "score",
                                    "created_utc"}
            assert comment["parent_id"] in seen  # parents come first
            seen.add(f"t1_{comment['id']}")
    deleted = next(c for c in threads[0]["comments"] if c["id"] == "c101j")
    assert deleted["author"] is None and deleted["body"] == "[deleted]"
    deep = next(c for c in threads[0]["comments"] if c["id"] == "c101e")
    assert deep["parent_id"] == "t1_c101d"
    state = read_state(tmp_path)
    assert state["done"] == TOP_ORDER and state["complete"] is True
    assert state["subreddit"] == "berkeley" and state["cursor"]["position"] == 5


def test_more_comments_are_expanded_within_the_limit(server, tmp_path):
    # abc101 has two "more" links: 4 hidden top-level comments and 1 hidden reply.
    run(server, tmp_path / "one", limit=1, more_expand_limit=1)
    ids = {c["id"] for c in read_threads(tmp_path / "one")[0]["comments"]}
    assert server.count("POST /api/morechildren") == 1
    assert {"c101l", "c101m", "c101n", "c101o"} <= ids  # the bigger one was expanded
    assert "c101h" not in ids
    run(server, tmp_path / "none", limit=1, more_expand_limit=0)
    ids = {c["id"] for c in read_threads(tmp_path / "none")[0]["comments"]}
    assert server.count("POST /api/morechildren") == 1
    assert ids.isdisjoint({"c101h", "c101l", "c101o"})
    run(server, tmp_path / "all", limit=1)
    assert read_threads(tmp_path / "all") == expected(["abc101"])


def test_comment_limit_keeps_the_first_comments_breadth_first(server, tmp_path):
    run(server, tmp_path, limit=1, comment_limit=4)
    comments = read_threads(tmp_path)[0]["comments"]
    assert comments == expected(["abc101"])[0]["comments"][:4]


def test_rate_limit_429_is_retried_after_the_servers_wait(server, tmp_path):
    server.add_fault("/r/berkeley/top", 429, headers={"retry-after": "0.3"})
    result = run(server, tmp_path, backoff_s=0.0, limit=2)
    assert result.written == 2
    listing = [t for t, r in zip(server.times, server.requests, strict=True)
               if r == "GET /r/berkeley/top"]
    assert len(listing) == 2 and listing[1] - listing[0] >= 0.3
    assert read_threads(tmp_path) == expected(TOP_ORDER[:2])


def test_rate_limit_that_never_ends_is_a_clear_error(server, tmp_path):
    server.add_fault("/r/", 429, times=None)
    with pytest.raises(TrainingError) as caught:
        run(server, tmp_path, max_retries=1)
    assert caught.value.code == "reddit_rate_limited"
    assert server.count("GET /r/berkeley/top") == 2
    assert "again" in caught.value.hint


def test_server_error_mid_scrape_keeps_threads_and_a_rerun_resumes(server, tmp_path):
    server.fail_after_threads(2, status=500)
    with pytest.raises(TrainingError) as caught:
        run(server, tmp_path / "run")
    assert caught.value.code == "reddit_server_error"
    assert "resume" in caught.value.hint
    assert read_threads(tmp_path / "run") == expected(TOP_ORDER[:2])
    assert read_state(tmp_path / "run")["done"] == TOP_ORDER[:2]
    assert server.count("GET /comments/abc105") == 3  # one try and two retries

    server.clear_faults()
    result = run(server, tmp_path / "run")
    assert (result.written, result.skipped, result.total) == (3, 2, 5)
    run(server, tmp_path / "whole")
    resumed = (tmp_path / "run" / "raw" / "threads.jsonl").read_bytes()
    assert resumed == (tmp_path / "whole" / "raw" / "threads.jsonl").read_bytes()
    assert read_state(tmp_path / "run")["done"] == TOP_ORDER
    assert server.count("GET /comments/abc101") == 2  # once per run from scratch, not resumed


def test_truncated_last_line_is_repaired_on_resume(server, tmp_path):
    run(server, tmp_path, limit=3)
    path = tmp_path / "raw" / "threads.jsonl"
    data = path.read_bytes()
    path.write_bytes(data[:-40])  # killed while writing the third thread
    assert existing_thread_ids(path) == TOP_ORDER[:2]
    assert path.read_bytes() == data[: data.rindex(b"\n", 0, len(data) - 1) + 1]
    result = run(server, tmp_path)
    assert (result.written, result.skipped) == (3, 2)
    assert read_threads(tmp_path) == expected()


def test_a_damaged_line_before_the_end_is_an_error(tmp_path):
    path = tmp_path / "threads.jsonl"
    path.write_text('{"id": "a"}\nnot json\n{"id": "b"}\n')
    with pytest.raises(TrainingError) as caught:
        existing_thread_ids(path)
    assert caught.value.code == "scrape_file_damaged" and "Line 2" in caught.value.message


def test_cancel_stops_cleanly_between_threads(server, tmp_path):
    cancel = CancelToken()
    result = run(server, tmp_path, cancel=cancel, progress=lambda *a: cancel.cancel())
    assert result.cancelled and not result.complete and result.written == 1
    assert read_threads(tmp_path) == expected(TOP_ORDER[:1])
    assert read_state(tmp_path)["done"] == TOP_ORDER[:1]


def test_wrong_client_secret_is_reddit_auth_failed(tmp_path):
    with FakeReddit(client_secret="another-secret") as srv, pytest.raises(TrainingError) as e:
        run(srv, tmp_path)
    assert e.value.code == "reddit_auth_failed"
    assert "REDDIT_CLIENT_SECRET" in e.value.hint and SECRET not in str(e.value)


@pytest.mark.parametrize(("path", "status", "code"), [
    ("/api/v1/access_token", 401, "reddit_auth_failed"),
    ("/r/berkeley/top", 401, "reddit_auth_failed"),
    ("/r/berkeley/top", 403, "reddit_forbidden"),
    ("/api/v1/access_token", 403, "reddit_auth_failed"),
    ("/r/berkeley/top", 404, "subreddit_not_found"),
])
def test_refusals_have_specific_codes(server, tmp_path, path, status, code):
    server.add_fault(path, status, times=None)
    with pytest.raises(TrainingError) as caught:
        run(server, tmp_path)
    assert caught.value.code == code
    assert caught.value.hint
    assert server.count(f"GET {path}") + server.count(f"POST {path}") == 1  # no retries
    assert not (tmp_path / "raw" / "threads.jsonl").read_bytes()


def test_missing_subreddit_redirect_is_subreddit_not_found(server, tmp_path):
    with pytest.raises(TrainingError) as caught:
        scrape("r/nosuchsubxyz", tmp_path, reddit=make_reddit(CREDS, server.url))
    assert caught.value.code == "subreddit_not_found"
    assert "nosuchsubxyz" in caught.value.message


@pytest.mark.parametrize(("path", "body", "tries"), [
    ("/comments/", b'[{"kind": "Listing", "data": {', 2),  # cut short: retried once
    ("/r/", b'{"kind": "Listing", "data": {"children": "oops"}}', 1),  # wrong shape
    ("/comments/", b'{"unexpected": true}', 1),
    ("/api/morechildren", b'{"json": {}}', 1),
])
def test_malformed_json_is_reddit_bad_response(server, tmp_path, path, body, tries):
    server.add_fault(path, 200, times=None, body=body)
    with pytest.raises(TrainingError) as caught:
        run(server, tmp_path, max_retries=1)
    assert caught.value.code == "reddit_bad_response"
    assert server.count(f"GET {path}") + server.count(f"POST {path}") == tries


def test_unreachable_reddit(tmp_path):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    reddit = make_reddit(CREDS, f"http://127.0.0.1:{port}")
    with pytest.raises(TrainingError) as caught:
        scrape("berkeley", tmp_path, reddit=reddit, max_retries=1, backoff_s=0.01)
    assert caught.value.code == "reddit_unreachable"


def test_bad_options_are_refused_before_any_request(tmp_path):
    with pytest.raises(TrainingError) as caught:
        scrape("no spaces allowed", tmp_path, sort="best", reddit=object())
    assert caught.value.code == "scrape_options_invalid"
    assert "subreddit name" in caught.value.message and "sort" in caught.value.message


def test_credentials_from_the_environment(server, tmp_path, no_credentials, monkeypatch):
    monkeypatch.setenv("REDDIT_CLIENT_ID", "test-client-id")
    monkeypatch.setenv("REDDIT_CLIENT_SECRET", SECRET)
    monkeypatch.setenv("TTT_REDDIT_URL", server.url)
    assert reddit_credentials().source == "environment"
    result = scrape("berkeley", tmp_path, limit=1)
    assert result.written == 1


def test_credentials_from_the_keyring_come_first(server, tmp_path, no_credentials,
                                                monkeypatch):
    monkeypatch.setenv("REDDIT_CLIENT_ID", "env-id")
    monkeypatch.setenv("REDDIT_CLIENT_SECRET", "env-secret")
    monkeypatch.setenv("TTT_REDDIT_URL", server.url)
    store_reddit_credentials("test-client-id", SECRET, user_agent="ttt-test/1.0")
    assert no_credentials.store[("talk-to-transformers", "reddit_client_secret")] == SECRET
    found = reddit_credentials()
    assert (found.source, found.user_agent) == ("keyring", "ttt-test/1.0")
    assert SECRET not in repr(found)
    assert scrape("berkeley", tmp_path, limit=1).written == 1
    assert clear_reddit_credentials() is True
    assert reddit_credentials().source == "environment"
    assert clear_reddit_credentials() is False


def test_credentials_from_a_praw_ini_site(no_credentials, tmp_path):
    (tmp_path / "config" / "praw.ini").write_text(
        "[talk-to-transformers]\nclient_id=ini-id\nclient_secret=ini-secret\n")
    found = find_reddit_credentials()
    assert (found.client_id, found.client_secret) == ("ini-id", "ini-secret")
    assert found.source == "praw.ini [talk-to-transformers]"


def test_no_credentials_says_how_to_set_them(no_credentials, tmp_path):
    assert find_reddit_credentials() is None
    with pytest.raises(TrainingError) as caught:
        scrape("berkeley", tmp_path)
    assert caught.value.code == "reddit_credentials_missing"
    hint = caught.value.hint
    assert "REDDIT_CLIENT_ID" in hint and "REDDIT_CLIENT_SECRET" in hint
    assert "praw.ini" in hint


def test_no_keyring_backend_to_store_in(no_credentials):
    from keyring.backends import fail

    keyring.set_keyring(fail.Keyring())
    with pytest.raises(TrainingError) as caught:
        store_reddit_credentials("id", SECRET)
    assert caught.value.code == "keyring_unavailable"
    assert "REDDIT_CLIENT_ID" in caught.value.hint


def test_the_secret_never_reaches_files_logs_or_output(server, tmp_path, no_credentials,
                                                      monkeypatch, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("TTT_REDDIT_URL", server.url)
    store_reddit_credentials("test-client-id", SECRET)
    server.add_fault("/comments/", 503, times=1)  # a retry, so warnings get logged too
    scrape("berkeley", tmp_path, backoff_s=0.01)
    with FakeReddit(client_secret="other") as srv, pytest.raises(TrainingError) as caught:
        scrape("berkeley", tmp_path / "denied", reddit=make_reddit(CREDS, srv.url))
    assert "Retry 1 of 5" in caplog.text  # the logs were captured
    out = capfd.readouterr()
    assert SECRET not in caplog.text + out.out + out.err + str(caught.value)
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    assert len(read_threads(tmp_path)) == len(SAMPLE_THREADS)


def test_a_submission_gone_since_the_listing_is_skipped(server, tmp_path):
    server.add_fault("/comments/abc102", 404, times=None)
    result = run(server, tmp_path)
    assert (result.written, result.complete) == (4, True)
    assert [t["id"] for t in read_threads(tmp_path)] == [i for i in TOP_ORDER if i != "abc102"]


def test_new_and_hot_listings(server, tmp_path):
    run(server, tmp_path / "new", sort="new", limit=3)
    assert [t["id"] for t in read_threads(tmp_path / "new")] == ["abc105", "abc104", "abc103"]
    run(server, tmp_path / "hot", sort="hot", limit=2)
    assert [t["id"] for t in read_threads(tmp_path / "hot")] == ["abc101", "abc102"]
    assert server.count("GET /r/berkeley/new") == 2 and server.count("GET /r/berkeley/hot") == 1
