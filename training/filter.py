"""Stage 2, filter: drop the comments DialoGPT's recipe drops, and count why.

Each rule is a small pure function ``(turn, context) -> bool`` (True: drop) in ``RULES``; the
first rule that fires is the one counted. The submission (title + selftext) is a thread's root
turn and meets the same rules; a dropped turn cuts its replies off from the root, so they are
counted as ``orphaned``, not by rule. The token limit on whole instances is the dataset stage's.

Reads ``raw/threads.jsonl`` (one thread per line, see the training formats), writes
``threads.jsonl`` (same shape, only reachable kept comments) and ``report.json`` into the
stage folder.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine import paths
from engine.errors import ConfigError
from engine.fsutil import open_atomic
from training.errors import TrainingError

# Bodies Reddit leaves behind when a comment or post is deleted or removed by moderators.
REMOVED_BODIES = frozenset({"", "[deleted]", "[removed]"})
LANGUAGES = ("en",)  # languages the cheap "language" heuristic knows


@dataclass(frozen=True)
class FilterOptions:
    """Thresholds of the filter rules; override with ``dataclasses.replace(options, ...)``."""

    max_words: int = 200  # a turn of more words is dropped as "long" (DialoGPT: 200)
    min_score: int = 1  # a turn scoring below this is "low_score" (new comments start at 1)
    caps_words: int = 5  # this many upper-case words in a row is shouting, "caps"
    repeat_words: int = 3  # the same word this many times in a row is "repeat"
    blocklist: tuple[str, ...] | None = None  # words/phrases to drop on; None: built-in list
    bot_authors: tuple[str, ...] = ()  # more author names to treat as bots (any case)
    language: str | None = None  # "en": drop turns that do not look English; None: keep all
    dedupe: bool = True  # drop a turn whose normalised text was already kept in this run

    def __post_init__(self) -> None:
        for name in ("max_words", "caps_words", "repeat_words"):
            if getattr(self, name) < 1:
                raise ConfigError(f"Filter option {name} must be at least 1.")
        if self.language is not None and self.language not in LANGUAGES:
            raise ConfigError(f"The language filter knows only {', '.join(LANGUAGES)}, "
                              f"not '{self.language}'.")


def load_blocklist(path: Path | None = None) -> tuple[str, ...]:
    """Words of a blocklist file (one per line, ``#`` comments); default: the built-in list."""
    path = path or paths.resources_dir() / "training" / "blocklist.txt"
    lines = path.read_text(encoding="utf-8").splitlines()
    return tuple(w.strip() for w in lines if w.strip() and not w.lstrip().startswith("#"))


@dataclass(frozen=True)
class RuleContext:
    """What rules may read besides the turn: options, compiled patterns, texts kept so far."""

    options: FilterOptions
    blocklist: re.Pattern[str] | None  # None: no blocklist
    bots: frozenset[str]  # lower-case author names that are bots whatever their suffix
    seen: set[str] = field(default_factory=set)  # normalised texts kept so far (the driver adds)

    @classmethod
    def build(cls, options: FilterOptions) -> RuleContext:
        """Compile the options' patterns once per run."""
        words = load_blocklist() if options.blocklist is None else options.blocklist
        words = tuple(w for w in words if w.strip())
        pattern = None
        if words:
            # Longest first, so "kill yourself" wins over a shorter alternative; \b on both
            # ends keeps "cocktail" and "Scunthorpe" in.
            alts = "|".join(re.escape(w.strip()) for w in sorted(words, key=len, reverse=True))
            pattern = re.compile(rf"\b(?:{alts})\b", re.IGNORECASE)
        bots = frozenset({"automoderator", *(b.lower() for b in options.bot_authors)})
        return cls(options, pattern, bots)


Rule = Callable[[Mapping[str, Any], RuleContext], bool]

_URL = re.compile(r"https?://|\bwww\.", re.IGNORECASE)
_MD_LINK = re.compile(r"\[[^\]\n]*\]\([^)\s]*\)")
_WORD = re.compile(r"\w+(?:'\w+)*")
# Common English function words: English prose is ~40 % these, other languages far fewer.
_STOPWORDS = frozenset("""a about after all also an and any are as at be because been but by
can could did do does for from had has have he her him his how i if in into is it its just like
me my no not now of on or our out she so some than that the their them then there they this to
up was we were what when which who why will with would you your i'm it's don't""".split())


def normalise(text: str) -> str:
    """The text compared for duplicates: case, punctuation and spacing ignored."""
    return " ".join(re.sub(r"[^\w\s]", "", text.casefold()).split())


def deleted(turn: Mapping[str, Any], ctx: RuleContext) -> bool:
    """Deleted, removed or empty text."""
    return turn["body"].strip() in REMOVED_BODIES


def bot(turn: Mapping[str, Any], ctx: RuleContext) -> bool:
    """AutoModerator, names ending in "bot" (so "_bot", "-bot"), the extra names in the options.

    Names like "Talbot" end in "bot" too and are dropped: a few real users lost beats a persona
    that talks like a bot.
    """
    author = (turn.get("author") or "").lower()
    return bool(author) and (author in ctx.bots or author.endswith("bot"))


def markdown_link(turn: Mapping[str, Any], ctx: RuleContext) -> bool:
    """A markdown link ``[text](target)``; before "url", so such links are counted here."""
    return bool(_MD_LINK.search(turn["body"]))


def url(turn: Mapping[str, Any], ctx: RuleContext) -> bool:
    """A bare web address (http://, https://, www.)."""
    return bool(_URL.search(turn["body"]))


def quote(turn: Mapping[str, Any], ctx: RuleContext) -> bool:
    """Quoted text: a line starting with ">" (or its HTML escape, if the scraper left one)."""
    return any(line.lstrip().startswith((">", "&gt;")) for line in turn["body"].splitlines())


def long(turn: Mapping[str, Any], ctx: RuleContext) -> bool:
    """More than ``max_words`` words."""
    return len(turn["body"].split()) > ctx.options.max_words


def caps(turn: Mapping[str, Any], ctx: RuleContext) -> bool:
    """``caps_words`` upper-case words in a row; one-letter words ("I", "A") and numbers skipped."""
    run = 0
    for token in turn["body"].split():
        letters = [c for c in token if c.isalpha()]
        if len(letters) <= 1:
            continue
        run = run + 1 if all(c.isupper() for c in letters) else 0
        if run >= ctx.options.caps_words:
            return True
    return False


def repeat(turn: Mapping[str, Any], ctx: RuleContext) -> bool:
    """One word ``repeat_words`` times in a row, any case, punctuation between ignored."""
    run, last = 0, None
    for word in _WORD.findall(turn["body"].casefold()):
        run = run + 1 if word == last else 1
        last = word
        if run >= ctx.options.repeat_words:
            return True
    return False


def blocklist(turn: Mapping[str, Any], ctx: RuleContext) -> bool:
    """A blocklisted word or phrase, as a whole word, any case."""
    return ctx.blocklist is not None and bool(ctx.blocklist.search(turn["body"]))


def language(turn: Mapping[str, Any], ctx: RuleContext) -> bool:
    """Not English by a cheap guess (only with ``language="en"``).

    Drops text whose letters are under 90 % ASCII, or, from 8 words on, under 10 % common
    English function words. Limits: short turns always pass; English full of names, code or
    jargon can fail; ASCII-written languages that share function words ("a", "no", "me") with
    English can pass.
    """
    if ctx.options.language is None:
        return False
    text = turn["body"]
    letters = [c for c in text if c.isalpha()]
    if len(letters) < 12:
        return False
    if sum(c.isascii() for c in letters) < 0.9 * len(letters):
        return True
    words = _WORD.findall(text.casefold())
    return len(words) >= 8 and sum(w in _STOPWORDS for w in words) < 0.1 * len(words)


def low_score(turn: Mapping[str, Any], ctx: RuleContext) -> bool:
    """Scored below ``min_score`` (down-voted or never up-voted)."""
    return turn["score"] < ctx.options.min_score


def duplicate(turn: Mapping[str, Any], ctx: RuleContext) -> bool:
    """The same normalised text was already kept earlier in this run (boilerplate, spam)."""
    return ctx.options.dedupe and normalise(turn["body"]) in ctx.seen


# In the order they are tried; "duplicate" last, so only otherwise-good turns are remembered.
RULES: dict[str, Rule] = {
    "deleted": deleted, "bot": bot, "markdown_link": markdown_link, "url": url, "quote": quote,
    "long": long, "caps": caps, "repeat": repeat, "blocklist": blocklist, "language": language,
    "low_score": low_score, "duplicate": duplicate,
}


def first_rule(turn: Mapping[str, Any], ctx: RuleContext) -> str | None:
    """The name of the first rule that drops ``turn``, or None to keep it."""
    return next((name for name, rule in RULES.items() if rule(turn, ctx)), None)


def submission_text(thread: Mapping[str, Any]) -> str:
    """A thread's root turn: title and selftext, or the title alone if selftext is gone."""
    title = thread["title"].strip()
    body = (thread.get("selftext") or "").strip()
    return title if body in REMOVED_BODIES else f"{title}\n\n{body}"


@dataclass(frozen=True)
class FilterReport:
    """What the filter kept and dropped; ``as_dict()`` is ``report.json``."""

    kept_comments: int
    dropped_comments: int  # by a rule plus orphaned: kept + dropped = comments read
    rules: dict[str, int]  # comments dropped by each rule (the first that fired)
    orphaned: int  # comments cut off from the root by a dropped parent or submission
    kept_threads: int
    dropped_threads: int  # submission dropped, or no comment left
    submission_rules: dict[str, int]  # submissions dropped by each rule
    threads_without_replies: int  # submission kept but every comment dropped
    options: FilterOptions

    def as_dict(self) -> dict[str, Any]:
        """The report as written to ``report.json``."""
        data = asdict(self)
        data["options"] = {k: list(v) if isinstance(v, tuple) else v
                           for k, v in asdict(self.options).items()}
        return data


def filter_threads(in_path: Path, out_dir: Path, options: FilterOptions | None = None, *,
                   progress: Callable[[int], None] | None = None) -> FilterReport:
    """Filter ``in_path`` (raw threads.jsonl) into ``out_dir/threads.jsonl`` + ``report.json``.

    Args:
        in_path: the scrape stage's ``raw/threads.jsonl``.
        out_dir: the stage folder (normally ``<run>/filtered``); created if missing.
        options: rule thresholds; default ``FilterOptions()``.
        progress: called with the number of threads done after each thread.

    Raises:
        TrainingError: ``in_path`` is missing or a line is damaged (the message names it).

    """
    options = options or FilterOptions()
    in_path, out_dir = Path(in_path), Path(out_dir)
    if not in_path.is_file():
        raise TrainingError(f"No threads file at {in_path}.", hint="Run the scrape stage first.")
    ctx = RuleContext.build(options)
    tally = _Tally(rules=dict.fromkeys(RULES, 0), submission_rules=dict.fromkeys(RULES, 0))
    out_dir.mkdir(parents=True, exist_ok=True)
    with open_atomic(out_dir / "threads.jsonl") as out:
        for done, (_, thread) in enumerate(read_threads(in_path), start=1):
            kept = _filter_thread(thread, ctx, tally)
            if kept is not None:
                out.write(json.dumps(kept, ensure_ascii=False) + "\n")
            if progress is not None:
                progress(done)
    report = tally.report(options)
    with open_atomic(out_dir / "report.json") as out:
        json.dump(report.as_dict(), out, indent=2)
    return report


@dataclass
class _Tally:
    rules: dict[str, int]
    submission_rules: dict[str, int]
    kept: int = 0
    orphaned: int = 0
    kept_threads: int = 0
    without_replies: int = 0

    def report(self, options: FilterOptions) -> FilterReport:
        by_rule = sum(self.rules.values())
        dropped_threads = sum(self.submission_rules.values()) + self.without_replies
        return FilterReport(self.kept, by_rule + self.orphaned, self.rules, self.orphaned,
                            self.kept_threads, dropped_threads, self.submission_rules,
                            self.without_replies, options)


def _filter_thread(thread: dict[str, Any], ctx: RuleContext, tally: _Tally) -> dict | None:
    """The thread with only its kept, reachable comments; None when nothing is left."""
    comments = thread["comments"]
    root = {"body": submission_text(thread), "author": thread.get("author"),
            "score": thread["score"]}
    rule = first_rule(root, ctx)
    if rule is not None:
        tally.submission_rules[rule] += 1
        tally.orphaned += len(comments)
        return None
    children: dict[str, list[int]] = {}
    for position, comment in enumerate(comments):
        children.setdefault(comment["parent_id"], []).append(position)
    root_key = normalise(root["body"])
    added_root = root_key not in ctx.seen
    ctx.seen.add(root_key)
    kept: set[int] = set()
    by_rule = 0
    # Depth-first, replies in file order, without recursion (Reddit threads can be deep).
    stack = [iter(children.get(f"t3_{thread['id']}", []))]
    while stack:
        index = next(stack[-1], None)
        if index is None:
            stack.pop()
            continue
        comment = comments[index]
        rule = first_rule(comment, ctx)
        if rule is not None:
            tally.rules[rule] += 1
            by_rule += 1
            continue
        ctx.seen.add(normalise(comment["body"]))
        kept.add(index)
        stack.append(iter(children.get(f"t1_{comment['id']}", [])))
    tally.orphaned += len(comments) - len(kept) - by_rule
    if not kept:
        tally.without_replies += 1
        if added_root:
            ctx.seen.discard(root_key)  # a dropped thread should not shadow a later one
        return None
    tally.kept += len(kept)
    tally.kept_threads += 1
    selftext = (thread.get("selftext") or "").strip()
    return {**thread, "selftext": "" if selftext in REMOVED_BODIES else thread["selftext"],
            "comments": [c for i, c in enumerate(comments) if i in kept]}


_THREAD_FIELDS = {"id": str, "title": str, "selftext": str, "score": (int, float),
                  "comments": list}
_COMMENT_FIELDS = {"id": str, "parent_id": str, "body": str, "score": (int, float)}


def read_threads(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, thread)`` for each non-blank line of a threads.jsonl, checked.

    Raises:
        TrainingError: a line is not UTF-8 or JSON, or lacks a field the stages need.

    """
    where = Path(path).name
    with open(path, "rb") as lines:
        for number, raw in enumerate(lines, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise TrainingError(f"{where}, line {number}: not UTF-8 text.") from err
            if not text.strip():
                continue
            try:
                thread = json.loads(text)
            except json.JSONDecodeError as err:
                raise TrainingError(f"{where}, line {number}: not valid JSON ({err.msg}).",
                                    hint="The file is damaged; scrape again.") from err
            _check(thread, _THREAD_FIELDS, f"{where}, line {number}: the thread")
            for k, comment in enumerate(thread["comments"], start=1):
                _check(comment, _COMMENT_FIELDS, f"{where}, line {number}: comment {k}")
            yield number, thread


def _check(item: Any, fields: dict[str, Any], what: str) -> None:
    if not isinstance(item, dict):
        raise TrainingError(f"{what} is not a JSON object.")
    for name, kind in fields.items():
        if name not in item:
            raise TrainingError(f"{what} has no '{name}'.")
        value = item[name]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise TrainingError(f"{what} has a '{name}' of the wrong type "
                                f"({type(value).__name__}).")
