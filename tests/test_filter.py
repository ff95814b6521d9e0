"""Filter stage: every rule fires and is counted as expected, good comments all survive."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.errors import ConfigError
from training.errors import TrainingError
from training.filter import (
    RULES,
    FilterOptions,
    RuleContext,
    filter_threads,
    first_rule,
    load_blocklist,
    submission_text,
)

LONG_201 = " ".join(f"w{i}" for i in range(201))
EXACTLY_200 = " ".join(f"w{i}" for i in range(200))


def comment(cid: str, parent: str, body: str, *, score: int = 5,
            author: str | None = "alice") -> dict:
    return {"id": cid, "parent_id": parent, "author": author, "body": body, "score": score,
            "created_utc": 1.0}


def thread(tid: str, title: str, comments: list[dict], *, selftext: str = "", score: int = 10,
           author: str | None = "op") -> dict:
    return {"id": tid, "subreddit": "berkeley", "title": title, "selftext": selftext,
            "author": author, "score": score, "created_utc": 0.0,
            "permalink": f"/r/berkeley/comments/{tid}/", "comments": comments}


# Thread "aa": good comments (g*) and one junk comment per rule (j*); replies under junk (o*)
# become orphans.
GOOD = {
    "g1": "Main Stacks is quiet during the week.",
    "g2": "Agreed, though it gets busy before finals.",
    "g3": "I usually go early in the morning then.",
    "g4": "The law library is nice if you can get in.",
    "g5": "NASA and the FBI are acronyms but NOT shouting here, I think.",
    "g6": "No no, the other one by the bridge.",
    "g7": "Scunthorpe people take cocktail classes at the ASUC.",
    "g8": "He said > 5 people came.\nThat seems low.",
    "g9": "Exactly one upvote is still fine.",
    "g10": EXACTLY_200,
    "g11": "I AM SO A B TIRED of A midterms",
    "g12": "Café Strada has great coffee and the café au lait is nice.",
}
AA_COMMENTS = [
    comment("g1", "t3_aa", GOOD["g1"]),
    comment("g2", "t1_g1", GOOD["g2"]),
    comment("g3", "t1_g2", GOOD["g3"]),
    comment("g4", "t3_aa", GOOD["g4"], author="botanist"),
    comment("g5", "t1_g4", GOOD["g5"]),
    comment("g6", "t1_g4", GOOD["g6"]),
    comment("g7", "t3_aa", GOOD["g7"]),
    comment("g8", "t3_aa", GOOD["g8"]),
    comment("g9", "t1_g8", GOOD["g9"], score=1),
    comment("g10", "t3_aa", GOOD["g10"]),
    comment("g11", "t3_aa", GOOD["g11"]),
    comment("g12", "t1_g11", GOOD["g12"], author=None),
    # deleted: 3
    comment("j_del", "t3_aa", "[deleted]", author=None),
    comment("o_del1", "t1_j_del", "A perfectly good reply to a deleted comment."),
    comment("o_del2", "t1_o_del1", "And a reply to that reply."),
    comment("j_rem", "t1_g1", "[removed]"),
    comment("j_empty", "t1_g4", "   "),
    # bot: 3
    comment("j_automod", "t3_aa", "Please read the rules before posting.",
            author="AutoModerator"),
    comment("j_bot", "t1_g2", "Beep boop, here is a summary.", author="summary_bot"),
    comment("j_bot2", "t1_g7", "I am a friendly helper.", author="HelperBot"),
    # markdown_link: 2 (one with an http target: markdown_link is tried before url)
    comment("j_md", "t3_aa", "See [the map](/r/berkeley/wiki/map) for details."),
    comment("j_md2", "t1_g7", "Try [this](https://example.com) one."),
    # url: 2
    comment("j_url", "t3_aa", "Check https://example.com/page now."),
    comment("j_www", "t1_g8", "It is on www.example.com somewhere."),
    # quote: 1
    comment("j_quote", "t1_g1", "> Main Stacks is quiet\nNot on Mondays it is not."),
    # long: 1
    comment("j_long", "t3_aa", LONG_201),
    # caps: 2 (one- letter words "I" and "A" do not break a run)
    comment("j_caps", "t3_aa", "THIS IS THE WORST CLASS EVER"),
    comment("j_caps2", "t1_g4", "I HATE A LOT OF THESE MIDTERMS"),
    # repeat: 2
    comment("j_rep", "t3_aa", "Go Bears bears BEARS!"),
    comment("j_rep2", "t1_g1", "no, no, no. Never."),
    # blocklist: 1
    comment("j_block", "t3_aa", "That midterm was Shit honestly."),
    # low_score: 2 (and one URL with a low score, counted once, as url)
    comment("j_low", "t3_aa", "Nobody liked this opinion.", score=0),
    comment("j_low2", "t1_g4", "Nor this one.", score=-5),
    comment("j_url_low", "t3_aa", "http://spam.example.com", score=-3),
    # duplicate: 1 (same text as g1 up to case and punctuation)
    comment("j_dup", "t1_g4", "main stacks is quiet, during the week"),
    # orphans: replies below dropped comments, and a parent that is not in the file
    comment("o_low", "t1_j_low", "A good reply under a down-voted comment."),
    comment("o_missing", "t1_zz", "My parent was never scraped."),
]
# Over all threads: "deleted" is aa's three plus dd's one.
EXPECTED_RULES = {"deleted": 4, "bot": 3, "markdown_link": 2, "url": 3, "quote": 1, "long": 1,
                  "caps": 2, "repeat": 2, "blocklist": 1, "language": 0, "low_score": 2,
                  "duplicate": 1}
EXPECTED_ORPHANS = ["o_del1", "o_del2", "o_low", "o_missing"]

THREADS = [
    thread("aa", "Best place to study on campus?", AA_COMMENTS,
           selftext="Looking for quiet spots."),
    # The submission itself is a bot's: the whole thread goes, its comments are orphans.
    thread("bb", "Daily discussion thread", [
        comment("b1", "t3_bb", "Anyone going to the game?"),
        comment("b2", "t1_b1", "Yes, see you there."),
        comment("b3", "t3_bb", "Where do I buy tickets for it?"),
    ], author="AutoModerator"),
    # Removed selftext: the title alone is the root turn.
    thread("cc", "Lost my keys near Sather Gate", [
        comment("c1", "t3_cc", "Check the lost and found at the station."),
    ], selftext="[removed]"),
    # Every comment dropped: the thread goes too.
    thread("dd", "Is the gym open today?", [
        comment("d1", "t3_dd", "[deleted]", author=None),
    ]),
]


def write_threads(path: Path, threads: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(t) + "\n" for t in threads), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def kept_ids(out_dir: Path) -> dict[str, list[str]]:
    threads = read_jsonl(out_dir / "threads.jsonl")
    return {t["id"]: [c["id"] for c in t["comments"]] for t in threads}


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    return write_threads(tmp_path / "raw" / "threads.jsonl", THREADS)


def test_every_rule_counted_and_every_good_comment_kept(raw: Path, tmp_path: Path):
    report = filter_threads(raw, tmp_path / "filtered")

    kept = kept_ids(tmp_path / "filtered")
    assert kept == {"aa": list(GOOD), "cc": ["c1"]}
    assert report.rules == EXPECTED_RULES
    assert list(report.rules) == list(RULES)  # every rule named, in the order they are tried
    assert report.submission_rules == {**dict.fromkeys(RULES, 0), "bot": 1}
    # aa's orphans, bb's three comments cut off with its submission.
    assert report.orphaned == len(EXPECTED_ORPHANS) + 3
    assert report.kept_comments == len(GOOD) + 1
    total = sum(len(t["comments"]) for t in THREADS)
    assert report.kept_comments + report.dropped_comments == total
    assert report.dropped_comments == sum(EXPECTED_RULES.values()) + report.orphaned
    assert (report.kept_threads, report.dropped_threads) == (2, 2)
    assert report.threads_without_replies == 1


def test_report_json_and_output_shape(raw: Path, tmp_path: Path):
    report = filter_threads(raw, tmp_path / "filtered")

    data = json.loads((tmp_path / "filtered" / "report.json").read_text(encoding="utf-8"))
    assert data == report.as_dict()
    assert {"kept_comments": 13, "dropped_comments": 29, "kept_threads": 2,
            "dropped_threads": 2, "orphaned": 7}.items() <= data.items()
    assert data["rules"] == EXPECTED_RULES
    assert data["options"]["max_words"] == 200
    out = read_jsonl(tmp_path / "filtered" / "threads.jsonl")
    # Same shape as the raw threads; removed selftext is blanked; comments untouched.
    assert set(out[0]) == set(THREADS[0])
    assert out[0]["comments"][0] == AA_COMMENTS[0]
    assert out[1]["selftext"] == ""
    assert not list((tmp_path / "filtered").glob(".*"))  # no temporary files left


def test_submission_text_uses_title_when_selftext_is_gone():
    assert submission_text(THREADS[0]) == ("Best place to study on campus?\n\n"
                                           "Looking for quiet spots.")
    assert submission_text(THREADS[2]) == "Lost my keys near Sather Gate"


def test_first_rule_that_fires_is_the_one_named():
    ctx = RuleContext.build(FilterOptions())
    turn = {"body": "see https://x.org", "author": "AutoModerator", "score": -1}
    assert first_rule(turn, ctx) == "bot"
    assert first_rule({**turn, "author": "bob"}, ctx) == "url"
    assert first_rule({**turn, "author": "bob", "body": "fine words"}, ctx) == "low_score"
    assert first_rule({"body": "fine words", "author": "bob", "score": 1}, ctx) is None


@pytest.mark.parametrize(("rule", "fires", "keeps"), [
    ("deleted", ["[deleted]", " [removed] ", ""], ["deleted it", "[deleted] my post"]),
    ("markdown_link", ["[a](b)", "x [text](http://a.b) y"], ["[not a link]", "(a) [b]"]),
    ("url", ["http://a.b", "HTTPS://A.B", "www.a.b"], ["the www is old", "http is a protocol"]),
    ("quote", ["> hi", "ok\n  > quoted", "&gt; escaped"], ["a > b", "->"]),
    ("caps", ["AA BB CC DD EE", "WHY IS IT SO HOT"], ["AA BB CC DD ee", "AA I BB A CC DD"]),
    ("repeat", ["a a a", "Yes YES yes"], ["a a b a a", "no no"]),
    ("blocklist", ["FUCK this", "oh, kill yourself."], ["Scunthorpe", "cocktail",
                                                         "killing yourselves"]),
])
def test_each_rule_fires_on_junk_and_not_on_near_misses(rule: str, fires: list[str],
                                                        keeps: list[str]):
    ctx = RuleContext.build(FilterOptions())
    for body in fires:
        assert RULES[rule]({"body": body, "author": "x", "score": 5}, ctx), body
    for body in keeps:
        assert not RULES[rule]({"body": body, "author": "x", "score": 5}, ctx), body


def test_bot_names():
    ctx = RuleContext.build(FilterOptions(bot_authors=("NewsFeed",)))

    def is_bot(name):
        return RULES["bot"]({"body": "x", "author": name, "score": 5}, ctx)

    assert all(map(is_bot, ["AutoModerator", "automoderator", "x_bot", "y-bot", "RemindMeBot",
                            "newsfeed"]))
    assert not any(map(is_bot, ["botanist", "robotics", None, ""]))


def test_options_change_thresholds(raw: Path, tmp_path: Path):
    options = FilterOptions(max_words=10, caps_words=3, repeat_words=2, blocklist=("bridge",),
                            bot_authors=("botanist",), dedupe=False)
    report = filter_threads(raw, tmp_path / "filtered", options)

    kept = kept_ids(tmp_path / "filtered")["aa"]
    assert "g10" not in kept and report.rules["long"] > EXPECTED_RULES["long"]  # over 10 words
    assert "g11" not in kept  # 9 words, but "AM SO TIRED" is 3 upper-case words in a row
    assert report.rules["bot"] == EXPECTED_RULES["bot"] + 1  # botanist
    assert report.rules["duplicate"] == 0
    assert "j_block" in kept and report.rules["blocklist"] == 0  # the built-in list replaced

    strict = filter_threads(raw, tmp_path / "strict", FilterOptions(min_score=6))
    assert kept_ids(tmp_path / "strict") == {}  # every comment scores 5
    assert strict.rules["low_score"] > EXPECTED_RULES["low_score"]

    loose = filter_threads(raw, tmp_path / "loose", FilterOptions(min_score=-10, blocklist=()))
    assert loose.rules["low_score"] == 0 and loose.rules["blocklist"] == 0
    assert {"j_low", "j_low2", "j_block", "o_low"} <= set(kept_ids(tmp_path / "loose")["aa"])


def test_caps_and_repeat_thresholds():
    ctx = RuleContext.build(FilterOptions(caps_words=3, repeat_words=2))
    assert RULES["caps"]({"body": "AA BB CC"}, ctx)
    assert RULES["repeat"]({"body": "no no"}, ctx)


def test_dedupe_spans_threads_and_keeps_the_first(tmp_path: Path):
    threads = [thread("x1", "First question, parking", [comment("a", "t3_x1", "Same answer!")]),
               thread("x2", "Second question, food", [comment("b", "t3_x2", "same ANSWER"),
                                                       comment("c", "t1_b", "Thanks!")])]
    report = filter_threads(write_threads(tmp_path / "in.jsonl", threads), tmp_path / "out")
    assert kept_ids(tmp_path / "out") == {"x1": ["a"]}
    assert report.rules["duplicate"] == 1 and report.orphaned == 1


def test_dropped_thread_does_not_shadow_a_later_identical_one(tmp_path: Path):
    threads = [thread("x1", "Parking near campus", [comment("a", "t3_x1", "[deleted]")]),
               thread("x2", "Parking near campus", [comment("b", "t3_x2", "Try the garage.")])]
    report = filter_threads(write_threads(tmp_path / "in.jsonl", threads), tmp_path / "out")
    assert kept_ids(tmp_path / "out") == {"x2": ["b"]}
    assert report.submission_rules["duplicate"] == 0


def test_language_filter_is_off_by_default_and_drops_other_languages(tmp_path: Path):
    spanish = "La biblioteca principal es muy tranquila durante la semana pero nunca los fines"
    chinese = "图书馆在周末的时候非常安静，我经常去那里学习"
    english = "The main library is very quiet during the week but never on weekends"
    threads = [thread("l1", "Where do you study?", [
        comment("es", "t3_l1", spanish), comment("zh", "t3_l1", chinese),
        comment("en", "t3_l1", english), comment("short", "t3_l1", "Gracias amigo")])]
    src = write_threads(tmp_path / "in.jsonl", threads)

    assert filter_threads(src, tmp_path / "off").rules["language"] == 0
    report = filter_threads(src, tmp_path / "on", FilterOptions(language="en"))
    assert report.rules["language"] == 2
    assert kept_ids(tmp_path / "on") == {"l1": ["en", "short"]}


def test_bad_options():
    with pytest.raises(ConfigError):
        FilterOptions(max_words=0)
    with pytest.raises(ConfigError, match="language"):
        FilterOptions(language="fr")


def test_builtin_blocklist_loads():
    words = load_blocklist()
    assert 10 < len(words) < 200 and "shit" in words and not any(w.startswith("#") for w in words)


@pytest.mark.parametrize(("lines", "message"), [
    ([json.dumps(THREADS[2]), "{not json"], "line 2: not valid JSON"),
    (["", json.dumps({k: v for k, v in THREADS[2].items() if k != "title"})],
     "line 2: the thread has no 'title'"),
    ([json.dumps({**THREADS[2], "comments": [{"id": "c", "parent_id": "t3_cc", "score": 1}]})],
     "line 1: comment 1 has no 'body'"),
    ([json.dumps({**THREADS[2], "score": "high"})], "line 1: the thread has a 'score' of the "
                                                     "wrong type"),
    (["[1, 2]"], "line 1: the thread is not a JSON object"),
])
def test_damaged_input_names_the_line(tmp_path: Path, lines: list[str], message: str):
    src = tmp_path / "threads.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(TrainingError, match=message) as caught:
        filter_threads(src, tmp_path / "out")
    assert caught.value.code == "training_failed"
    assert not (tmp_path / "out" / "threads.jsonl").exists()  # nothing half-written


def test_non_utf8_and_missing_input(tmp_path: Path):
    src = tmp_path / "threads.jsonl"
    src.write_bytes(json.dumps(THREADS[2]).encode() + b"\n\xff\xfe\n")
    with pytest.raises(TrainingError, match="line 2: not UTF-8"):
        filter_threads(src, tmp_path / "out")
    with pytest.raises(TrainingError, match="No threads file"):
        filter_threads(tmp_path / "nope.jsonl", tmp_path / "out")


def test_progress_reports_each_thread(raw: Path, tmp_path: Path):
    seen: list[int] = []
    filter_threads(raw, tmp_path / "out", progress=seen.append)
    assert seen == [1, 2, 3, 4]
