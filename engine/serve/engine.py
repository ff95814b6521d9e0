"""The inference engine ``serve`` runs as a child process: transformers serve, or vLLM.

The engine listens on a private port of 127.0.0.1 only; the proxy in front of it is what
clients reach. It runs in its own process group so that stopping ``serve`` stops it and every
worker it started, and its output goes to a log file (a pipe nobody reads would fill and block
it) that is shown when it dies at start.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from engine.errors import ConfigError, MissingDependencyError, ModelLoadError
from engine.models.persona import Persona
from engine.serve.budget import served_context

log = logging.getLogger(__name__)

ENGINES = ("auto", "transformers", "vllm", "builtin")
START_TIMEOUT_S = 900.0  # a first load on a slow CPU, or vLLM's CUDA graph capture
STOP_TIMEOUT_S = 15.0  # after SIGTERM, before SIGKILL
LOG_TAIL_CHARS = 3000  # of the engine's output, shown when it fails to start
# Request fields the proxy maps or drops: transformers serve answers 422 to the first two (it
# validates against the OpenAI schema; vLLM reads both), and reads a "generation_config" as a
# whole GenerationConfig, which would slip a reply length past the proxy's budget.
REFUSED_FIELDS = {"transformers": ("top_k", "repetition_penalty", "generation_config"),
                  "vllm": ()}


@dataclass
class EngineProcess:
    """A running engine on ``127.0.0.1:port``."""

    kind: str  # "transformers" or "vllm"
    process: subprocess.Popen[bytes]
    port: int
    model: str  # the name the engine answers to in a request's "model" field
    folder: Path  # the model folder it serves
    log: IO[bytes] = field(repr=False)  # its stdout and stderr
    names: Path | None = None  # the folder of the link it loads the model by (see _model_name)
    _stop_lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @property
    def url(self) -> str:
        """Its base URL, reachable from this machine only."""
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.process.poll() is None

    def output(self) -> str:
        """The end of what it printed ("" once it is stopped)."""
        with self._stop_lock:
            if self.log.closed:
                return ""
            self.log.flush()
            self.log.seek(0)
            return self.log.read().decode(errors="replace")[-LOG_TAIL_CHARS:]

    def stop(self) -> None:
        """SIGTERM to its process group, SIGKILL if it lingers.

        Idempotent, and safe from two threads at once: a restart cancelled by Ctrl-C stops the
        engine while the wait for it gives up on another thread.
        """
        with self._stop_lock:
            if self.log.closed:
                return
            try:
                if self.alive():
                    _signal_group(self.process, signal.SIGTERM)
                    try:
                        self.process.wait(timeout=STOP_TIMEOUT_S)
                    except subprocess.TimeoutExpired:
                        _signal_group(self.process, signal.SIGKILL)
                        self.process.wait()
                else:
                    # Its workers may outlive it; they share its group.
                    _signal_group(self.process, signal.SIGKILL)
            finally:
                self.log.close()
                if self.names is not None:
                    shutil.rmtree(self.names, ignore_errors=True)


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(process.pid, sig)  # the group id is its pid: started with a new session
    except (ProcessLookupError, PermissionError):
        pass


def pick_engine(choice: str) -> str:
    """The engine ``--engine`` names; ``auto`` picks the best one this machine can run.

    vLLM where it is installed and a CUDA GPU is present, else transformers serve, else (no
    serving extra, or the frozen bundle, which has no Python to run an engine with) builtin.
    """
    if choice != "auto":
        return choice
    if getattr(sys, "frozen", False):
        return "builtin"
    if importlib.util.find_spec("vllm") is not None:
        import torch

        if torch.cuda.is_available():
            return "vllm"
    from transformers.utils.import_utils import is_serve_available

    return "transformers" if is_serve_available() else "builtin"


def model_folder(persona: Persona) -> Path:
    """A folder the engine can load: the persona's own, or its GGUF converted to safetensors.

    Raises:
        ConfigError: the persona is a LoRA adapter, which the engine cannot load on its own.

    """
    from engine.models.loader import converted_gguf, weights_folder

    folder = weights_folder(persona)
    if persona.weights.gguf_file:
        return converted_gguf(folder, persona.weights.gguf_file)
    if (folder / "adapter_config.json").is_file():
        raise ConfigError(
            f"{persona.label} is a LoRA adapter; serving engines need the merged model.",
            hint="Serve it with --engine builtin (it merges at load), or export it merged "
                 "and serve that folder.",
            code="serve_adapter_unsupported")
    return folder


def engine_command(kind: str, folder: Path, port: int, *, device: str, name: str,
                   max_requests: int, load_as: str | None = None) -> list[str]:
    """The command line starting engine ``kind`` on ``127.0.0.1:port``.

    ``load_as``: what transformers serve is told to load instead of ``folder``'s path (a link
    to it, see :func:`_model_name`).
    """
    if kind == "vllm":
        # --max-num-seqs: no more sequences batched than the proxy lets in.
        return [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model",
                str(folder), "--served-model-name", name, "--host", "127.0.0.1", "--port",
                str(port), "--max-num-seqs", str(max_requests)]
    # Continuous batching: every admitted request is decoded in one batch, step by step,
    # instead of one reply after another (issue 19: 2.6x the chunks/s for 8 clients on CPU).
    command = [sys.executable, "-m", "transformers.cli.transformers", "serve",
               load_as or str(folder),
               "--continuous-batching", "--device", device, "--host", "127.0.0.1", "--port",
               str(port), "--log-level", "warning"]
    if device == "cpu":
        # Its paged KV cache takes a share of the device's memory, and on a CPU that is the
        # machine's RAM: the default held 14 GB for the 135M starter on a 24 GB machine. Ask
        # for what the admitted requests can fill (1.9 GB resident for the starter).
        command += ["--cb-max-memory-percent", f"{cache_share(folder, max_requests):.4f}"]
    return command


def cache_share(folder: Path, max_requests: int) -> float:
    """Share of this machine's RAM that ``max_requests`` full-context sequences' KV cache needs.

    Keys and values of every layer in float32, for the context each request may fill
    (``budget.served_context``: the proxy refuses requests beyond it), doubled as headroom for
    the engine's own blocks; at least 1.25 GB, at most half of the memory.
    """
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        layers = int(config.get("num_hidden_layers") or config["n_layer"])
        heads = int(config.get("num_attention_heads") or config["n_head"])
        kv_heads = int(config.get("num_key_value_heads") or heads)
        hidden = int(config.get("hidden_size") or config["n_embd"])
        head_dim = int(config.get("head_dim") or hidden // heads)
    except (OSError, ValueError, KeyError, TypeError):
        return 0.1  # an unusual config: a tenth of the memory rather than nearly all of it
    needed = 2 * 2 * layers * kv_heads * head_dim * 4 * served_context(folder) * max_requests
    # Below about 1.2 GB its batch planner finds no room for 8192-token batches' activations and
    # its worker dies at the first request (tiny model at 1 % of 24 GB: "num_sectors = -5").
    needed = max(needed, int(1.25 * 2**30))
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return min(0.5, needed / total)


def _check_installed(kind: str) -> None:
    if getattr(sys, "frozen", False):
        raise MissingDependencyError(
            f"--engine {kind} runs the engine with Python, which the app bundle has none of.",
            hint="Use --engine builtin here, or install the app with pip to serve on an engine.")
    if kind == "vllm":
        if importlib.util.find_spec("vllm") is None:
            raise MissingDependencyError("--engine vllm needs vLLM, which is not installed.",
                                         hint="pip install vllm  (needs a CUDA GPU)")
        return
    from transformers.utils.import_utils import is_serve_available

    if not is_serve_available():
        raise MissingDependencyError(
            "--engine transformers needs transformers' serving extra (FastAPI, uvicorn).",
            hint='pip install "transformers[serving]"  (or serve with --engine builtin)')


def _die_with_parent() -> Callable[[], None] | None:
    """On Linux, a hook that makes the engine get SIGTERM when ``serve`` dies, even by SIGKILL.

    Its own session keeps Ctrl-C in a terminal from reaching it twice, so without this a
    killed ``serve`` would leave the engine holding the model and its port. The kernel sends
    the signal when the creating *thread* ends, so it is only set from the main thread.
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not \
            threading.main_thread():
        return None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1

    parent = os.getpid()

    def hook() -> None:
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
        # serve may have died between the fork and the line above, before the signal was
        # asked for: then the child has been handed to another parent already.
        if os.getppid() != parent:
            os._exit(1)

    return hook


def free_port() -> int:
    """A port of 127.0.0.1 free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def launch_engine(kind: str, persona: Persona, *, device: str,
                  max_requests: int) -> EngineProcess:
    """Start the engine's process and return at once; :func:`wait_ready` waits for it.

    Call it from the main thread: on Linux the engine is told to stop when the thread that
    started it ends (:func:`_die_with_parent`).

    Raises:
        MissingDependencyError: the engine is not installed.

    """
    _check_installed(kind)
    folder = model_folder(persona)
    port = free_port()
    names, model = (None, persona.id) if kind == "vllm" else _model_name(folder, persona.id)
    command = engine_command(kind, folder, port, device=device, name=persona.id,
                             max_requests=max_requests, load_as=model)
    log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by EngineProcess.stop)
    # The model is a local folder: the engine never needs the Hub, so it never waits on it.
    env = {**os.environ, "TRANSFORMERS_VERBOSITY": "error", "HF_HUB_OFFLINE": "1"}
    try:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=env, start_new_session=True,
                                   preexec_fn=_die_with_parent(), cwd=names)
    except BaseException:
        log.close()
        if names is not None:
            shutil.rmtree(names, ignore_errors=True)
        raise
    return EngineProcess(kind, process, port, model, folder, log, names)


def wait_ready(engine: EngineProcess, timeout_s: float = START_TIMEOUT_S) -> None:
    """Wait until the engine answers and has generated once; stop it if it never does.

    Raises:
        ModelLoadError: it exited, or did not answer in ``timeout_s`` (its output is in the
            message).

    """
    try:
        _wait_ready(engine, timeout_s)
    except BaseException:
        engine.stop()
        raise


def _model_name(folder: Path, name: str) -> tuple[Path | None, str]:
    """A private folder holding a link ``name`` to ``folder``, and the name to load it by.

    transformers serve names its model, in every answer, by the path it was loaded from: a
    folder of this machine (the user's home, the app's cache) that clients should not see.
    Started in the private folder and given the link's bare name, it answers with the
    persona's id instead, which is also what the proxy lists in ``/v1/models``. Where no link
    can be made (Windows without the privilege), the folder's path is the name.
    """
    names = Path(tempfile.mkdtemp(prefix="ttt-serve-"))
    try:
        (names / name).symlink_to(folder.resolve(), target_is_directory=True)
    except OSError:
        shutil.rmtree(names, ignore_errors=True)
        return None, str(folder)
    return names, name


def _wait_ready(engine: EngineProcess, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if not engine.alive():
            raise ModelLoadError(
                f"The {engine.kind} engine exited (status {engine.process.returncode}) before "
                f"it served. Its output:\n{engine.output()}",
                hint="Check the persona's model folder loads, or serve with --engine builtin.",
                code="serve_engine_failed")
        if _answers(engine.url + "/v1/models"):
            _warm_up(engine, max(deadline - time.monotonic(), 1.0))
            return
        if time.monotonic() > deadline:
            raise ModelLoadError(
                f"The {engine.kind} engine did not answer in {timeout_s:.0f} s. Its output:\n"
                f"{engine.output()}",
                hint="A first load can be slow; try again, or serve with --engine builtin.",
                code="serve_engine_timeout")
        time.sleep(0.3)


def _warm_up(engine: EngineProcess, timeout_s: float) -> None:
    """Generate one token before clients come.

    transformers serve starts its batching loop on the first request (about 10 s on a CPU),
    which would otherwise be the first client's wait.
    """
    body = json.dumps({"model": engine.model, "prompt": "Hello", "max_tokens": 1}).encode()
    request = urllib.request.Request(engine.url + "/v1/completions", data=body,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:
            answer.read()
    except OSError as err:  # the first client finds out; a dead engine is caught while serving
        log.warning("The engine's warm-up request failed: %s", err)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return answer.status == 200 and isinstance(json.loads(answer.read()), dict)
    except (OSError, ValueError):
        return False
