"""``serve``: run a persona behind the TGI HTTP API until Ctrl-C."""

from __future__ import annotations

import argparse
import os

from engine.chat.local import LocalChat
from engine.cli.common import decoding_overrides
from engine.errors import ConfigError
from engine.models.registry import find_persona
from engine.serve import make_server


def run_serve(args: argparse.Namespace) -> int:
    """Load the persona, bind, serve."""
    persona = find_persona(args.persona)
    token = os.environ.get(args.token_env) or None
    print(f"Loading {persona.label}...", flush=True)
    chat = LocalChat.load(persona, device=args.device, **decoding_overrides(args))
    try:
        server = make_server(chat, args.host, args.port, token=token,
                             max_waiting=args.max_waiting)
    except OSError as err:
        raise ConfigError(f"Cannot listen on {args.host}:{args.port}: {err.strerror}.",
                          hint="Pick another --port, or stop what uses this one.",
                          code="serve_bind_failed") from err
    auth = "bearer token required" if token else f"no token (set {args.token_env} to require one)"
    print(f"Serving {persona.label} on {server.url} ({chat.device}; {auth}). Ctrl-C stops.",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("Stopped.")
    finally:
        server.server_close()
    return 0
