"""``serve``: run a persona on an inference engine behind a thin proxy until Ctrl-C.

``--engine transformers`` (or vLLM, which ``auto`` picks on a CUDA box where it is installed)
speaks the OpenAI-compatible API with continuous batching; ``--engine builtin`` is the older
stdlib server speaking TGI's ``generate`` API, one reply at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from engine.chat.local import LocalChat
from engine.cli.common import decoding_overrides
from engine.errors import ConfigError, ModelLoadError
from engine.models.persona import Persona
from engine.models.registry import find_persona
from engine.serve import make_server
from engine.serve.budget import load_budget
from engine.serve.engine import (
    REFUSED_FIELDS,
    launch_engine,
    pick_engine,
    wait_ready,
)
from engine.serve.proxy import Proxy, ProxyConfig, listen, run_proxy

# An engine that fails more often than this is not helped by restarting it.
MAX_RESTARTS = 3
RESTART_WINDOW_S = 600.0
RESTART_LOG_CHARS = 1200  # of a failed engine's output, printed before it is restarted


def run_serve(args: argparse.Namespace) -> int:
    """Load the persona, bind, serve."""
    persona = find_persona(args.persona)
    token = os.environ.get(args.token_env) or None
    kind = pick_engine(getattr(args, "engine", "auto"))
    if kind == "builtin":
        return _run_builtin(args, persona, token)
    return _run_engine(args, persona, token, kind)


def _bind_error(args: argparse.Namespace, err: OSError) -> ConfigError:
    return ConfigError(f"Cannot listen on {args.host}:{args.port}: {err.strerror}.",
                       hint="Pick another --port, or stop what uses this one.",
                       code="serve_bind_failed")


def _auth_words(token: str | None, args: argparse.Namespace) -> str:
    return "bearer token required" if token else f"no token (set {args.token_env} to require one)"


def _run_engine(args: argparse.Namespace, persona: Persona, token: str | None, kind: str) -> int:
    from engine.models.device import resolve

    device = resolve(args.device).device
    max_requests = 1 + args.max_waiting  # as the builtin server: one generating + the waiting
    try:
        sock = listen(args.host, args.port)
    except OSError as err:
        raise _bind_error(args, err) from err
    print(f"Starting {persona.label} on {kind} serve ({device})...", flush=True)
    try:
        engine = launch_engine(kind, persona, device=device, max_requests=max_requests)
    except BaseException:
        sock.close()
        raise
    try:
        # vLLM refuses what its context cannot hold by itself, and never loses its scheduler to
        # one request; transformers serve does (see budget.py). Read while the engine loads.
        budget = load_budget(engine.folder) if kind == "transformers" else None
        wait_ready(engine)
        decoding = persona.decoding.replace(**decoding_overrides(args))
        proxy = Proxy(ProxyConfig(
            engine_port=engine.port, engine_model=engine.model, public_model=persona.id,
            token=token, max_requests=max_requests, refused_fields=REFUSED_FIELDS[kind],
            defaults=decoding.openai_parameters(), budget=budget))
        batching = "continuous batching" if kind == "transformers" else "vLLM batching"
        print(f"Engine: {kind} serve on {engine.url} (pid {engine.process.pid}; this machine "
              f"only; {batching}).", flush=True)
        restarts: list[float] = []  # when the engine was restarted

        async def restart(why: str) -> int:
            nonlocal engine
            now = time.monotonic()
            restarts[:] = [t for t in restarts if now - t < RESTART_WINDOW_S] + [now]
            if len(restarts) > MAX_RESTARTS:
                raise ModelLoadError(
                    f"The {kind} engine failed {len(restarts)} times in "
                    f"{RESTART_WINDOW_S / 60:.0f} minutes ({why}). Its output:\n"
                    f"{engine.output()}",
                    hint="Check the persona's model, or try --engine builtin.",
                    code="serve_engine_died")
            print(f"The engine stopped answering ({why}); restarting it. Requests meanwhile "
                  f"get 503 with Retry-After. The end of its output:\n"
                  f"{engine.output()[-RESTART_LOG_CHARS:]}", flush=True)
            await asyncio.to_thread(engine.stop)
            # Started on this (the main) thread, so that it still dies with serve.
            engine = launch_engine(kind, persona, device=device, max_requests=max_requests)
            try:
                await asyncio.to_thread(wait_ready, engine)
            except asyncio.CancelledError:
                # Ctrl-C while it loads: stopping it ends the wait on the thread within a
                # poll, instead of asyncio.run waiting for that thread until the load is done.
                engine.stop()
                raise
            print(f"Engine restarted on {engine.url} (pid {engine.process.pid}).", flush=True)
            return engine.port

        def listening(address: tuple[str, int]) -> None:
            print(f"Serving {persona.label} on http://{address[0]}:{address[1]} "
                  f"(OpenAI API, {device}; up to {max_requests} requests at once; "
                  f"{_auth_words(token, args)}). Ctrl-C stops.", flush=True)

        asyncio.run(run_proxy(proxy, sock, on_listening=listening,
                              engine_alive=lambda: engine.alive(), restart=restart))
        print("Stopped.")
    finally:
        sock.close()
        engine.stop()
    return 0


def _run_builtin(args: argparse.Namespace, persona: Persona, token: str | None) -> int:
    print(f"Loading {persona.label}...", flush=True)
    chat = LocalChat.load(persona, device=args.device, **decoding_overrides(args))
    try:
        server = make_server(chat, args.host, args.port, token=token,
                             max_waiting=args.max_waiting)
    except OSError as err:
        raise _bind_error(args, err) from err
    print(f"Serving {persona.label} on {server.url} (TGI API, {chat.device}; "
          f"{_auth_words(token, args)}). Ctrl-C stops.", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("Stopped.")
    finally:
        server.server_close()
    return 0
