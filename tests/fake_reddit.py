"""A local stand-in for Reddit's OAuth API: enough of it for real praw to scrape a subreddit.

Serves ``POST /api/v1/access_token``, ``GET /r/NAME/top|hot|new`` (Listings of t3 with ``after``
pagination, ``page_size`` a page), ``GET /comments/ID/`` (the two-listing array; a comment or the
submission with more than ``inline_children`` replies shows the rest behind a "more" object) and
``GET|POST /api/morechildren``. Faults are injected per path prefix (:meth:`FakeReddit.add_fault`).

``SAMPLE_THREADS`` (nested, r/berkeley) is realistic small data with junk the filter stage drops;
:func:`flat_threads` gives the same threads in the raw ``threads.jsonl`` shape that the scraper
writes, so later stages' tests can use them without a server (:func:`write_raw_threads`).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

SUBREDDIT = "berkeley"
ACCESS_TOKEN = "fake-access-token"
# Generous rate-limit headers: praw's limiter then never sleeps between requests.
RATE_HEADERS = {"x-ratelimit-remaining": "996.0", "x-ratelimit-used": "4",
                "x-ratelimit-reset": "300"}

_LONG_RANT = " ".join(
    ["Honestly the housing situation here is getting worse every single year and the "
     "university keeps admitting more students without building anything new."] * 10
)  # about 230 words

# Threads of r/berkeley, comments nested under "replies". author None is a deleted account.
SAMPLE_THREADS: list[dict[str, Any]] = [
    {
        "id": "abc101", "title": "Best place to study on campus during finals?",
        "selftext": "Moffitt is packed every night. Where do you all go?",
        "author": "oski_fan", "score": 250, "created_utc": 1700000000.0,
        "comments": [
            {"id": "c101a", "author": "moffitt_regular", "score": 45,
             "body": "Main Stacks, hands down. It's quiet and nobody can find you down there.",
             "replies": [
                 {"id": "c101b", "author": "quiet_reader", "score": 20,
                  "body": "Main Stacks is great until your phone has no signal for hours.",
                  "replies": [
                      {"id": "c101c", "author": "moffitt_regular", "score": 12,
                       "body": "That's the feature, not the bug. No signal means no scrolling.",
                       "replies": [
                           {"id": "c101d", "author": "quiet_reader", "score": 6,
                            "body": "Fair point. I'll try it this week and report back.",
                            "replies": [
                                {"id": "c101e", "author": "moffitt_regular", "score": 3,
                                 "body": "Good luck! Bring a sweater, it gets cold down there."},
                            ]},
                       ]},
                  ]},
                 {"id": "c101f", "author": "sather_sam", "score": 9,
                  "body": "Seconding this. The carrels on the bottom floor are the best."},
                 {"id": "c101g", "author": "the_the_guy", "score": 2,
                  "body": "I think the the the library closes at midnight though."},
                 {"id": "c101h", "author": "night_owl", "score": 4,
                  "body": "Doe is open late during finals week, so you can stay till 2."},
             ]},
            {"id": "c101i", "author": "AutoModerator", "score": 1,
             "body": "Reminder: check the pinned finals megathread.\n\n*I am a bot, and this "
                     "action was performed automatically.*"},
            {"id": "c101j", "author": None, "score": 3, "body": "[deleted]",
             "replies": [
                 {"id": "c101k", "author": "bayarea_native", "score": 8,
                  "body": "Whoever that was, they were right about the cafe by the library."},
             ]},
            {"id": "c101l", "author": "engineering_emma", "score": 30,
             "body": "The engineering library in Bechtel is underrated and has good outlets.",
             "replies": [
                 {"id": "c101m", "author": "oski_fan", "score": 11,
                  "body": "Oh nice, I didn't know non-engineers could study there.",
                  "replies": [
                      {"id": "c101n", "author": "engineering_emma", "score": 7,
                       "body": "Anyone can! Just be quiet and don't take the good tables."},
                  ]},
             ]},
            {"id": "c101o", "author": "some_bot", "score": 1,
             "body": "Beep boop. Here are the library hours for this week."},
        ],
    },
    {
        "id": "abc102", "title": "Cheap tacos near Telegraph?", "selftext": "",
        "author": "hungry_bear", "score": 180, "created_utc": 1700100000.0,
        "comments": [
            {"id": "c102a", "author": "taco_tuesday", "score": 25,
             "body": "The truck on Durant is cheap and the carnitas are amazing.",
             "replies": [
                 {"id": "c102b", "author": "hungry_bear", "score": 10,
                  "body": "Is it open on weekends too?",
                  "replies": [
                      {"id": "c102c", "author": "taco_tuesday", "score": 8,
                       "body": "Saturdays yes, Sundays they usually take the day off.",
                       "replies": [
                           {"id": "c102d", "author": "hungry_bear", "score": 4,
                            "body": "Perfect, I'm going this Saturday then. Thanks!"},
                       ]},
                  ]},
             ]},
            {"id": "c102e", "author": "link_poster", "score": 5,
             "body": "Check https://example.com/berkeley-food-guide for a full list."},
            {"id": "c102f", "author": "map_person", "score": 6,
             "body": "[This map](https://maps.example.com/tacos) has all of them marked."},
            {"id": "c102g", "author": "quoter", "score": 7,
             "body": "> The truck on Durant is cheap\n\nCan confirm, best value around."},
        ],
    },
    {
        "id": "abc103", "title": "Parking near campus is impossible",
        "selftext": "Circled for forty minutes today. Is there any trick?",
        "author": "commuter_carl", "score": 95, "created_utc": 1700200000.0,
        "comments": [
            {"id": "c103a", "author": "angry_driver", "score": -4,
             "body": "THIS IS THE WORST PARKING SITUATION IN THE ENTIRE STATE"},
            {"id": "c103b", "author": "bike_betty", "score": 33,
             "body": "Honestly just bike. It's faster than looking for a spot.",
             "replies": [
                 {"id": "c103c", "author": "commuter_carl", "score": 12,
                  "body": "I live in Oakland though, that's a long ride up the hill.",
                  "replies": [
                      {"id": "c103d", "author": "bike_betty", "score": 9,
                       "body": "Take BART to downtown and bike the last mile. Works great.",
                       "replies": [
                           {"id": "c103e", "author": "commuter_carl", "score": 5,
                            "body": "That's actually a smart idea. I'll try it on Monday."},
                       ]},
                  ]},
             ]},
            {"id": "c103f", "author": "housing_hater", "score": 2, "body": _LONG_RANT},
            {"id": "c103g", "author": "zero_score", "score": 0,
             "body": "Just park in the hills and walk down, nobody checks."},
        ],
    },
    {
        "id": "abc104", "title": "Lost my Cal ID near Sather Gate",
        "selftext": "Blue lanyard, name starts with J. Please message me if you found it!",
        "author": "jenny_j", "score": 40, "created_utc": 1700300000.0,
        "comments": [
            {"id": "c104a", "author": None, "score": 1, "body": "[removed]"},
            {"id": "c104b", "author": "helpful_hank", "score": 14,
             "body": "Check with the Cal ID office in the MLK building, people turn them in.",
             "replies": [
                 {"id": "c104c", "author": "jenny_j", "score": 6,
                  "body": "Thank you, I'll go there after my lecture today.",
                  "replies": [
                      {"id": "c104d", "author": "helpful_hank", "score": 3,
                       "body": "Hope you find it! They usually keep them for a month."},
                  ]},
             ]},
        ],
    },
    {
        "id": "abc105", "title": "Favorite hike in the Berkeley Hills?", "selftext": "",
        "author": "trail_tina", "score": 120, "created_utc": 1700400000.0,
        "comments": [
            {"id": "c105a", "author": "fire_trail_fred", "score": 28,
             "body": "The Fire Trail from the stadium up to the big C. Great views at sunset.",
             "replies": [
                 {"id": "c105b", "author": "trail_tina", "score": 10,
                  "body": "How long does it take to get to the top?",
                  "replies": [
                      {"id": "c105c", "author": "fire_trail_fred", "score": 8,
                       "body": "About forty minutes if you don't stop too often.",
                       "replies": [
                           {"id": "c105d", "author": "trail_tina", "score": 5,
                            "body": "Sounds doable. Is it steep the whole way?",
                            "replies": [
                                {"id": "c105e", "author": "fire_trail_fred", "score": 3,
                                 "body": "Mostly at the start, then it levels out nicely."},
                            ]},
                       ]},
                  ]},
             ]},
            {"id": "c105f", "author": "tilden_tom", "score": 15,
             "body": "Tilden Park has a lot of trails, and the little farm is fun too."},
        ],
    },
]


def flat_threads(threads: list[dict[str, Any]] = SAMPLE_THREADS,
                 subreddit: str = SUBREDDIT) -> list[dict[str, Any]]:
    """The threads as the scraper writes them (comments breadth-first, all "more" expanded)."""
    out = []
    for thread in threads:
        comments = []
        queue = [(c, f"t3_{thread['id']}") for c in thread["comments"]]
        while queue:
            comment, parent = queue.pop(0)
            comments.append({
                "id": comment["id"], "parent_id": parent, "author": comment["author"],
                "body": comment["body"], "score": comment["score"],
                "created_utc": _comment_time(thread, comment),
            })
            queue.extend((r, f"t1_{comment['id']}") for r in comment.get("replies", []))
        out.append({
            "id": thread["id"], "subreddit": subreddit, "title": thread["title"],
            "selftext": thread["selftext"], "author": thread["author"], "score": thread["score"],
            "created_utc": thread["created_utc"], "permalink": _permalink(thread, subreddit),
            "comments": comments,
        })
    return out


def write_raw_threads(run_dir: Path, threads: list[dict[str, Any]] | None = None) -> Path:
    """Write ``run_dir/raw/threads.jsonl`` (default: :func:`flat_threads`); returns its path."""
    path = Path(run_dir) / "raw" / "threads.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = flat_threads() if threads is None else threads
    path.write_text("".join(json.dumps(t, ensure_ascii=False) + "\n" for t in rows),
                    encoding="utf-8")
    return path


def _comment_time(thread: dict[str, Any], comment: dict[str, Any]) -> float:
    # A stable, distinct time per comment, minutes after the submission.
    number = int("".join(ch for ch in comment["id"] if ch.isdigit()) or 0) % 100
    return thread["created_utc"] + 60.0 * (1 + number) + (ord(comment["id"][-1]) - 96)


def _permalink(thread: dict[str, Any], subreddit: str) -> str:
    slug = "_".join(thread["title"].lower().split()[:4]).strip("?!")
    return f"/r/{subreddit}/comments/{thread['id']}/{slug}/"


@dataclass
class Fault:
    """Answer ``status`` (and ``body``) to requests whose path starts with ``path``.

    The first ``skip`` matching requests pass; then ``times`` are answered with the fault
    (None: all of them, until :meth:`FakeReddit.clear_faults`).
    """

    path: str
    status: int
    times: int | None = 1
    skip: int = 0
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


class FakeReddit(ThreadingHTTPServer):
    """Serves ``threads`` as ``r/subreddit``; ``requests`` logs "METHOD /path" of each call."""

    daemon_threads = True

    def __init__(self, threads: list[dict[str, Any]] = SAMPLE_THREADS, *,
                 subreddit: str = SUBREDDIT, client_id: str = "test-client-id",
                 client_secret: str = "test-client-secret", page_size: int = 2,
                 inline_children: int = 3):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.subreddit = subreddit
        self.threads = {t["id"]: t for t in threads}
        self.order = [t["id"] for t in threads]
        self.client_id = client_id
        self.client_secret = client_secret
        self.page_size = page_size
        self.inline_children = inline_children
        self.faults: list[Fault] = []
        self.requests: list[str] = []
        self.lock = threading.Lock()
        self.times: list[float] = []  # time.monotonic() of each request, beside ``requests``
        self.thread = threading.Thread(target=lambda: self.serve_forever(0.05),
                                       name="serve-fake-reddit", daemon=True)

    @property
    def url(self) -> str:
        """Base URL, for ``TTT_REDDIT_URL`` or ``make_reddit(base_url=...)``."""
        return f"http://127.0.0.1:{self.server_address[1]}"

    def add_fault(self, path: str, status: int, *, times: int | None = 1, skip: int = 0,
                  body: bytes | None = None, headers: dict[str, str] | None = None) -> Fault:
        """Inject a fault (see :class:`Fault`)."""
        fault = Fault(path, status, times, skip, body, dict(headers or {}))
        with self.lock:
            self.faults.append(fault)
        return fault

    def fail_after_threads(self, n: int, status: int = 500) -> Fault:
        """Let ``n`` submissions' comment pages through, then fail all of them."""
        return self.add_fault("/comments/", status, times=None, skip=n)

    def clear_faults(self) -> None:
        """Back to healthy."""
        with self.lock:
            self.faults.clear()

    def count(self, prefix: str) -> int:
        """How many requests so far had a "METHOD /path" starting with ``prefix``."""
        return sum(1 for r in self.requests if r.startswith(prefix))

    def take_fault(self, path: str) -> Fault | None:
        """The fault that answers this request, if any (consumes one use)."""
        with self.lock:
            for fault in self.faults:
                if not path.startswith(fault.path) or fault.times == 0:
                    continue
                if fault.skip > 0:
                    fault.skip -= 1
                    continue
                if fault.times is not None:
                    fault.times -= 1
                return fault
        return None

    def __enter__(self) -> FakeReddit:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
        self.thread.join()

    # --- Reddit's JSON shapes ---

    def ordered(self, sort: str) -> list[dict[str, Any]]:
        """The subreddit's threads in listing order."""
        threads = [self.threads[i] for i in self.order]
        if sort == "top":
            return sorted(threads, key=lambda t: -t["score"])
        if sort == "new":
            return sorted(threads, key=lambda t: -t["created_utc"])
        return threads

    def t3(self, thread: dict[str, Any]) -> dict[str, Any]:
        """A submission "thing"."""
        return {"kind": "t3", "data": {
            "id": thread["id"], "name": f"t3_{thread['id']}", "title": thread["title"],
            "selftext": thread["selftext"], "author": thread["author"] or "[deleted]",
            "score": thread["score"], "created_utc": thread["created_utc"],
            "permalink": _permalink(thread, self.subreddit), "subreddit": self.subreddit,
            "subreddit_name_prefixed": f"r/{self.subreddit}",
            "num_comments": len(flat_threads([thread])[0]["comments"]),
            "url": f"https://www.reddit.com{_permalink(thread, self.subreddit)}",
        }}

    def t1(self, thread: dict[str, Any], comment: dict[str, Any], parent: str, depth: int,
           nested: bool = True) -> dict[str, Any]:
        """A comment "thing"; ``nested`` includes its replies (inline, then a "more")."""
        replies: Any = ""
        if nested and comment.get("replies"):
            children = self.children(thread, comment["replies"], f"t1_{comment['id']}",
                                     depth + 1)
            replies = _listing(children, None)
        return {"kind": "t1", "data": {
            "id": comment["id"], "name": f"t1_{comment['id']}", "parent_id": parent,
            "link_id": f"t3_{thread['id']}", "author": comment["author"] or "[deleted]",
            "body": comment["body"], "score": comment["score"],
            "created_utc": _comment_time(thread, comment), "depth": depth,
            "subreddit": self.subreddit, "replies": replies,
            "permalink": f"{_permalink(thread, self.subreddit)}{comment['id']}/",
        }}

    def children(self, thread: dict[str, Any], comments: list[dict[str, Any]], parent: str,
                 depth: int) -> list[dict[str, Any]]:
        """Replies to ``parent``: the first ``inline_children`` inline, the rest in a "more"."""
        shown, hidden = comments[: self.inline_children], comments[self.inline_children:]
        things = [self.t1(thread, c, parent, depth) for c in shown]
        if hidden:
            ids = [c["id"] for c, _, _ in _depth_first(hidden, parent, depth)]
            things.append({"kind": "more", "data": {
                "count": len(ids), "name": f"t1_{ids[0]}", "id": ids[0], "parent_id": parent,
                "depth": depth, "children": ids}})
        return things

    def more_children(self, link_id: str, ids: list[str]) -> list[dict[str, Any]]:
        """/api/morechildren's things: the asked comments, flat, parents first."""
        thread = self.threads[link_id.removeprefix("t3_")]
        wanted = set(ids)
        return [self.t1(thread, c, parent, depth, nested=False)
                for c, parent, depth in _depth_first(thread["comments"], link_id, 0)
                if c["id"] in wanted]


def _depth_first(comments: list[dict[str, Any]], parent: str, depth: int):
    for comment in comments:
        yield comment, parent, depth
        yield from _depth_first(comment.get("replies", []), f"t1_{comment['id']}", depth + 1)


def _listing(children: list[dict[str, Any]], after: str | None) -> dict[str, Any]:
    return {"kind": "Listing", "data": {"after": after, "before": None, "dist": len(children),
                                        "children": children}}


class _Handler(BaseHTTPRequestHandler):
    server: FakeReddit
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        self._serve({})

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(length).decode()) if length else {}
        self._serve(form)

    def _serve(self, form: dict[str, list[str]]) -> None:
        reddit = self.server
        url = urlsplit(self.path)
        path = url.path
        query = {**parse_qs(url.query), **form}
        reddit.times.append(time.monotonic())
        reddit.requests.append(f"{self.command} {path}")
        fault = reddit.take_fault(path)
        if fault is not None:
            body = fault.body if fault.body is not None else json.dumps(
                {"message": "fault", "error": fault.status}).encode()
            headers = dict(fault.headers)
            if fault.status == 401 and not path.startswith("/api/v1/access_token"):
                headers.setdefault("www-authenticate",
                                   'Bearer realm="reddit", error="invalid_token"')
            self._send(fault.status, body, headers)
            return
        if path == "/api/v1/access_token":
            self._token()
        elif self.headers.get("Authorization") != f"bearer {ACCESS_TOKEN}":
            self._json(401, {"message": "Unauthorized", "error": 401},
                       {"www-authenticate": 'Bearer realm="reddit", error="invalid_token"'})
        elif path.startswith("/r/"):
            self._listing(path, query)
        elif path.startswith("/comments/"):
            self._comments(path)
        elif path.rstrip("/") == "/api/morechildren":
            ids = ",".join(query.get("children", [""])).split(",")
            things = reddit.more_children(query.get("link_id", [""])[0], [i for i in ids if i])
            self._json(200, {"json": {"errors": [], "data": {"things": things}}})
        else:
            self._json(404, {"message": "Not Found", "error": 404})

    def _token(self) -> None:
        reddit = self.server
        expected = base64.b64encode(f"{reddit.client_id}:{reddit.client_secret}".encode())
        if self.headers.get("Authorization") != f"Basic {expected.decode()}":
            self._json(401, {"message": "Unauthorized", "error": 401})
            return
        self._json(200, {"access_token": ACCESS_TOKEN, "token_type": "bearer",
                         "expires_in": 86400, "scope": "*"})

    def _listing(self, path: str, query: dict[str, list[str]]) -> None:
        reddit = self.server
        parts = [p for p in path.split("/") if p]  # ["r", name, sort]
        if len(parts) != 3 or parts[1].lower() != reddit.subreddit:
            # Reddit redirects an unknown subreddit to its search page.
            name = parts[1] if len(parts) > 1 else ""
            self._send(302, b"", {"Location": f"/subreddits/search.json?q={name}"})
            return
        threads = reddit.ordered(parts[2])
        start = 0
        after = query.get("after", [None])[0]
        if after:
            names = [f"t3_{t['id']}" for t in threads]
            start = names.index(after) + 1 if after in names else len(threads)
        size = min(int(query.get("limit", ["25"])[0]), reddit.page_size)
        page = threads[start:start + size]
        more = start + size < len(threads)
        self._json(200, _listing([reddit.t3(t) for t in page],
                                 f"t3_{page[-1]['id']}" if page and more else None))

    def _comments(self, path: str) -> None:
        reddit = self.server
        thread = reddit.threads.get(path.split("/")[2])
        if thread is None:
            self._json(404, {"message": "Not Found", "error": 404})
            return
        comments = reddit.children(thread, thread["comments"], f"t3_{thread['id']}", 0)
        self._json(200, [_listing([reddit.t3(thread)], None), _listing(comments, None)])

    def _json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(data).encode(), headers or {})

    def _send(self, status: int, data: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        for key, value in {**RATE_HEADERS, **headers}.items():
            self.send_header(key, value)
        if self.headers.get("Connection", "").lower() == "close":
            # Say so (as Reddit does): without it the client may reuse the closed connection.
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
