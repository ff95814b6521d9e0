"""Bad answers from outside: Reddit, a remote chat server, sound devices, a full disk."""

from __future__ import annotations

import errno
import json
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from tests.http_serving import serving
from tests.reliability.matrix import Case, Ctx, Got, expect_error

# -- Reddit (real praw over HTTP against tests/fake_reddit.FakeReddit) --------------------------

SECRET = "matrix-secret"


@contextmanager
def _reddit(ctx: Ctx) -> Iterator:
    import keyring

    from tests.fake_reddit import FakeReddit
    from tests.keyrings import MemoryKeyring

    previous = keyring.get_keyring()
    keyring.set_keyring(MemoryKeyring())
    try:
        with FakeReddit(client_secret=SECRET) as server:
            ctx.monkeypatch.setenv("REDDIT_CLIENT_ID", "test-client-id")
            ctx.monkeypatch.setenv("REDDIT_CLIENT_SECRET", SECRET)
            ctx.monkeypatch.setenv("TTT_REDDIT_URL", server.url)
            yield server
    finally:
        keyring.set_keyring(previous)


def _scrape_cli(ctx: Ctx, path: str, status: int, body: bytes | None = None) -> Got:
    with _reddit(ctx) as server:
        server.add_fault(path, status, times=None, body=body)
        result = ctx.cli("train", "scrape", "--subreddit", "berkeley", "--run", "r",
                         "--limit", "3")
    assert result.rc == 1
    return result.error()


def _scrape_direct(ctx: Ctx, fault) -> tuple[Got, list[str]]:
    """``scrape`` with short back-off (the CLI waits seconds between its 5 retries)."""
    from training.credentials import RedditCredentials
    from training.reddit_auth import make_reddit
    from training.scrape import scrape

    with _reddit(ctx) as server:
        fault(server)
        reddit = make_reddit(RedditCredentials("test-client-id", SECRET), server.url)
        got = expect_error(lambda: scrape("berkeley", ctx.tmp, reddit=reddit, limit=5,
                                          max_retries=2, backoff_s=0.01))
    lines = (ctx.tmp / "raw" / "threads.jsonl").read_text().splitlines()
    return got, [json.loads(line)["id"] for line in lines]


def reddit_401(ctx: Ctx) -> Got:
    return _scrape_cli(ctx, "/api/v1/access_token", 401)


def reddit_403(ctx: Ctx) -> Got:
    return _scrape_cli(ctx, "/r/berkeley/top", 403)


def reddit_404(ctx: Ctx) -> Got:
    return _scrape_cli(ctx, "/r/berkeley/top", 404)


def reddit_malformed(ctx: Ctx) -> Got:
    return _scrape_cli(ctx, "/r/", 200, b'{"kind": "Listing", "data": {"children": "oops"}}')


def reddit_429(ctx: Ctx) -> Got:
    got, _ = _scrape_direct(ctx, lambda s: s.add_fault("/r/", 429, times=None,
                                                       headers={"retry-after": "0.01"}))
    return got


def reddit_5xx_keeps_threads(ctx: Ctx) -> Got:
    got, kept = _scrape_direct(ctx, lambda s: s.fail_after_threads(2, status=502))
    assert len(kept) == 2, kept  # the threads fetched before the outage stay on disk
    return got


def reddit_401_process(ctx: Ctx) -> Got:
    from tests.fake_reddit import FakeReddit

    with FakeReddit(client_secret="another-secret") as server:
        result = ctx.subprocess("train", "scrape", "--subreddit", "berkeley", "--run", "r",
                                env={"REDDIT_CLIENT_ID": "test-client-id",
                                     "REDDIT_CLIENT_SECRET": SECRET,
                                     "TTT_REDDIT_URL": server.url,
                                     "PYTHON_KEYRING_BACKEND":
                                         "keyring.backends.null.Keyring"})
    assert result.rc == 1 and SECRET not in result.out + result.err
    return result.error()


# -- a remote chat server (TGI-shaped) that misbehaves as told ---------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, mode: str):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.mode = mode


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        mode = self.server.mode
        if mode.isdigit():
            self._answer(int(mode), json.dumps({"error": "scripted", "error_type": "x"}))
        elif mode == "sleep":
            time.sleep(1.5)
            self.close_connection = True
        elif mode == "garbage":
            self._answer(200, "<html>I am a login page</html>", "text/html")
        elif mode == "cut":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            for i, text in enumerate(["Hello", " there"]):
                event = {"token": {"id": i, "text": text, "logprob": 0.0, "special": False},
                         "generated_text": None, "details": None}
                self.wfile.write(f"data:{json.dumps(event)}\n\n".encode())
                self.wfile.flush()
            self.close_connection = True  # gone before the final event

    def _answer(self, status: int, body: str, kind: str = "application/json") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _serving(mode: str):
    return serving(_Server(mode), name="serve-matrix")


def _remote_turn(ctx: Ctx, url: str) -> Got:
    """One typed turn through ChatSession + RemoteChat; the store must keep everything."""
    import huggingface_hub.constants

    from engine.chat.remote import RemoteChat, RetryPolicy
    from engine.conversation import ChatSession
    from engine.store import ConversationStore

    ctx.monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    chat = ctx.fixture("tiny_chat")
    remote = RemoteChat(url, chat.persona, chat.loaded.tokenizer, chat.loaded.context_tokens,
                        retry=RetryPolicy(attempts=2, backoff_s=0.05, timeout_s=1.0))
    conv = ctx.seed_store()
    store = ConversationStore(ctx.data / "conversations.sqlite3")
    try:
        session = ChatSession(store, remote, "tiny", conv)
        shown: list[str] = []
        got = expect_error(lambda: shown.extend(session.send("hello there")))
    finally:
        store.close()
    stored = ctx.assert_kept(conv)
    assert stored[2].text == "hello there"  # the user's turn is kept
    if shown:  # what was shown before the failure is stored, marked cut, with the error
        assert stored[3].text == "".join(shown).strip() and stored[3].status == "cut"
        assert stored[3].meta.get("error") == got.code
    return got


def remote_mode(mode: str):
    def run(ctx: Ctx) -> Got:
        with _serving(mode) as url:
            return _remote_turn(ctx, url)
    return run


def remote_refused(ctx: Ctx) -> Got:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return _remote_turn(ctx, f"http://127.0.0.1:{port}")


def remote_bad_url(ctx: Ctx) -> Got:
    conv = ctx.seed_store()
    result = ctx.cli("chat", "-p", ctx.tiny, "--remote", "ftp://example.org", "-m", "hi")
    assert result.rc == 1
    ctx.assert_kept(conv)
    return result.error()


def remote_401_process(ctx: Ctx) -> Got:
    with _serving("401") as url:
        result = ctx.subprocess("chat", "-p", ctx.tiny, "--remote", url, "-m", "hi",
                                env={"HF_HUB_OFFLINE": "0"})
    assert result.rc == 1
    return result.error()


# -- sound devices -----------------------------------------------------------------------------


def mic_missing(ctx: Ctx) -> Got:
    result = ctx.cli("listen", "--device", "no-such-microphone", "--once")
    assert result.rc == 1
    return result.error()


def mic_vanishes_mid_turn(ctx: Ctx) -> Got:
    from engine.audio.capture import CaptureError
    from engine.audio.filesource import FileMicrophone
    from engine.audio.listener import Listener, ListenOptions, PushToTalk
    from tests.speech import speech_array

    speech = speech_array("The weather is nice today.", ctx.tmp)

    class Dying(FileMicrophone):
        def blocks(self):
            for i, block in enumerate(super().blocks()):
                if i == 40:  # 0.8 s in: unplugged
                    raise CaptureError("The microphone stopped delivering audio (unplugged?). "
                                       "What was recorded so far is kept.", code="device_lost")
                yield block

    ptt = PushToTalk(Dying(np.concatenate([speech, speech]), speed=20.0),
                     Listener(ListenOptions()))
    ptt.press()
    deadline = time.monotonic() + 10
    while ptt.error is None and time.monotonic() < deadline:
        time.sleep(0.02)
    audio = ptt.release()
    assert ptt.error is not None and len(audio) > 8000  # the speech so far is kept
    return Got.of(ptt.error)


def speaker_vanishes_mid_turn(ctx: Ctx) -> Got:
    from engine.audio.player import PlaybackError
    from engine.conversation import ChatSession
    from engine.pipeline import events as ev
    from engine.pipeline.turns import VoicePipeline
    from engine.store import ConversationStore
    from tests.fakes import FakeChat, FakePlayer, FakeTTS

    class Unplugged(FakePlayer):
        calls = 0

        def enqueue(self, samples, rate, text="", **piece):
            self.calls += 1
            if self.calls > 1:
                raise PlaybackError("The speaker was unplugged.", code="device_lost")
            super().enqueue(samples, rate, text, **piece)

    conv = ctx.seed_store()
    store = ConversationStore(ctx.data / "conversations.sqlite3")
    events: list = []
    player = Unplugged(speed=50.0)
    chat = FakeChat("One sentence here. ", "Another sentence here. ", "A third one. ")
    pipeline = VoicePipeline(ChatSession(store, chat, "tiny", conv), tts=FakeTTS(0.05),
                             player=player, on_event=events.append)
    try:
        pipeline.start_text_turn("hello")
        deadline = time.monotonic() + 10
        while not any(e.type == ev.TURN_DONE for e in events) and time.monotonic() < deadline:
            time.sleep(0.02)
        ended = any(e.type == ev.TURN_DONE for e in events)
        if not ended:
            pipeline.barge_in("test gave up")
        pipeline.close()
    finally:
        player.close()
        store.close()
    assert ended, "the turn never ended after the speaker vanished"
    stored = ctx.assert_kept(conv)
    assert stored[3].text.startswith("One sentence here.")  # the text reply is kept
    errors = [e for e in events if e.type == ev.ERROR]
    assert errors, "no error was reported"
    return Got(errors[0].data["message"], errors[0].data.get("code"))


# -- a full disk -------------------------------------------------------------------------------


def disk_full_chat(ctx: Ctx) -> Got:
    """SQLite's own "database or disk is full", made real with ``max_page_count``."""
    from engine.store import ConversationStore

    conv = ctx.seed_store()
    original = ConversationStore.__init__

    def full(self, path):
        original(self, path)
        pages = self._db.execute("PRAGMA page_count").fetchone()[0]
        self._db.execute(f"PRAGMA max_page_count={pages}")

    ctx.monkeypatch.setattr(ConversationStore, "__init__", full)
    result = ctx.cli("chat", "-p", ctx.tiny, "--continue", "-m", "a long message " * 400)
    ctx.monkeypatch.undo()
    assert result.rc == 1
    ctx.assert_kept(conv)
    return result.error()


def disk_full_settings(ctx: Ctx) -> Got:
    from engine import paths, settings

    settings.save(settings.Settings(persona="before"))
    before = paths.settings_file().read_text()

    def no_space(path, text):
        raise OSError(errno.ENOSPC, "No space left on device")

    ctx.monkeypatch.setattr(settings, "atomic_write_text", no_space)
    got = expect_error(lambda: settings.save(settings.Settings(persona="after")))
    assert paths.settings_file().read_text() == before
    return got


def disk_full_voice(ctx: Ctx) -> Got:
    """Enrolling a voice when its files cannot be written: no half-made voice is left."""
    import soundfile

    from engine.voices import store as voices

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    class Encoder:
        def embed(self, audio):
            return np.ones(256, np.float32) / 16

    ctx.monkeypatch.setattr(soundfile, "write", no_space)
    got = expect_error(lambda: voices.enroll("Dana", np.zeros(24000 * 6, np.float32), 24000,
                                             source="x.wav", encoder=Encoder(), force=True))
    assert not (voices.voices_dir() / "dana").exists()
    assert not list(voices.voices_dir().iterdir())
    return got


CASES = [
    Case("reddit-401", "reddit", "the token endpoint answers 401 (`train scrape`)",
         "REDDIT_CLIENT_SECRET", reddit_401),
    Case("reddit-403", "reddit", "the listing answers 403", "refused access", reddit_403),
    Case("reddit-404", "reddit", "the listing answers 404", "berkeley", reddit_404),
    Case("reddit-malformed-json", "reddit", "a listing whose children is a string",
         "unexpected", reddit_malformed),
    Case("reddit-429", "reddit", "429 on every listing request", "reddit_rate_limited",
         reddit_429),
    Case("reddit-5xx", "reddit", "502 after two threads were fetched (both stay on disk)",
         "Reddit's servers failed (HTTP 502)", reddit_5xx_keeps_threads),
    Case("reddit-401-process", "reddit", "wrong client secret, CLI as a real process",
         "REDDIT_CLIENT_SECRET", reddit_401_process),
    Case("remote-401", "remote", "the server answers 401", "remote_auth", remote_mode("401")),
    Case("remote-404", "remote", "the server answers 404", "remote_not_found",
         remote_mode("404")),
    Case("remote-503", "remote", "the server answers 503 every time", "remote_busy",
         remote_mode("503")),
    Case("remote-timeout", "remote", "the server never answers", "remote_timeout",
         remote_mode("sleep")),
    Case("remote-refused", "remote", "nothing listens at the URL", "remote_unreachable",
         remote_refused),
    Case("remote-stream-cut", "remote", "the stream stops after two tokens",
         "remote_stream_cut", remote_mode("cut")),
    Case("remote-not-tgi", "remote", "200 with an HTML page instead of events",
         "remote_protocol", remote_mode("garbage")),
    Case("remote-bad-url", "remote", "`chat --remote ftp://...`", "must start with http://",
         remote_bad_url),
    Case("remote-401-process", "remote", "401 from the server, CLI as a real process",
         "refused the token", remote_401_process),
    Case("mic-missing", "device", "`listen --device` naming no device", "input device",
         mic_missing),
    Case("mic-vanishes", "device", "the microphone stops delivering mid-recording",
         "device_lost", mic_vanishes_mid_turn),
    Case("speaker-vanishes", "device", "the speaker fails after the first sentence",
         "unplugged", speaker_vanishes_mid_turn),
    Case("disk-full-chat", "disk", "the database cannot grow while a turn is saved",
         "database or disk is full", disk_full_chat),
    Case("disk-full-settings", "disk", "no space left while saving settings",
         "No space left on device", disk_full_settings),
    Case("disk-full-voice", "disk", "no space left while enrolling a voice",
         "No space left on device", disk_full_voice),
]
